"""Webhook endpoints, signed deliveries, platform vs Connect routing, retries, secret rolls, event listing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import stripe

from sandbox.control import SandboxControl
from sandbox.server import SandboxConfig, free_port, run_in_thread

from .conftest import Receiver, make_client, wait_until
from .helpers import destination_session, direct_session, endpoints, onboarded_account


async def test_endpoint_crud_returns_secret_once(client: stripe.StripeClient) -> None:
    ep = await client.v1.webhook_endpoints.create_async(
        params={
            "url": "https://example.com/hook",
            "enabled_events": ["checkout.session.completed"],
            "connect": True,
            "api_version": "2026-10-28.endive",
        }
    )
    assert ep.secret is not None
    assert ep.secret.startswith("whsec_")
    assert (ep.status, ep.api_version) == ("enabled", "2026-10-28.endive")
    listed = await client.v1.webhook_endpoints.list_async()
    assert [e.id for e in listed.data] == [ep.id]
    assert "secret" not in listed.data[0].to_dict()
    updated = await client.v1.webhook_endpoints.update_async(ep.id, params={"enabled_events": ["*"], "disabled": True})
    assert (updated.enabled_events, updated.status) == (["*"], "disabled")
    deleted = await client.v1.webhook_endpoints.delete_async(ep.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.webhook_endpoints.create_async(params={"url": "not a url", "enabled_events": ["*"]})


async def test_signed_deliveries_and_routing(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    platform_ep, connect_ep = await endpoints(client, receiver.url)
    dest = await onboarded_account(client, control)
    seller = await onboarded_account(client, control, dashboard="full")
    d_session = await destination_session(client, dest)
    await control.complete_checkout(d_session.id)
    s_session = await direct_session(client, seller)
    await control.complete_checkout(s_session.id, stripe_account=seller)
    await control.wait_for_deliveries()

    platform_events = [
        stripe.Webhook.construct_event(
            r.body.decode(), r.headers["stripe-signature"], platform_ep.secret, tolerance=300
        )
        for r in receiver.for_path("/platform")
    ]
    connect_events = [
        stripe.Webhook.construct_event(r.body.decode(), r.headers["stripe-signature"], connect_ep.secret, tolerance=300)
        for r in receiver.for_path("/connect")
    ]
    p_types = [e.type for e in platform_events]
    # Destination charge: everything on the platform endpoint.
    for t in (
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
        "transfer.created",
        "application_fee.created",
    ):
        assert t in p_types
    assert all(getattr(e, "account", None) is None for e in platform_events)
    completed = [e for e in platform_events if e.type == "checkout.session.completed"]
    assert [e.data.object.id for e in completed] == [d_session.id]
    # Direct charge: its events only on the Connect endpoint, each with `account`; the fee is a platform event.
    c_completed = [e for e in connect_events if e.type == "checkout.session.completed"]
    assert [(e.data.object.id, e.account) for e in c_completed] == [(s_session.id, seller)]
    assert {e.account for e in connect_events} == {dest, seller}  # account.updated / capability.updated from onboarding
    assert p_types.count("application_fee.created") == 2
    # Wrong secret fails verification.
    r = receiver.for_path("/platform")[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(r.body.decode(), r.headers["stripe-signature"], connect_ep.secret)
    body = json.loads(r.body)
    assert body["api_version"] == "2026-10-28.endive"
    assert body["livemode"] is False
    assert r.headers["content-type"].startswith("application/json")


async def test_enabled_events_filter(client: stripe.StripeClient, control: SandboxControl, receiver: Receiver) -> None:
    await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["checkout.session.completed"]}
    )
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    await control.complete_checkout(session.id)
    await control.wait_for_deliveries()
    types = [json.loads(r.body)["type"] for r in receiver.for_path("/platform")]
    assert types == ["checkout.session.completed"]


async def test_event_payload_is_object_at_that_moment(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    await control.complete_checkout(session.id)
    await client.v1.checkout.sessions.update_async(session.id, params={"metadata": {"later": "yes"}})
    evt = (await client.v1.events.list_async(params={"type": "checkout.session.completed"})).data[0]
    assert evt.data.object["payment_status"] == "paid"
    assert "later" not in evt.data.object["metadata"]
    created = (await client.v1.events.list_async(params={"type": "payment_intent.created"})).data[0]
    assert created.data.object["status"] == "requires_payment_method"
    assert (await client.v1.events.retrieve_async(evt.id)).id == evt.id


async def test_retries_after_failing_receiver(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["checkout.session.expired"]}
    )
    receiver.fail(2, status=500)
    s = await client.v1.checkout.sessions.create_async(
        params={
            "mode": "payment",
            "line_items": [
                {"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}
            ],
        }
    )
    await client.v1.checkout.sessions.expire_async(s.id)
    [delivery] = await control.wait_for_deliveries(endpoint=ep.id)
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    hits = receiver.for_path("/platform")
    assert len(hits) == 3
    gaps = [hits[i + 1].at - hits[i].at for i in range(2)]
    assert gaps[0] >= 0.045
    assert gaps[1] >= 0.095
    assert len({json.loads(h.body)["id"] for h in hits}) == 1
    assert (await client.v1.events.list_async(params={"delivery_success": True})).data[0].pending_webhooks == 0


async def test_redirects_count_as_failures_and_exhaustion(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["*"]}
    )
    receiver.fail(10, status=302)
    await client.v1.coupons.create_async(params={"percent_off": 5})
    acct = await onboarded_account(client, control)
    s = await destination_session(client, acct)
    await client.v1.checkout.sessions.expire_async(s.id)
    [delivery] = await control.wait_for_deliveries(endpoint=ep.id)
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [302, 302, 302, 302]
    undelivered = await client.v1.events.list_async(params={"delivery_success": False})
    assert [e.type for e in undelivered.data] == ["checkout.session.expired"]
    assert undelivered.data[0].pending_webhooks == 1


async def test_secret_roll_signs_with_both(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["*"]}
    )
    new_secret = await control.roll_webhook_secret(ep.id, expires_in=3600)
    await client.v1.checkout.sessions.create_async(
        params={
            "mode": "payment",
            "line_items": [
                {"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}
            ],
        }
    )
    s = (await client.v1.checkout.sessions.list_async()).data[0]
    await client.v1.checkout.sessions.expire_async(s.id)
    await control.wait_for_deliveries()
    [hit] = receiver.for_path("/platform")
    header = hit.headers["stripe-signature"]
    assert header.count("v1=") == 2
    assert ep.secret is not None
    for secret in (ep.secret, new_secret):
        assert stripe.Webhook.construct_event(hit.body.decode(), header, secret).type == "checkout.session.expired"
    # Expire the old secret immediately: one signature.
    await control.roll_webhook_secret(ep.id, expires_in=0)
    receiver.clear()
    s2 = await client.v1.checkout.sessions.create_async(
        params={
            "mode": "payment",
            "line_items": [
                {"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}
            ],
        }
    )
    await client.v1.checkout.sessions.expire_async(s2.id)
    await control.wait_for_deliveries()
    assert receiver.for_path("/platform")[0].headers["stripe-signature"].count("v1=") == 1


async def test_event_list_filters(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    session = await destination_session(client, acct)
    before = int(time.time())
    await control.complete_checkout(session.id)
    all_events = await client.v1.events.list_async(params={"limit": 100})
    # The platform's list holds the destination charge's events, none with `account`; the seller's onboarding
    # events are the connected account's.
    assert all("account" not in e.to_dict() for e in all_events.data)
    assert sorted(e.type for e in all_events.data) == sorted(
        [
            "application_fee.created",
            "charge.succeeded",
            "checkout.session.completed",
            "payment_intent.created",
            "payment_intent.succeeded",
            "transfer.created",
        ]
    )
    only = await client.v1.events.list_async(params={"types": ["charge.succeeded", "transfer.created"]})
    assert sorted(e.type for e in only.data) == ["charge.succeeded", "transfer.created"]
    wildcard = await client.v1.events.list_async(params={"type": "payment_intent.*"})
    assert {e.type for e in wildcard.data} == {"payment_intent.created", "payment_intent.succeeded"}
    recent = await client.v1.events.list_async(params={"created": {"gte": before}})
    assert len(recent.data) == len(all_events.data)
    future = await client.v1.events.list_async(params={"created": {"gt": before + 3600}})
    assert future.data == []
    # No endpoint existed: every event counts as delivered.
    assert (await client.v1.events.list_async(params={"delivery_success": False})).data == []
    connected = await client.v1.events.list_async(options={"stripe_account": acct})
    assert {e.type for e in connected.data} == {"account.updated", "capability.updated"}
    assert all(e.account == acct for e in connected.data)


async def test_deauthorization_goes_to_connect_endpoint(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    _platform_ep, connect_ep = await endpoints(client, receiver.url, events=["account.application.deauthorized"])
    acct = await onboarded_account(client, control)
    await control.deauthorize(acct)
    await control.wait_for_deliveries()
    assert receiver.for_path("/platform") == []
    [hit] = receiver.for_path("/connect")
    assert connect_ep.secret is not None
    evt = stripe.Webhook.construct_event(hit.body.decode(), hit.headers["stripe-signature"], connect_ep.secret)
    assert (evt.type, evt.account, evt.data.object.object) == ("account.application.deauthorized", acct, "application")


async def test_deleting_an_endpoint_stops_its_retries(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["*"]}
    )
    receiver.fail(10, status=503)
    receiver.hold = threading.Event()  # the first attempt stays in flight until the endpoint is gone
    await client.v1.coupons.create_async(params={"percent_off": 5})
    s = await client.v1.checkout.sessions.create_async(
        params={
            "mode": "payment",
            "line_items": [
                {"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}
            ],
        }
    )
    await client.v1.checkout.sessions.expire_async(s.id)
    await wait_until(lambda: len(receiver.for_path("/platform")) == 1)
    await client.v1.webhook_endpoints.delete_async(ep.id)
    receiver.hold.set()  # the first attempt fails (503); its retry finds the endpoint deleted
    [delivery] = await control.wait_for_deliveries()
    assert delivery["status"] == "canceled"
    assert len(delivery["attempts"]) == 1
    assert len(receiver.for_path("/platform")) == 1


def _expire_params() -> Any:
    return {
        "mode": "payment",
        "line_items": [
            {"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "x"}}, "quantity": 1}
        ],
    }


async def test_retries_go_to_the_endpoints_current_url(receiver: Receiver) -> None:
    """A delivery is made to the endpoint, so a retry after the url changed goes to the new url."""
    with run_in_thread(SandboxConfig(port=0, mode="test", retry_schedule=(1.0,))) as sb:
        client = make_client(sb.url)
        async with SandboxControl(sb.url) as control:
            ep = await client.v1.webhook_endpoints.create_async(
                params={"url": f"{receiver.url}/old", "enabled_events": ["checkout.session.expired"]}
            )
            receiver.fail(1, status=503)
            s = await client.v1.checkout.sessions.create_async(params=_expire_params())
            await client.v1.checkout.sessions.expire_async(s.id)
            await control.wait_for_deliveries(predicate=lambda ds: len(ds) == 1 and len(ds[0]["attempts"]) == 1)
            await client.v1.webhook_endpoints.update_async(ep.id, params={"url": f"{receiver.url}/new"})
            [delivery] = await control.wait_for_deliveries()
    assert delivery["status"] == "succeeded"
    assert [(a["url"], a["status_code"]) for a in delivery["attempts"]] == [
        (f"{receiver.url}/old", 503),
        (f"{receiver.url}/new", 200),
    ]
    assert [r.status for r in receiver.for_path("/new")] == [200]


async def test_unreachable_and_slow_receivers_are_retried(receiver: Receiver) -> None:
    with run_in_thread(SandboxConfig(port=0, mode="test", retry_schedule=(0.05,), delivery_timeout=0.2)) as sb:
        client = make_client(sb.url)
        async with SandboxControl(sb.url) as control:
            refused = await client.v1.webhook_endpoints.create_async(
                params={"url": f"http://127.0.0.1:{free_port()}/nobody", "enabled_events": ["*"]}
            )
            slow = await client.v1.webhook_endpoints.create_async(
                params={"url": f"{receiver.url}/slow", "enabled_events": ["*"]}
            )
            receiver.delay = 0.5
            s = await client.v1.checkout.sessions.create_async(params=_expire_params())
            await client.v1.checkout.sessions.expire_async(s.id)
            deliveries = {d["endpoint"]: d for d in await control.wait_for_deliveries()}
            evt = (await client.v1.events.list_async()).data[0]
    for endpoint, error in ((refused.id, "ConnectError"), (slow.id, "Timeout")):
        d = deliveries[endpoint]
        assert d["status"] == "failed"
        assert len(d["attempts"]) == 2
        assert all(a["status_code"] is None and error in a["error"] for a in d["attempts"])
    assert len(receiver.for_path("/slow")) == 2
    assert evt.pending_webhooks == 2


async def test_a_disabled_endpoint_gets_nothing(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    ep = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{receiver.url}/platform", "enabled_events": ["*"]}
    )
    await client.v1.webhook_endpoints.update_async(ep.id, params={"disabled": True})
    s = await client.v1.checkout.sessions.create_async(params=_expire_params())
    await client.v1.checkout.sessions.expire_async(s.id)
    await asyncio.sleep(0.3)
    assert await control.deliveries() == []
    assert receiver.for_path("/platform") == []
    assert (await client.v1.events.list_async()).data[0].pending_webhooks == 0


async def test_a_deauthorized_accounts_events_are_not_delivered(
    client: stripe.StripeClient, control: SandboxControl, receiver: Receiver
) -> None:
    _platform_ep, _connect_ep = await endpoints(client, receiver.url)
    seller = await onboarded_account(client, control, dashboard="full")
    session = await direct_session(client, seller)
    await control.complete_checkout(session.id, stripe_account=seller)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, options={"stripe_account": seller})
    pi = await client.v1.payment_intents.retrieve_async(str(s.payment_intent), options={"stripe_account": seller})
    await control.deauthorize(seller)
    await control.wait_for_deliveries()
    receiver.clear()
    await control.open_dispute(str(pi.latest_charge))  # events on the seller's account, after deauthorization
    await asyncio.sleep(0.3)
    assert await control.deliveries(type="charge.dispute.created") == []
    assert receiver.for_path("/connect") == []
    [deauth] = await control.deliveries(type="account.application.deauthorized")
    assert deauth["status"] == "succeeded"
