"""Readiness means "can take deliveries": PostgreSQL down is 503, Redis down only degraded (200)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx

from marketplace.lib.settings import Settings
from marketplace.server.app import create_app
from tests.conftest import PLATFORM_SECRET, free_port, in_process, make_settings
from tests.support.api_process import api_process, stripe_signature
from webhooks.store import connection


def signed_delivery(event_id: str) -> dict[str, Any]:
    """A platform-endpoint delivery of a minimal event, signed as Stripe signs it."""
    event = json.dumps(
        {"id": event_id, "object": "event", "type": "account.updated", "created": 1, "livemode": False}
        | {"data": {"object": {}}}
    )
    return {"content": event, "headers": {"Stripe-Signature": stripe_signature(event, PLATFORM_SECRET)}}


def closed_port_url() -> str:
    return f"127.0.0.1:{free_port()}"  # bound once and released: nobody listens there


async def test_ready_is_ok_when_postgres_and_redis_answer(client: httpx.AsyncClient) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
    assert "retry-after" not in ready.headers
    # The operation tells a load balancer's operator what the statuses mean.
    operation = (await client.get("/schema/openapi.json")).json()["paths"]["/health/ready"]["get"]
    assert "degraded" in operation["description"]
    assert "PostgreSQL" in operation["summary"]
    assert "Redis" not in operation["summary"].split("(")[0]  # ready does not require Redis


async def test_ready_stays_200_degraded_while_redis_is_down_and_deliveries_are_stored(database: str) -> None:
    dead_redis = make_settings(database, f"redis://{closed_port_url()}/0")
    event_id = f"evt_health_{uuid.uuid4().hex}"
    try:
        async with in_process(create_app(dead_redis)) as api:
            ready = await api.get("/health/ready")
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body["status"] == "degraded"
            assert body["checks"]["postgres"] == "ok"
            assert body["checks"]["redis"].startswith("failed: ")
            assert "Error" in body["checks"]["redis"]  # the reason's type, e.g. `failed: ConnectionError`
            assert not ready.headers["content-type"].startswith("application/problem+json")

            # What ready promises: a delivery is still stored and acknowledged (queued later by the sweeper).
            delivered = await api.post("/webhooks/stripe", **signed_delivery(event_id))
            assert delivered.status_code == 200, delivered.text
            assert delivered.json()["outcome"] == "stored"
        async with connection() as conn:
            status = await conn.fetchval("SELECT status FROM stripe_events WHERE id = $1", event_id)
        assert status == "pending"
    finally:
        async with connection() as conn:
            await conn.execute("DELETE FROM stripe_events WHERE id = $1", event_id)


async def test_ready_is_503_not_ready_with_retry_after_when_postgres_is_unreachable(settings: Settings) -> None:
    """A real API process (the pool is per process) whose DATABASE_URL points at a closed port."""
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": f"postgresql://postgres@{closed_port_url()}/marketplace",
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_health_no_db",
        "STRIPE_WEBHOOK_SECRET_PLATFORM": PLATFORM_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    async with api_process(env, free_port()) as api:
        live = await api.http.get("/health/live")
        assert live.status_code == 200
        ready = await api.http.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"].startswith("application/problem+json")
        assert ready.headers["retry-after"].isdigit()
        body = ready.json()
        assert body["type"] == "urn:marketplace:problem:not-ready"
        assert body["status"] == 503
        assert body["checks"]["postgres"].startswith("failed: ")
        assert body["checks"]["redis"] == "ok"
        assert "postgres" in body["detail"]
        assert body["instance"] == "/health/ready"
        assert body["request_id"] == ready.headers["x-request-id"]
        # Ready agrees with the ingest path: a delivery cannot be stored either (Stripe retries it).
        refused = await api.http.post("/webhooks/stripe", **signed_delivery(f"evt_health_{uuid.uuid4().hex}"))
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"].isdigit()
