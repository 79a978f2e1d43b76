"""Idempotency replay/conflict per account, connected-account isolation, list pagination."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl

from .conftest import API_KEY
from .helpers import direct_session, onboarded_account, session_params

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"}


async def test_same_key_same_params_replays(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    params = {"type": "express", "email": "a@example.com"}
    first = await client.v1.accounts.create_async(params=params, options={"idempotency_key": "account:1"})  # type: ignore[arg-type]
    second = await client.v1.accounts.create_async(params=params, options={"idempotency_key": "account:1"})  # type: ignore[arg-type]
    assert first.id == second.id
    assert len((await client.v1.accounts.list_async()).data) == 1
    raw = await http.post(
        "/v1/accounts", content="type=express&email=a%40example.com", headers={**AUTH, "Idempotency-Key": "account:1"}
    )
    assert raw.headers["idempotent-replayed"] == "true"
    assert raw.json()["id"] == first.id


async def test_replay_is_the_first_response_not_the_current_state(client: stripe.StripeClient) -> None:
    first = await client.v1.accounts.create_async(
        params={"type": "express", "email": "old@example.com"}, options={"idempotency_key": "a:2"}
    )
    await client.v1.accounts.update_async(first.id, params={"email": "new@example.com"})
    replay = await client.v1.accounts.create_async(
        params={"type": "express", "email": "old@example.com"}, options={"idempotency_key": "a:2"}
    )
    assert replay.id == first.id
    assert replay.email == "old@example.com"
    assert (await client.v1.accounts.retrieve_async(first.id)).email == "new@example.com"


async def test_same_key_other_params_is_idempotency_error(client: stripe.StripeClient) -> None:
    await client.v1.accounts.create_async(params={"type": "express"}, options={"idempotency_key": "k1"})
    with pytest.raises(stripe.IdempotencyError) as info:
        await client.v1.accounts.create_async(params={"type": "standard"}, options={"idempotency_key": "k1"})
    assert info.value.http_status == 400
    assert "Keys for idempotent requests can only be used with the same parameters" in str(info.value.user_message)


async def test_errors_are_replayed_but_validation_errors_are_not(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    acct = await onboarded_account(client, control)
    session = await direct_session(client, acct)
    await control.complete_checkout(session.id, stripe_account=acct)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, options={"stripe_account": acct})
    opts = {"stripe_account": acct}
    await client.v1.refunds.create_async(params={"payment_intent": str(s.payment_intent)}, options=opts)  # type: ignore[arg-type]
    body = f"payment_intent={s.payment_intent}"
    headers = {**AUTH, "Idempotency-Key": "refund:again", "Stripe-Account": acct}
    first = await http.post("/v1/refunds", content=body, headers=headers)
    assert first.status_code == 400
    assert first.json()["error"]["code"] == "charge_already_refunded"
    replay = await http.post("/v1/refunds", content=body, headers=headers)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == first.json()
    # A parameter validation error is not saved: fixing the request under the same key works.
    bad = await http.post("/v1/coupons", content="percent_off=500", headers={**AUTH, "Idempotency-Key": "coupon:1"})
    assert bad.status_code == 400
    bad2 = await http.post("/v1/coupons", content="percent_off=500", headers={**AUTH, "Idempotency-Key": "coupon:1"})
    assert "idempotent-replayed" not in bad2.headers


async def test_keys_are_per_account(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    a = await client.v1.coupons.create_async(params={"percent_off": 10}, options={"idempotency_key": "same"})
    b = await client.v1.coupons.create_async(
        params={"percent_off": 10}, options={"idempotency_key": "same", "stripe_account": acct}
    )
    assert a.id != b.id
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.coupons.retrieve_async(b.id)


async def test_account_isolation_between_connected_accounts(
    client: stripe.StripeClient, control: SandboxControl
) -> None:
    a = await onboarded_account(client, control)
    b = await onboarded_account(client, control)
    session = await direct_session(client, a)
    assert (
        await client.v1.checkout.sessions.retrieve_async(session.id, options={"stripe_account": a})
    ).id == session.id
    for opts in ({}, {"stripe_account": b}):
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.checkout.sessions.retrieve_async(session.id, options=opts)  # type: ignore[arg-type]
        assert info.value.http_status == 404
        assert str(info.value.user_message) == f"No such checkout.session: '{session.id}'"
    assert (await client.v1.checkout.sessions.list_async(options={"stripe_account": b})).data == []
    assert (await client.v1.checkout.sessions.list_async()).data == []
    with pytest.raises(stripe.PermissionError):
        await client.v1.checkout.sessions.list_async(options={"stripe_account": "acct_1doesnotexist"})


async def test_pagination(client: stripe.StripeClient) -> None:
    created = [await client.v1.checkout.sessions.create_async(params=session_params()) for _ in range(7)]
    newest_first = [s.id for s in reversed(created)]
    page1 = await client.v1.checkout.sessions.list_async(params={"limit": 3})
    assert [s.id for s in page1.data] == newest_first[:3]
    assert page1.has_more is True
    page2 = await client.v1.checkout.sessions.list_async(params={"limit": 3, "starting_after": page1.data[-1].id})
    assert [s.id for s in page2.data] == newest_first[3:6]
    page3 = await client.v1.checkout.sessions.list_async(params={"limit": 3, "starting_after": page2.data[-1].id})
    assert [s.id for s in page3.data] == newest_first[6:]
    assert page3.has_more is False
    back = await client.v1.checkout.sessions.list_async(params={"limit": 2, "ending_before": page2.data[0].id})
    assert [s.id for s in back.data] == newest_first[1:3]
    assert back.has_more is True
    everything = [
        s.id async for s in (await client.v1.checkout.sessions.list_async(params={"limit": 2})).auto_paging_iter()
    ]
    assert everything == newest_first
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.checkout.sessions.list_async(params={"limit": 101})
    assert info.value.param == "limit"


async def test_errors_with_a_param_raised_while_executing_are_replayed(
    client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient
) -> None:
    """Stripe saves a result once the endpoint began executing, whatever the error: state errors that name a
    parameter (amount_too_large, balance_insufficient, a missing object) are replayed too."""
    acct = await onboarded_account(client, control)
    session = await direct_session(client, acct)
    await control.complete_checkout(session.id, stripe_account=acct)
    s = await client.v1.checkout.sessions.retrieve_async(session.id, options={"stripe_account": acct})
    for path, body, account, code, status in (
        ("/v1/refunds", f"payment_intent={s.payment_intent}&amount=999999", acct, "amount_too_large", 400),
        ("/v1/transfers", f"amount=999999&currency=usd&destination={acct}", None, "balance_insufficient", 400),
        ("/v1/refunds", "charge=ch_doesnotexist", None, "resource_missing", 404),
    ):
        headers = {**AUTH, "Idempotency-Key": f"replay:{path}:{code}"}
        if account:
            headers["Stripe-Account"] = account
        first = await http.post(path, content=body, headers=headers)
        assert (first.status_code, first.json()["error"]["code"]) == (status, code)
        assert first.json()["error"]["param"]
        replay = await http.post(path, content=body, headers=headers)
        assert replay.headers.get("idempotent-replayed") == "true"
        assert (replay.status_code, replay.json()) == (status, first.json())
    # Through the SDK: the replayed error is the same error.
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.refunds.create_async(
            params={"payment_intent": str(s.payment_intent), "amount": 999999},
            options={"stripe_account": acct, "idempotency_key": "replay:/v1/refunds:amount_too_large"},
        )
    assert info.value.code == "amount_too_large"
    assert info.value.headers is not None
    assert info.value.headers["idempotent-replayed"] == "true"
