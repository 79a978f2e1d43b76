"""End to end: what a real API process writes to its log never contains a token, a webhook body or a secret."""

from __future__ import annotations

import json
import os
import time
import uuid

from marketplace.lib.settings import Settings
from tests.conftest import PLATFORM_SECRET, TEST_STRIPE_KEY, free_port
from tests.integration.test_app import json_log_lines
from tests.support.api_process import api_process, stripe_signature
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
    signature = stripe_signature(event, PLATFORM_SECRET)
    bogus_token = "mkt_" + "x" * 43

    async with api_process(env, port) as api:
        http = api.http
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
            headers={"Stripe-Signature": signature, "content-type": "application/json"},
        )
        assert delivery.status_code == 200, delivery.text
    log = api.log  # written once the process stopped (a graceful stop flushes the batched lines)

    lines = json_log_lines(log)
    paths = {line.get("path") for line in lines if line["logger"] == "marketplace.access"}
    assert {"/buyers", "/buyers/me", "/webhooks/stripe"} <= paths  # the requests were logged, so the check bites
    for secret in (token, bogus_token, marker, event, signature.split("v1=")[1], PLATFORM_SECRET, TEST_STRIPE_KEY):
        assert secret not in log
