"""Seller onboarding end to end: API → sandbox (real HTTP, hosted form) → Connect webhook → worker.

Every step goes through the same doors a seller and Stripe use: the bearer-token API, the hosted
onboarding page submitted as a browser would, signed webhook deliveries to the Connect endpoint, and
the arq worker processing the stored events.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from marketplace.sellers.onboarding import SellerCannotSell, ensure_can_accept_checkout
from marketplace.sellers.tables import ConnectedAccount, Seller
from tests.e2e.conftest import Stack
from tests.support.factories import SellerSignupFactory, payload
from webhooks.tables import StripeEvent


async def sign_up(stack: Stack) -> tuple[dict[str, str], dict[str, Any]]:
    response = await stack.api.post("/sellers", json=payload(SellerSignupFactory))
    assert response.status_code == 201, response.text
    body = response.json()
    return {"Authorization": f"Bearer {body['token']}"}, body["seller"]


async def create_account(stack: Stack, auth: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    assert response.status_code in (200, 201), response.text
    account: dict[str, Any] = response.json()
    return account


async def me(stack: Stack, auth: dict[str, str]) -> dict[str, Any]:
    response = await stack.api.get("/sellers/me", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def open_onboarding_form(browser: httpx.AsyncClient, url: str) -> str:
    """GET the hosted onboarding link as a browser would; return the form's action URL."""
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    match = re.search(r"<form method='post' action='([^']+)'", page.text)
    assert match, page.text
    return match.group(1)


async def submit_onboarding(stack: Stack, link: str, action: str) -> str:
    """Fill the hosted form; returns where the sandbox redirects the browser (our return URL)."""
    async with httpx.AsyncClient(base_url=stack.sandbox_url, follow_redirects=False) as browser:
        form_action = await open_onboarding_form(browser, link)
        submitted = await browser.post(form_action, data={"url": "https://seller.example", "action": action})
    assert submitted.status_code == 303
    location: str = submitted.headers["location"]
    return location


async def onboarding_link(stack: Stack, auth: dict[str, str]) -> str:
    response = await stack.api.post("/sellers/me/onboarding-link", headers=auth)
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


async def test_complete_onboarding_activates_the_seller_through_the_connect_webhook(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    account = await create_account(stack, auth)
    account_id = account["account_id"]
    assert account_id.startswith("acct_")
    assert account["status"] == "onboarding"
    assert account["dashboard"] == "express"  # platform-managed is the default profile

    return_url = await submit_onboarding(stack, await onboarding_link(stack, auth), "complete")
    assert return_url.startswith(f"{stack.api_url}/sellers/onboarding/")
    # Do not follow the return URL: the webhook alone must bring the seller to active.
    profile = await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")
    state = profile["connected_account"]
    assert state["charges_enabled"] is True
    assert state["payouts_enabled"] is True
    assert state["details_submitted"] is True
    assert state["requirements"]["currently_due"] == []
    assert state["synced_from"].startswith("event:evt_")
    event_id = state["synced_from"].removeprefix("event:")
    stored = await StripeEvent.select().where(StripeEvent.id == event_id).first()
    assert stored is not None
    assert stored["endpoint"] == "connect"
    assert stored["account"] == account_id
    assert stored["type"] in ("account.updated", "capability.updated")

    # The seller hears about it through the outbox, once per status change.
    from marketplace.outbox.tables import OutboxMessage

    principal = (await Seller.select(Seller.principal).where(Seller.id == seller["id"]).first() or {})["principal"]
    messages = await OutboxMessage.select().where(OutboxMessage.principal == principal).output(load_json=True)
    assert [m["payload"]["status"] for m in messages] == ["active"]

    # The return URL then confirms with a fresh read from Stripe and lands on the seller page.
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        back = await browser.get(return_url)
    assert back.status_code == 303
    target = urlsplit(back.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == stack.settings.seller_return_url
    assert parse_qs(target.query) == {"onboarding": ["returned"], "status": ["active"]}
    assert (await ensure_can_accept_checkout(uuid.UUID(seller["id"])))["stripe_account_id"] == account_id


async def test_incomplete_onboarding_is_restricted_with_requirements_shown(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    await create_account(stack, auth)
    return_url = await submit_onboarding(stack, await onboarding_link(stack, auth), "incomplete")
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        back = await browser.get(return_url)
    assert parse_qs(urlsplit(back.headers["location"]).query)["status"] == ["restricted"]
    state = (await me(stack, auth))["connected_account"]
    assert state["status"] == "restricted"
    assert state["charges_enabled"] is False
    assert state["requirements"]["currently_due"], state
    assert state["requirements"]["disabled_reason"]
    with pytest.raises(SellerCannotSell) as refused:
        await ensure_can_accept_checkout(uuid.UUID(seller["id"]))
    assert refused.value.extra["seller_status"] == "restricted"


async def test_used_link_goes_to_refresh_which_mints_a_working_link(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    await create_account(stack, auth)
    link = await onboarding_link(stack, auth)
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        await open_onboarding_form(browser, link)  # the link is now used
        stale = await browser.get(link)
        assert stale.status_code == 303
        refresh_url = stale.headers["location"]
        assert refresh_url.startswith(f"{stack.api_url}/sellers/onboarding/")
        assert refresh_url.endswith("/refresh")
        refreshed = await browser.get(refresh_url)
        assert refreshed.status_code == 303
        fresh_link = refreshed.headers["location"]
        assert fresh_link != link
        assert fresh_link.startswith(stack.sandbox_url)
        await open_onboarding_form(browser, fresh_link)  # a working form, not another redirect


async def test_unknown_onboarding_state_redirects_to_the_seller_page(stack: Stack) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        response = await browser.get(f"{stack.api_url}/sellers/onboarding/{uuid.uuid4()}/refresh")
    assert response.status_code == 303
    assert response.headers["location"].startswith(stack.settings.seller_return_url)
    assert "onboarding=link_expired" in response.headers["location"]


async def test_deauthorization_disconnects_and_refuses_checkout_and_links(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")

    await stack.control.deauthorize(account_id)
    state = (
        await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "disconnected")
    )["connected_account"]
    assert state["disconnected_at"] is not None
    assert state["charges_enabled"] is False

    with pytest.raises(SellerCannotSell) as refused:
        await ensure_can_accept_checkout(uuid.UUID(seller["id"]))
    assert "disconnected" in str(refused.value)
    link = await stack.api.post("/sellers/me/onboarding-link", headers=auth)
    assert link.status_code == 409
    assert link.json()["type"].endswith("account-disconnected")
    # An account.updated processed after the deauthorization cannot bring the account back.
    resync = await stack.api.post(f"/admin/sellers/{seller['id']}/sync", headers=await admin_auth(stack))
    assert resync.status_code == 200
    assert resync.json()["status"] == "disconnected"


async def test_duplicated_and_reordered_account_updates_converge_on_the_newest_state(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    await stack.control.set_delivery_faults(duplicate=6, reorder=6)
    try:
        await stack.control.complete_onboarding(account_id)
        await stack.control.restrict_onboarding(account_id, currently_due=["external_account"], details_submitted=True)
        await stack.control.complete_onboarding(account_id)
        await stack.control.wait_for_deliveries(account=account_id, timeout=20)
    finally:
        await stack.control.set_delivery_faults(duplicate=0, reorder=0)

    async def processed_updates() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await StripeEvent.select(StripeEvent.id, StripeEvent.status).where(
            (StripeEvent.account == account_id) & (StripeEvent.type == "account.updated")
        )
        return rows

    updates = await stack.eventually(
        processed_updates, lambda rows: len(rows) >= 3 and all(r["status"] == "processed" for r in rows)
    )
    assert len({r["id"] for r in updates}) == len(updates)  # duplicates were stored once
    deliveries = await stack.control.deliveries(account=account_id, type="account.updated")
    assert len(deliveries) > len(updates)  # the sandbox really did deliver duplicates
    state = (await me(stack, auth))["connected_account"]
    assert state["status"] == "active"
    assert state["requirements"]["currently_due"] == []
    stripe_side = await stack.stripe.v1.accounts.retrieve_async(account_id)
    assert stripe_side.charges_enabled is True
    row = await ConnectedAccount.select().where(ConnectedAccount.stripe_account_id == account_id).first()
    assert row is not None
    assert row["status"] == "active"


async def test_concurrent_account_creation_makes_one_stripe_account(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    responses = await asyncio.gather(*(stack.api.post("/sellers/me/stripe-account", headers=auth) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    ids = {r.json()["account_id"] for r in responses}
    assert len(ids) == 1
    accounts = await stack.stripe.v1.accounts.list_async(params={"limit": 100})
    mine = [a for a in accounts.data if a.metadata and a.metadata.to_dict().get("seller_id") == seller["id"]]
    assert [a.id for a in mine] == list(ids)


async def test_dashboard_link_for_express_and_409_for_full_dashboard(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    early = await stack.api.post("/sellers/me/dashboard-link", headers=auth)
    assert early.status_code == 409  # Stripe only logs in sellers who finished onboarding
    assert early.json()["type"].endswith("onboarding-incomplete")
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["details_submitted"])
    link = await stack.api.post("/sellers/me/dashboard-link", headers=auth)
    assert link.status_code == 201, link.text
    assert link.json()["url"].startswith(stack.sandbox_url)

    # A seller-managed (full dashboard) account gets a clear 409 problem instead.
    auth_full, seller_full = await sign_up(stack)
    await Seller.update({Seller.account_profile: "seller_managed"}).where(Seller.id == seller_full["id"])
    account = await create_account(stack, auth_full)
    assert account["dashboard"] == "full"
    refused = await stack.api.post("/sellers/me/dashboard-link", headers=auth_full)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("dashboard-link-unavailable")


async def test_links_before_account_creation_are_a_409_problem(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    response = await stack.api.post("/sellers/me/onboarding-link", headers=auth)
    assert response.status_code == 409
    assert response.json()["type"].endswith("no-connected-account")
    assert (await me(stack, auth))["connected_account"] is None


async def test_seller_routes_need_a_seller_token(stack: Stack) -> None:
    buyer = (await stack.api.post("/buyers", json={"display_name": "B", "email": "b@example.com"})).json()
    response = await stack.api.post("/sellers/me/stripe-account", headers={"Authorization": f"Bearer {buyer['token']}"})
    assert response.status_code == 403
    assert (await stack.api.post("/sellers/me/stripe-account")).status_code == 401


async def admin_auth(stack: Stack) -> dict[str, str]:
    from marketplace.auth.service import create_principal
    from marketplace.auth.tables import Role

    _, token = await create_principal(Role.admin, "ops")
    return {"Authorization": f"Bearer {token}"}


async def test_admin_lists_sellers_by_status_and_forces_a_resync(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    admin = await admin_auth(stack)
    listed = await stack.api.get("/admin/sellers", params={"status": "onboarding", "limit": 200}, headers=admin)
    assert listed.status_code == 200
    assert seller["id"] in {s["seller_id"] for s in listed.json()}
    assert all(s["connected_account"]["status"] == "onboarding" for s in listed.json())

    # Stripe changes while our webhook endpoint is unreachable for this account: drop its deliveries.
    await stack.control.set_delivery_faults(drop=10)
    try:
        await stack.control.complete_onboarding(account_id)
    finally:
        await stack.control.set_delivery_faults(drop=0)
    synced = await stack.api.post(f"/admin/sellers/{seller['id']}/sync", headers=admin)
    assert synced.status_code == 200
    assert synced.json()["status"] == "active"
    assert synced.json()["synced_from"] == "admin"
    assert (await stack.api.get("/admin/sellers", headers=auth)).status_code == 403
