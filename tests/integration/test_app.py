"""Health, problem details for framework errors, request ids, a stopped database or Redis, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.lib.settings import Settings
from tests.conftest import PLATFORM_SECRET, free_port, in_process
from tests.support.api_process import api_process, stripe_signature
from tests.support.factories import BuyerSignupFactory, payload

Client = httpx.AsyncClient


async def test_live_and_ready(client: Client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_404_and_405_are_problem_details_that_say_more_than_the_title(client: Client) -> None:
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    body = missing.json()
    assert body["type"] == "urn:marketplace:problem:not-found"
    assert body["instance"] == "/no/such/route"
    assert body["detail"].casefold() != body["title"].casefold()
    assert "/no/such/route" in body["detail"]

    wrong = await client.delete("/health/live")
    assert wrong.status_code == 405
    body = wrong.json()
    assert body["type"] == "urn:marketplace:problem:method-not-allowed"
    assert body["title"] == "Method not allowed"
    assert body["detail"].casefold() != body["title"].casefold()
    assert "DELETE" in body["detail"]
    assert "GET" in body["detail"]  # which methods the route does accept


async def test_malformed_json_is_a_malformed_body_problem(client: Client) -> None:
    response = await client.post("/buyers", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:marketplace:problem:malformed-body"
    assert "JSON" in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


async def test_request_id_is_echoed_or_minted(client: Client) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "req-abcdef123"})
    assert response.headers["x-request-id"] == "req-abcdef123"
    minted = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert minted.headers["x-request-id"] != "bad id with spaces"
    assert len(minted.headers["x-request-id"]) == 32
    problem = await client.get("/nope", headers={"X-Request-ID": "req-zzzzzzzz1"})
    assert problem.json()["request_id"] == "req-zzzzzzzz1"


def test_cli_prints_openapi() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "openapi"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    schema = json.loads(out.stdout)
    assert schema["openapi"] == "3.1.0"
    assert "/health/ready" in schema["paths"]
    assert "ProblemDetails" in schema["components"]["schemas"]


def json_log_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a process's stderr, parsed; fails on any line that is not one of our JSON lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return parsed


async def _event_ids(dsn: str) -> set[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id FROM stripe_events")}
    finally:
        await conn.close()


@pytest.fixture
def throwaway_postgres() -> Iterator[Any]:
    """A PostgreSQL of our own (pgserver, in a temp dir) that the test may stop: a really stopped database."""
    import pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="mkt-pg-"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, harmless here
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


async def test_a_stopped_database_is_503_unavailable_everywhere(settings: Settings, throwaway_postgres: Any) -> None:
    """A real API process whose PostgreSQL is stopped while it runs: live stays green, ready names
    postgres, an ordinary route answers 503 `unavailable` with Retry-After, Stripe's delivery a 503;
    once PostgreSQL is back, the retried delivery is stored."""
    import pgserver

    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": throwaway_postgres.get_uri(),
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_stopped_db",
        "STRIPE_WEBHOOK_SECRET_PLATFORM": PLATFORM_SECRET,
        "LOG_LEVEL": "WARNING",
    }

    def delivery(event_id: str) -> dict[str, Any]:
        event = json.dumps(
            {"id": event_id, "object": "event", "type": "account.updated", "created": 1, "livemode": False}
            | {"data": {"object": {}}}
        )
        return {"content": event, "headers": {"Stripe-Signature": stripe_signature(event, PLATFORM_SECRET)}}

    migrated = subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    async with api_process(env, port) as api:
        http = api.http
        before = await http.get("/health/ready")
        assert before.status_code == 200, before.text  # the pool holds a live connection now
        stored = await http.post("/webhooks/stripe", **delivery("evt_before_outage"))
        assert stored.status_code == 200, stored.text  # and so does the ingest path's own pool
        throwaway_postgres.cleanup()  # stop PostgreSQL under the running API

        live = await http.get("/health/live")
        assert live.status_code == 200
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["type"] == "urn:marketplace:problem:not-ready"
        assert body["checks"]["postgres"].startswith("failed")
        assert body["checks"]["redis"] == "ok"
        assert "postgres" in body["detail"]
        assert body["instance"] == "/health/ready"
        assert body["request_id"] == ready.headers["x-request-id"]

        # Twice: the first may meet the pool's dead connection, the second a refused reconnect.
        for _ in range(2):
            signup = await http.post("/buyers", json=payload(BuyerSignupFactory))
            assert signup.status_code == 503, signup.text
            assert signup.headers["content-type"].startswith("application/problem+json")
            assert signup.headers["retry-after"].isdigit()
            problem = signup.json()
            assert problem["type"] == "urn:marketplace:problem:unavailable"
            assert problem["request_id"] == signup.headers["x-request-id"]

        # A Stripe delivery that cannot be stored is refused with 503, so Stripe retries it later; twice,
        # as above (the ingest pool's dead connection, then a refused reconnect).
        for _ in range(2):
            refused = await http.post("/webhooks/stripe", **delivery("evt_db_down"))
            assert refused.status_code == 503, refused.text
            assert refused.json()["type"] == "urn:marketplace:problem:event-store-unavailable"
            assert refused.headers["retry-after"].isdigit()

        # PostgreSQL comes back: Stripe's retry of that delivery is stored, with nothing restarted.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            restarted = pgserver.get_server(throwaway_postgres.pgdata, cleanup_mode="stop")
        try:
            retried = await http.post("/webhooks/stripe", **delivery("evt_db_down"))
            assert retried.status_code == 200, retried.text
            assert retried.json()["outcome"] == "stored"
            ids = await _event_ids(restarted.get_uri())
            assert ids == {"evt_before_outage", "evt_db_down"}
        finally:
            restarted.cleanup()
    lines = json_log_lines(api.log)
    outage = [line for line in lines if "unavailable" in line["msg"] and line["logger"] == "marketplace.errors"]
    assert outage, lines
    assert all(line["level"] == "warning" and "exc" not in line for line in outage)  # expected: no traceback


async def test_ready_reports_a_stopped_redis(settings: Settings) -> None:
    from marketplace.server.app import create_app
    from tests.conftest import with_settings

    dead = with_settings(settings, redis_url=type(settings.redis_url)(f"redis://127.0.0.1:{free_port()}/0"))
    async with in_process(create_app(dead)) as other:
        ready = await other.get("/health/ready")
    assert ready.status_code == 200  # deliveries are still stored without Redis: degraded, not unready
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["postgres"] == "ok"
    assert ready.json()["checks"]["redis"].startswith("failed")


def test_serve_logs_a_bind_error_as_json() -> None:
    """uvicorn's own lines go through our handler: a port already taken is one JSON error line."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "APP_ENV": "test",
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/unused",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "STRIPE_SECRET_KEY": "sk_test_bind_error",
        }
        done = subprocess.run(
            [sys.executable, "-m", "marketplace.server.cli", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    lines = json_log_lines(done.stderr)
    errors = [line for line in lines if line["level"] == "error" and line["logger"].startswith("uvicorn")]
    assert errors, done.stderr
    assert str(port) in errors[0]["msg"]


async def test_cli_runs_the_sandbox_with_its_own_options() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketplace.server.cli", "sandbox", "--port", str(port), "--mode", "test"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = await http.get("/_sandbox/health")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            assert health.json()["mode"] == "test"
            unauthenticated = await http.get("/v1/accounts")
            assert unauthenticated.status_code == 401
            assert unauthenticated.json()["error"]["type"] == "invalid_request_error"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
