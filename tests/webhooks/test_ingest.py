"""Deliveries: what is accepted and stored, what is refused with 400 and leaves no trace."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import CONNECT_SECRET, PLATFORM_SECRET
from tests.webhooks.conftest import count_events, make_event, post_event, sign, stored
from webhooks.queueing import enqueuer_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_events", "redis_pool")]

PROBLEM = "application/problem+json"


async def test_signed_event_is_stored_and_acknowledged(wh_client: Any) -> None:
    event = make_event()
    response = await post_event(wh_client, event)
    assert response.status_code == 200
    assert response.json() == {"received": True, "event_id": event["id"], "outcome": "stored"}
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "pending"
    assert row["type"] == "test.recorded"
    assert row["endpoint"] == "platform"
    assert row["payload"] == event
    assert row["api_version"] == event["api_version"]
    assert int(row["created"].timestamp()) == event["created"]


def _forged(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(event)
    return body, {"Stripe-Signature": sign(body, "whsec_not_ours")}


def _tampered(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(event)
    header = sign(body, PLATFORM_SECRET)
    return body.replace("test.recorded", "test.tampered"), {"Stripe-Signature": header}


def _stale(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(event)
    return body, {"Stripe-Signature": sign(body, PLATFORM_SECRET, timestamp=int(time.time()) - 301)}


def _replayed_header(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    # A captured delivery re-sent an hour later with its (valid, old) signature.
    body = json.dumps(event)
    return body, {"Stripe-Signature": sign(body, PLATFORM_SECRET, timestamp=int(time.time()) - 3600)}


def _timestamp_swapped(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    # The attacker refreshes t= on an old signature: the HMAC covers t, so it no longer matches.
    body = json.dumps(event)
    old = sign(body, PLATFORM_SECRET, timestamp=int(time.time()) - 3600)
    return body, {"Stripe-Signature": f"t={int(time.time())}," + old.split(",", 1)[1]}


def _connect_secret(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps(event)
    return body, {"Stripe-Signature": sign(body, CONNECT_SECRET)}


def _unsigned(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return json.dumps(event), {}


def _garbled_header(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return json.dumps(event), {"Stripe-Signature": "this is not a signature"}


def _not_json(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = "{not json"
    return body, {"Stripe-Signature": sign(body, PLATFORM_SECRET)}


def _not_an_event(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    body = json.dumps({"id": event["id"], "hello": "world"})
    return body, {"Stripe-Signature": sign(body, PLATFORM_SECRET)}


@pytest.mark.parametrize(
    ("make_delivery", "problem_type"),
    [
        (_forged, "webhook-signature-invalid"),
        (_tampered, "webhook-signature-invalid"),
        (_stale, "webhook-signature-invalid"),
        (_replayed_header, "webhook-signature-invalid"),
        (_timestamp_swapped, "webhook-signature-invalid"),
        (_connect_secret, "webhook-signature-invalid"),
        (_unsigned, "webhook-signature-invalid"),
        (_garbled_header, "webhook-signature-invalid"),
        (_not_json, "invalid-webhook"),
        (_not_an_event, "invalid-webhook"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else v,
)
async def test_invalid_delivery_is_refused_and_not_stored(
    wh_client: Any, make_delivery: Any, problem_type: str
) -> None:
    event = make_event()
    body, headers = make_delivery(event)
    response = await wh_client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["type"] == f"urn:marketplace:problem:{problem_type}"
    assert PLATFORM_SECRET not in response.text
    assert await stored(event["id"]) is None
    assert await count_events() == 0


async def test_platform_secret_does_not_open_the_connect_endpoint(wh_client: Any) -> None:
    event = make_event(account="acct_123")
    response = await post_event(wh_client, event, endpoint="connect", secret=PLATFORM_SECRET)
    assert response.status_code == 400
    assert await stored(event["id"]) is None


async def test_both_secrets_accepted_during_rotation(wh_client: Any) -> None:
    old, new = make_event(), make_event()
    assert (await post_event(wh_client, old, secret=PLATFORM_SECRET)).status_code == 200
    assert (await post_event(wh_client, new, secret="whsec_test_platform_2")).status_code == 200
    # Stripe signs with both secrets during a rotation: one header with two v1 entries.
    both = make_event()
    body = json.dumps(both)
    header = sign(body, "whsec_rolled_off", extra_secrets=("whsec_test_platform_2",))
    response = await wh_client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})
    assert response.status_code == 200
    for event in (old, new, both):
        assert await stored(event["id"]) is not None


async def test_body_over_the_limit_is_refused(wh_client: Any, wh_settings: Any) -> None:
    event = make_event(obj={"id": "obj_big", "blob": "x" * wh_settings.webhook_max_body_bytes})
    response = await post_event(wh_client, event)
    assert response.status_code == 400
    assert response.json()["type"] == "urn:marketplace:problem:webhook-too-large"
    assert await stored(event["id"]) is None


async def test_body_longer_than_its_content_length_claims_is_refused(wh_client: Any, wh_settings: Any) -> None:
    event = make_event(obj={"id": "obj_big", "blob": "x" * wh_settings.webhook_max_body_bytes})
    body = json.dumps(event)

    async def chunks() -> Any:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536].encode()

    response = await wh_client.post(
        "/webhooks/stripe", content=chunks(), headers={"Stripe-Signature": sign(body, PLATFORM_SECRET)}
    )
    assert response.status_code == 400
    assert await stored(event["id"]) is None


async def test_duplicate_delivery_is_acknowledged_as_such(wh_client: Any) -> None:
    event = make_event()
    first = await post_event(wh_client, event)
    second = await post_event(wh_client, event)
    assert first.json()["outcome"] == "stored"
    assert second.status_code == 200
    assert second.json()["outcome"] == "duplicate"
    assert await count_events() == 1


async def test_livemode_mismatch_is_stored_as_ignored(wh_client: Any, wh_app: Any, redis_pool: Any) -> None:
    from webhooks.queueing import enqueuer_for

    event = make_event(livemode=True)  # the suite runs with a test-mode key
    response = await post_event(wh_client, event)
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "ignored"
    assert "livemode" in row["last_error"]
    await enqueuer_for(wh_app.state.arq).flush()
    assert await redis_pool.exists(f"arq:job:{event['id']}") == 0  # never queued


@pytest.mark.parametrize(("endpoint", "account"), [("platform", "acct_misrouted"), ("connect", None)])
async def test_misrouted_event_is_stored_and_flagged(wh_client: Any, endpoint: str, account: str | None) -> None:
    event = make_event(account=account)
    response = await post_event(wh_client, event, endpoint=endpoint)
    assert response.status_code == 200
    row = await stored(event["id"])
    assert row is not None
    assert row["misrouted"] is True
    assert row["endpoint"] == endpoint
    assert row["account"] == account


async def test_framework_route_and_fast_ingress_answer_alike(wh_client: Any) -> None:
    """`/webhooks/stripe/` (trailing slash) reaches the Litestar route, the exact path the ingress:
    both run `accept_delivery`, so both store, acknowledge and refuse the same way."""
    for path in ("/webhooks/stripe", "/webhooks/stripe/"):
        event = make_event()
        body = json.dumps(event)
        ok = await wh_client.post(
            path,
            content=body,
            headers={"Stripe-Signature": sign(body, PLATFORM_SECRET), "Content-Type": "application/json"},
        )
        assert ok.status_code == 200, (path, ok.text)
        assert ok.json() == {"received": True, "event_id": event["id"], "outcome": "stored"}
        assert await stored(event["id"]) is not None
        forged = make_event()
        bad_body = json.dumps(forged)
        bad = await wh_client.post(path, content=bad_body, headers={"Stripe-Signature": sign(bad_body, "whsec_x")})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith(PROBLEM)
        assert bad.json()["type"] == "urn:marketplace:problem:webhook-signature-invalid"
        assert bad.json()["instance"].rstrip("/") == "/webhooks/stripe"
        assert "request_id" in bad.json()
        assert await stored(forged["id"]) is None


async def test_timestamp_just_inside_the_tolerance_is_accepted(wh_client: Any) -> None:
    event = make_event()
    response = await post_event(wh_client, event, timestamp=int(time.time()) - 298)
    assert response.status_code == 200
    assert await stored(event["id"]) is not None


async def test_signed_event_containing_a_nul_escape_is_stored_faithfully(
    wh_client: Any, admin_headers: dict[str, str], recorder: Any, run_worker: Any
) -> None:
    # Valid JSON that jsonb refuses ("\u0000 cannot be converted to text").
    event = make_event(obj={"id": "obj_nul", "object": "test_object", "note": "before\x00after"})
    body = json.dumps(event)
    assert "\\u0000" in body
    response = await post_event(wh_client, event)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "stored"
    row = await stored(event["id"])
    assert row is not None
    assert row["payload"] == event  # what a handler and the admin API get: the event as Stripe sent it
    assert row["payload_raw"] == body
    detail = await wh_client.get(f"/admin/events/{event['id']}", headers=admin_headers)
    assert detail.json()["payload"]["data"]["object"]["note"] == "before\x00after"
    await run_worker()
    assert recorder.calls[event["id"]] == 1
    assert (await stored(event["id"]) or {})["status"] == "processed"


async def test_a_row_postgresql_refuses_does_not_fail_the_others_sharing_its_insert(wh_client: Any) -> None:
    """Concurrent deliveries share one INSERT (group commit); a row PostgreSQL refuses (here jsonb and
    a NUL escape, as stored before ingest kept such bodies) fails its own delivery only."""
    from datetime import UTC, datetime

    import asyncpg

    from webhooks.store import NewEvent, insert_event
    from webhooks.tables import EventStatus

    def new_event(payload_json: str, event_id: str) -> NewEvent:
        return NewEvent(
            id=event_id,
            type="test.recorded",
            account=None,
            endpoint="platform",
            misrouted=False,
            livemode=False,
            api_version=None,
            created=datetime.now(UTC),
            payload_json=payload_json,
            status=EventStatus.pending,
        )

    good = [make_event() for _ in range(9)]
    bad_id = make_event()["id"]
    events = [new_event(json.dumps(e), e["id"]) for e in good]
    events.append(new_event('{"note": "\\u0000"}', bad_id))
    # Three inserts run at once; the other seven wait and are flushed together, the bad row among them.
    results = await asyncio.gather(*(insert_event(e) for e in events), return_exceptions=True)
    assert results[:9] == [True] * 9
    assert isinstance(results[9], asyncpg.PostgresError)
    for event in good:
        assert await stored(event["id"]) is not None
    assert await stored(bad_id) is None
    assert await count_events() == 9


async def test_event_whose_insert_commits_after_its_503_is_still_processed(
    wh_client: Any, wh_app: Any, redis_pool: Any, recorder: Any, run_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery gives up on a slow insert (503) while a shared insert holding its row is still in
    flight; that insert may commit afterwards. Stripe's retry is then a duplicate, and the sweeper
    queues the event, so it is processed once all the same."""
    from webhooks import ingest, store
    from webhooks.worker import queue_due

    monkeypatch.setattr(ingest, "STORE_TIMEOUT_SECONDS", 0.5)
    events = [make_event() for _ in range(4)]
    async with store.connection() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("LOCK TABLE stripe_events IN SHARE ROW EXCLUSIVE MODE")  # inserts wait
        responses = await asyncio.gather(*(post_event(wh_client, e) for e in events))
        await transaction.rollback()
    assert [r.status_code for r in responses] == [503] * 4
    deadline = time.monotonic() + 30
    while await count_events() == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    late = [e for e in events if await stored(e["id"]) is not None]
    assert late, "the shared insert in flight committed after its deliveries were answered 503"
    for event in late:
        assert (await stored(event["id"]) or {})["status"] == "pending"

    retries = {e["id"]: (await post_event(wh_client, e)).json()["outcome"] for e in events}  # Stripe retries
    assert {i for i, outcome in retries.items() if outcome == "duplicate"} == {e["id"] for e in late}
    await enqueuer_for(wh_app.state.arq).flush()
    ctx = {"settings": wh_app.state.settings, "redis": redis_pool}
    assert (await queue_due(ctx, pending_grace=timedelta(0)))["pending"] == len(late)  # the sweeper
    await run_worker()
    assert {e["id"]: recorder.calls[e["id"]] for e in events} == {e["id"]: 1 for e in events}


async def test_deliveries_are_stored_while_the_apis_own_pool_is_exhausted(wh_client: Any) -> None:
    """Stripe's deliveries have connections of their own: slow API queries holding every connection of
    the shared pool do not make a delivery wait (and Stripe time out and retry)."""
    from marketplace.lib.db import DB

    pool = DB.pool
    assert pool is not None
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        event = make_event()
        response = await asyncio.wait_for(post_event(wh_client, event), timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "stored"
    finally:
        for conn in held:
            await pool.release(conn)
    assert await stored(event["id"]) is not None


async def test_a_non_ascii_signature_header_is_a_400_not_a_500(wh_client: Any) -> None:
    """Found by the property tier: the SDK's constant-time comparison raised TypeError on a non-ASCII
    byte in a `v1=` entry, which answered 500 to anyone without a key."""
    event = make_event()
    body = json.dumps(event)
    response = await wh_client.post(
        "/webhooks/stripe",
        content=body,
        headers=[("Stripe-Signature", "t=1,v1=\xff".encode("latin-1")), ("Content-Type", "application/json")],
    )
    assert response.status_code == 400
    assert response.json()["type"] == "urn:marketplace:problem:webhook-signature-invalid"
    assert await stored(event["id"]) is None
