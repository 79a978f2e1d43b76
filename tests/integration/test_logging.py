"""End to end: what a real API process writes to its log never contains a token, a webhook body or a secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

from marketplace.settings import Settings
from tests.conftest import PLATFORM_SECRET, TEST_STRIPE_KEY, free_port
from tests.integration.test_app import json_log_lines
from tests.support.factories import BuyerSignupFactory, payload


async def test_tokens_webhook_bodies_and_secrets_never_reach_the_log(settings: Settings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url.reveal(),
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": TEST_STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET_PLATFORM": PLATFORM_SECRET,
        "LOG_LEVEL": "DEBUG",  # the most a process ever logs
    }
    marker = f"body-marker-{uuid.uuid4().hex}"
    event_id = f"evt_log_{uuid.uuid4().hex[:16]}"
    event = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "account.updated",
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": {"id": "acct_log", "object": "account", "business_profile": {"name": marker}}},
        }
    )
    stamp = int(time.time())
    signature = hmac.new(PLATFORM_SECRET.encode(), f"{stamp}.{event}".encode(), hashlib.sha256).hexdigest()
    bogus_token = "mkt_" + "x" * 43

    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketplace.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        await http.get("/health/live")
                        break
                    except httpx.TransportError:
                        assert proc.poll() is None
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.1)
                signup = await http.post("/buyers", json=payload(BuyerSignupFactory))
                assert signup.status_code == 201
                token = signup.json()["token"]
                me = await http.get("/buyers/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 200
                refused = await http.get("/buyers/me", headers={"Authorization": f"Bearer {bogus_token}"})
                assert refused.status_code == 401
                delivery = await http.post(
                    "/webhooks/stripe",
                    content=event,
                    headers={"Stripe-Signature": f"t={stamp},v1={signature}", "content-type": "application/json"},
                )
                assert delivery.status_code == 200, delivery.text
        finally:
            proc.terminate()  # a graceful stop flushes the batched log lines
            proc.wait(timeout=15)
        stderr.seek(0)
        log = stderr.read()

    lines = json_log_lines(log)
    paths = {line.get("path") for line in lines if line["logger"] == "marketplace.access"}
    assert {"/buyers", "/buyers/me", "/webhooks/stripe"} <= paths  # the requests were logged, so the check bites
    for secret in (token, bogus_token, marker, event, signature, PLATFORM_SECRET, TEST_STRIPE_KEY):
        assert secret not in log
