"""The bare baseline for the ingest benchmark: a minimal ASGI app that verifies the signature and inserts.

No framework, no middleware, no logging, no queue: read the body, verify `Stripe-Signature` with the
stripe SDK, parse the event, `INSERT … ON CONFLICT DO NOTHING` into the same `stripe_events` table
with asyncpg, answer 200. It is the floor a store-before-ack receiver cannot beat by much.

Run by `tests/bench/webhook_bench.py` as `uvicorn tests.bench.baseline_app:app` with DATABASE_URL and
BENCH_SECRET in the environment. With BENCH_BASELINE_NO_RESET=1 its pool skips asyncpg's session reset
on release, as the API's ingest pool does (a stricter floor; docs/performance.md).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import asyncpg
import stripe

SECRET = os.environ.get("BENCH_SECRET", "whsec_bench_platform")
INSERT = """
INSERT INTO stripe_events (id, type, account, endpoint, misrouted, livemode, api_version, created, payload,
                           received_at, status, attempts, next_attempt_at)
VALUES ($1, $2, $3, 'platform', false, $4, $5, $6, $7::jsonb, now(), 'pending', 0, now())
ON CONFLICT (id) DO NOTHING
"""
_pool: asyncpg.Pool | None = None


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                reset = _no_reset if os.environ.get("BENCH_BASELINE_NO_RESET") == "1" else None
                _pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=10, reset=reset)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    header = dict(scope["headers"]).get(b"stripe-signature", b"").decode()
    body = raw.decode()
    try:
        stripe.WebhookSignature.verify_header(body, header, SECRET, 300)
        event = json.loads(body)
    except (stripe.SignatureVerificationError, ValueError):
        await _respond(send, 400, b'{"error":"bad signature"}')
        return
    assert _pool is not None
    await _pool.execute(
        INSERT,
        event["id"],
        event["type"],
        event.get("account"),
        event["livemode"],
        event.get("api_version"),
        datetime.fromtimestamp(event["created"], UTC),
        body,
    )
    await _respond(send, 200, b'{"received":true}')
