"""Fault knobs: failing API calls (500, 429, timeout), latency, and duplicate/delay/reorder/drop deliveries."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl, SandboxControlError
from sandbox.server import RunningSandbox

from .conftest import API_KEY, Receiver, make_client
from .helpers import error_of

LINE = [{"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}]


async def test_500_then_sdk_retry_succeeds_once(client: stripe.StripeClient, control: SandboxControl) -> None:
    await control.fail_next(1, status=500)
    coupon = await client.v1.coupons.create_async(
        params={"percent_off": 10}, options={"idempotency_key": "coupon:retry"}
    )
    assert coupon.percent_off == 10
    assert len((await client.v1.coupons.list_async()).data) == 1
    assert (await control.faults())["api_faults"] == []


async def test_500_beyond_retries_surfaces_api_error(client: stripe.StripeClient, control: SandboxControl) -> None:
    await control.fail_next(3, status=500)
    with pytest.raises(stripe.APIError) as info:
        await client.v1.coupons.create_async(params={"percent_off": 10})
    assert info.value.http_status == 500
    assert (await client.v1.coupons.list_async()).data == []


async def test_429_with_retry_after(client: stripe.StripeClient, control: SandboxControl) -> None:
    await control.fail_next(1, status=429, retry_after=3)
    with pytest.raises(stripe.RateLimitError) as info:
        await client.v1.balance.retrieve_async()
    assert info.value.http_status == 429
    assert info.value.headers is not None
    assert info.value.headers["retry-after"] == "3"
    assert info.value.json_body is not None
    assert error_of(info.value)["code"] == "rate_limit"
    await control.fail_next(1, status=429, should_retry=True)
    assert (await client.v1.balance.retrieve_async()).object == "balance"


async def test_timeout_hangs_the_request(running: RunningSandbox, control: SandboxControl) -> None:
    # Without retries, a client with a shorter timeout than the hang is cut by its own timeout: a
    # connection error, not the 500 the sandbox answers once the hang is over (how soon it is cut is
    # the scheduler's; that it waited its timeout first is the lower bound).
    no_retry = make_client(running.url, retries=0, timeout=0.3)
    await control.fail_next(1, status="timeout", hang=20.0)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError) as cut:
        await no_retry.v1.coupons.create_async(params={"percent_off": 15})
    assert time.monotonic() - started >= 0.3
    assert "ReadTimeout" in str(cut.value), cut.value
    assert (await control.faults())["api_faults"] == []  # the hang was this request's
    # A patient raw client waits out the whole hang, then gets the 500.
    await control.fail_next(1, status="timeout", hang=0.5)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as raw:
        started = time.monotonic()
        resp = await raw.get("/v1/balance", headers={"Authorization": f"Bearer {API_KEY}"})
    assert time.monotonic() - started >= 0.5
    assert (resp.status_code, resp.json()["error"]["type"]) == (500, "api_error")
    # With a retry, the SDK's second attempt (same idempotency key) creates the coupon exactly once. The
    # timeout cuts the hanging first attempt; the second, unhurried, has all of it.
    impatient = make_client(running.url, retries=1, timeout=3.0)
    await control.fail_next(1, status="timeout", hang=20.0)
    coupon = await impatient.v1.coupons.create_async(params={"percent_off": 15})
    assert coupon.percent_off == 15
    assert len((await impatient.v1.coupons.list_async()).data) == 1


async def test_502_and_503(running: RunningSandbox, control: SandboxControl) -> None:
    no_retry = make_client(running.url, retries=0)
    for status in (502, 503):
        await control.fail_next(1, status=status)
        with pytest.raises(stripe.APIError) as info:
            await no_retry.v1.balance.retrieve_async()
        assert info.value.http_status == status
        assert error_of(info.value)["type"] == "api_error"
    await control.fail_next(1, status=502)
    await control.fail_next(1, status=503)
    coupon = await make_client(running.url, retries=2).v1.coupons.create_async(params={"percent_off": 5})
    assert [c.id for c in (await no_retry.v1.coupons.list_async()).data] == [coupon.id]


async def test_latency(client: stripe.StripeClient, control: SandboxControl) -> None:
    await control.set_latency(150)
    started = time.monotonic()
    await client.v1.balance.retrieve_async()
    assert time.monotonic() - started >= 0.15
    await control.set_latency(0)


async def test_control_rejects_bad_fault(control: SandboxControl) -> None:
    with pytest.raises(SandboxControlError) as info:
        await control.fail_next(1, status=418)
    assert info.value.status == 400


async def _expire_sessions(client: stripe.StripeClient, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        s = await client.v1.checkout.sessions.create_async(params={"mode": "payment", "line_items": LINE})  # type: ignore[arg-type]
        await client.v1.checkout.sessions.expire_async(s.id)
        ids.append(s.id)
    return ids


async def _endpoint(client: stripe.StripeClient, receiver: Receiver) -> str:
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["checkout.session.expired"]}
    )
    return ep.id


def _session_ids(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["data"]["object"]["id"] for r in receiver.for_path("/platform")]


async def test_duplicate_delivery(client: stripe.StripeClient, control: SandboxControl, receiver: Receiver) -> None:
    await _endpoint(client, receiver)
    await control.set_delivery_faults(duplicate=1)
    [sid] = await _expire_sessions(client, 1)
    deliveries = await control.wait_for_deliveries()
    assert len(deliveries) == 2
    assert {d["status"] for d in deliveries} == {"succeeded"}
    bodies = [json.loads(r.body) for r in receiver.for_path("/platform")]
    assert [b["id"] for b in bodies] == [bodies[0]["id"]] * 2
    assert _session_ids(receiver) == [sid, sid]


async def test_delayed_delivery(client: stripe.StripeClient, control: SandboxControl, receiver: Receiver) -> None:
    await _endpoint(client, receiver)
    await control.set_delivery_faults(delay=0.3)
    started = time.time()
    await _expire_sessions(client, 1)
    [d] = await control.wait_for_deliveries()
    assert d["fault"] == "delayed"
    assert receiver.for_path("/platform")[0].at - started >= 0.3


async def test_reordered_deliveries(client: stripe.StripeClient, control: SandboxControl, receiver: Receiver) -> None:
    await _endpoint(client, receiver)
    await control.set_delivery_faults(reorder=3)
    ids = await _expire_sessions(client, 3)
    await control.wait_for_deliveries(predicate=lambda ds: len(ds) == 3 and all(d["status"] == "succeeded" for d in ds))
    assert _session_ids(receiver) == list(reversed(ids))


async def test_dropped_delivery_is_found_through_events(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    ep = await _endpoint(client, receiver)
    await control.set_delivery_faults(drop=1)
    dropped, kept = await _expire_sessions(client, 2)
    deliveries = await control.wait_for_deliveries(endpoint=ep)
    assert [d["status"] for d in deliveries] == ["dropped", "succeeded"]
    assert _session_ids(receiver) == [kept]
    undelivered = await client.v1.events.list_async(params={"delivery_success": False})
    assert [e.data.object["id"] for e in undelivered.data] == [dropped]
    assert (await control.deliveries(status="dropped"))[0]["attempts"] == []
