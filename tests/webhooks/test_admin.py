"""Operators: listing stored events, metrics, retention."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhooks.conftest import make_event, post_event, stored
from webhooks import store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_events", "redis_pool")]


async def test_admin_routes_need_an_admin(wh_client: Any, seller_headers: dict[str, str]) -> None:
    assert (await wh_client.get("/admin/events")).status_code == 401
    assert (await wh_client.get("/admin/events", headers=seller_headers)).status_code == 403
    response = await wh_client.post("/admin/events/replay", json={"status": "dead"}, headers=seller_headers)
    assert response.status_code == 403


async def test_list_filters_by_status_and_type_and_pages(wh_client: Any, admin_headers: dict[str, str]) -> None:
    recorded = [make_event("test.recorded") for _ in range(5)]
    other = make_event("test.other")
    ignored = make_event("test.recorded", livemode=True)
    for event in [*recorded, other, ignored]:
        await post_event(wh_client, event)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"type": "test.recorded", "status": "pending", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await wh_client.get("/admin/events", params=params, headers=admin_headers)
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in reversed(recorded)]  # newest first, each exactly once

    response = await wh_client.get("/admin/events", params={"status": "ignored"}, headers=admin_headers)
    assert [item["id"] for item in response.json()["items"]] == [ignored["id"]]

    detail = await wh_client.get(f"/admin/events/{other['id']}", headers=admin_headers)
    assert detail.status_code == 200
    assert detail.json()["payload"] == other
    missing = await wh_client.get("/admin/events/evt_missing", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")

    bad = await wh_client.get("/admin/events", params={"cursor": "%%%"}, headers=admin_headers)
    assert bad.status_code == 400


async def test_replay_of_unknown_event_is_404(wh_client: Any, admin_headers: dict[str, str]) -> None:
    response = await wh_client.post("/admin/events/evt_nope/replay", headers=admin_headers)
    assert response.status_code == 404


async def test_metrics_count_deliveries_by_endpoint_and_outcome(wh_client: Any) -> None:
    def value(text: str, series: str) -> float:
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    stored_series = 'webhook_deliveries_total{endpoint="connect",outcome="stored"}'
    bad_series = 'webhook_deliveries_total{endpoint="connect",outcome="bad_signature"}'
    before = (await wh_client.get("/metrics")).text
    event = make_event(account="acct_metrics")
    await post_event(wh_client, event, endpoint="connect")
    await wh_client.post("/webhooks/stripe/connect", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    after = (await wh_client.get("/metrics")).text
    assert value(after, stored_series) == value(before, stored_series) + 1
    assert value(after, bad_series) == value(before, bad_series) + 1
    assert "# TYPE webhook_queue_lag_seconds gauge" in after
    assert "webhook_events_due 1" in after


async def test_retention_prunes_old_processed_events_only(wh_client: Any) -> None:
    old_done, old_dead, recent_done = make_event(), make_event(), make_event()
    for event in (old_done, old_dead, recent_done):
        await post_event(wh_client, event)
    async with store.connection() as conn:
        await conn.execute(
            "UPDATE stripe_events SET status = 'processed' WHERE id = ANY($1::varchar[])",
            [old_done["id"], recent_done["id"]],
        )
        await conn.execute("UPDATE stripe_events SET status = 'dead' WHERE id = $1", old_dead["id"])
        await conn.execute(
            "UPDATE stripe_events SET received_at = now() - interval '31 days' WHERE id = ANY($1::varchar[])",
            [old_done["id"], old_dead["id"]],
        )
    assert await store.prune(30) == 1
    assert await stored(old_done["id"]) is None
    assert await stored(old_dead["id"]) is not None
    assert await stored(recent_done["id"]) is not None


async def test_the_cli_says_when_no_event_is_listed(wh_settings: Any) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": wh_settings.database_url.reveal(),
        "REDIS_URL": wh_settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_cli_list",
        "LOG_LEVEL": "WARNING",
    }
    listed = subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "events", "list", "--status", "dead", "--type", "test.none"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (listed.returncode, listed.stdout) == (0, "")
    assert listed.stderr.strip() == "no dead events of type test.none"
