"""Health, problem details for framework errors, request ids, OpenAPI, and a stopped database."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

import httpx

from marketplace.settings import Settings
from tests.conftest import PLATFORM_SECRET, free_port

Client = httpx.AsyncClient


async def test_live_and_ready(client: Client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_404_and_405_are_problem_details(client: Client) -> None:
    missing = await client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["type"].endswith("not-found")
    assert missing.json()["instance"] == "/no/such/route"
    wrong = await client.delete("/health/live")
    assert wrong.status_code == 405
    assert wrong.json()["title"] == "Method not allowed"


async def test_malformed_json_is_400_problem(client: Client) -> None:
    response = await client.post("/buyers", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_request_id_is_echoed_or_minted(client: Client) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "req-abcdef123"})
    assert response.headers["x-request-id"] == "req-abcdef123"
    minted = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert minted.headers["x-request-id"] != "bad id with spaces"
    assert len(minted.headers["x-request-id"]) == 32
    problem = await client.get("/nope", headers={"X-Request-ID": "req-zzzzzzzz1"})
    assert problem.json()["request_id"] == "req-zzzzzzzz1"


async def test_openapi_has_bearer_scheme_and_unique_operation_ids(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["BearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from sign-up or `marketplace admin create-token`.",
    }
    operation_ids = [operation["operationId"] for path in schema["paths"].values() for operation in path.values()]
    assert len(operation_ids) == len(set(operation_ids))
    assert "signUpSeller" in operation_ids
    assert schema["paths"]["/buyers/me"]["get"]["security"] == [{"BearerToken": []}]


def test_cli_prints_openapi() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "marketplace.cli", "openapi"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert '"openapi": "3.1.0"' in out.stdout
    assert "/health/ready" in out.stdout


async def test_ready_reports_a_stopped_database(settings: Settings) -> None:
    """A real API process whose PostgreSQL does not answer: live stays green, ready names postgres."""
    dead_port = free_port()  # nothing listens here: a stopped database
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{dead_port}/gone",
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_stopped_db",
        "STRIPE_WEBHOOK_SECRET_PLATFORM": PLATFORM_SECRET,
        "LOG_LEVEL": "ERROR",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketplace.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    live = await http.get("/health/live")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            assert live.status_code == 200
            ready = await http.get("/health/ready")
            assert ready.status_code == 503
            body = ready.json()
            assert body["checks"]["postgres"].startswith("failed")
            assert body["checks"]["redis"] == "ok"
            assert "postgres" in body["detail"]
            signup = await http.post("/buyers", json={"display_name": "x", "email": "x@example.com"})
            assert signup.status_code == 500
            assert signup.headers["content-type"].startswith("application/problem+json")
            # A Stripe delivery that cannot be stored is refused with 503, so Stripe retries it later.
            body = json.dumps(
                {
                    "id": "evt_db_down",
                    "object": "event",
                    "type": "account.updated",
                    "created": 1,
                    "livemode": False,
                    "data": {"object": {}},
                }
            )
            stamp = int(time.time())
            digest = hmac.new(PLATFORM_SECRET.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
            delivery = await http.post(
                "/webhooks/stripe", content=body, headers={"Stripe-Signature": f"t={stamp},v1={digest}"}
            )
            assert delivery.status_code == 503
            assert delivery.json()["type"] == "urn:marketplace:problem:event-store-unavailable"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_ready_reports_a_stopped_redis(settings: Settings) -> None:
    from marketplace.app import create_app
    from tests.conftest import serve, with_settings

    dead = with_settings(settings, redis_url=type(settings.redis_url)(f"redis://127.0.0.1:{free_port()}/0"))
    port = free_port()
    server, task = await serve(create_app(dead), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as other:
            ready = await other.get("/health/ready")
    finally:
        server.should_exit = True
        await task
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"] == "ok"
    assert ready.json()["checks"]["redis"].startswith("failed")


async def test_cli_runs_the_sandbox_with_its_own_options() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketplace.cli", "sandbox", "--port", str(port), "--mode", "test"],
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
