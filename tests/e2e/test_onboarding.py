"""Seller onboarding end to end: API → sandbox (real HTTP, hosted form) → Connect webhook → worker.

Every step goes through the same doors a seller and Stripe use: the bearer-token API, the hosted
onboarding page submitted as a browser would, signed webhook deliveries to the Connect endpoint, and
the arq worker processing the stored events.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connect.accounts import account_create_params
from connect.idempotency import account_key
from marketplace.outbox.tables import OutboxMessage
from marketplace.sellers.eligibility import seller_may_be_shown, sellers_shown_to_buyers, selling_terms
from marketplace.sellers.errors import SellerCannotSell
from marketplace.sellers.tables import AccountLinkRequest, ConnectedAccount, Seller
from tests.e2e.conftest import Stack
from tests.support.factories import SellerSignupFactory, payload
from webhooks.tables import StripeEvent


async def sign_up(
    stack: Stack, api: httpx.AsyncClient | None = None, **fields: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    response = await (api or stack.api).post("/sellers", json={**payload(SellerSignupFactory), **fields})
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


def our_create_params(seller: dict[str, Any]) -> Any:
    """The `accounts.create` parameters our code sends for this (platform-managed) seller."""
    return account_create_params(
        seller_id=seller["id"],
        email=seller["email"],
        country=seller["country"],
        business_type=seller["business_type"],
        profile="platform_managed",
    )


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


async def refresh_url_of(link: str) -> str:
    """Where a used (or expired) hosted link sends the browser: our refresh URL for that link."""
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        stale = await browser.get(link)
    assert stale.status_code == 303, stale.text
    location: str = stale.headers["location"]
    assert location.endswith("/refresh"), location
    return location


async def browse(url: str) -> httpx.Response:
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        return await browser.get(url)


def seller_page_outcome(stack: Stack, response: httpx.Response) -> dict[str, list[str]]:
    """The query of a 303 to the platform's seller page (fails if the browser is sent anywhere else)."""
    assert response.status_code == 303, response.text
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == stack.settings.seller_return_url, target
    return parse_qs(target.query)


async def messages_to(seller: dict[str, Any]) -> list[dict[str, Any]]:
    """The outbox messages addressed to the seller, oldest first."""
    principal = (await Seller.select(Seller.principal).where(Seller.id == seller["id"]).first() or {})["principal"]
    rows: list[dict[str, Any]] = (
        await OutboxMessage.select()
        .where(OutboxMessage.principal == principal)
        .order_by(OutboxMessage.created_at)
        .output(load_json=True)
    )
    return rows


async def stripe_accounts_of(stack: Stack, seller_id: str) -> list[str]:
    """The ids of the connected accounts Stripe (the sandbox) holds for the seller, by metadata."""
    accounts = await stack.stripe.v1.accounts.list_async(params={"limit": 100})
    return [
        a.id
        async for a in accounts.auto_paging_iter()
        if a.metadata and a.metadata.to_dict().get("seller_id") == seller_id
    ]


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
    terms = await selling_terms(uuid.UUID(seller["id"]))
    assert (terms.stripe_account_id, terms.charge_type) == (account_id, "destination")
    # The return re-read is recorded as "return": the URL's state (a credential) is never exposed.
    state_id = urlsplit(return_url).path.split("/")[-2]
    after_return = await me(stack, auth)
    assert after_return["connected_account"]["synced_from"] == "return"
    listed = await stack.api.get("/admin/sellers", params={"limit": 200}, headers=await admin_auth(stack))
    assert state_id not in str(after_return) + listed.text


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
        await selling_terms(uuid.UUID(seller["id"]))
    assert refused.value.extra["seller_status"] == "restricted"


async def test_used_link_goes_to_refresh_which_mints_a_working_link_once(stack: Stack) -> None:
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

        # The refresh URL is single use: whoever holds it cannot mint a second link with it.
        again = await browser.get(refresh_url)
    assert seller_page_outcome(stack, again) == {"onboarding": ["link_expired"]}

    # A stale tab of the new link still works: it has a refresh URL of its own, good once too.
    next_refresh = await refresh_url_of(fresh_link)
    assert next_refresh != refresh_url
    third = await browse(next_refresh)
    assert third.status_code == 303
    assert third.headers["location"].startswith(stack.sandbox_url)


async def test_expired_link_goes_to_refresh_which_mints_a_new_link(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    await create_account(stack, auth)
    link = await onboarding_link(stack, auth)
    await stack.control.expire_account_link(link)  # never opened: its minutes simply ran out
    refreshed = await browse(await refresh_url_of(link))
    assert refreshed.status_code == 303
    fresh_link = refreshed.headers["location"]
    assert fresh_link.startswith(stack.sandbox_url)
    assert fresh_link != link
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        await open_onboarding_form(browser, fresh_link)


async def test_refreshes_never_outlive_the_lifetime_of_the_first_link(stack: Stack) -> None:
    """A chain of refreshes keeps the deadline granted at the seller's authenticated request."""
    auth, _ = await sign_up(stack)
    await create_account(stack, auth)
    link = await onboarding_link(stack, auth)
    await stack.control.expire_account_link(link)
    refresh_url = await refresh_url_of(link)
    state = uuid.UUID(urlsplit(refresh_url).path.split("/")[-2])
    # The seller asked for this link almost 24 hours ago: its state has a minute left.
    deadline = datetime.now(UTC) + timedelta(minutes=1)
    await AccountLinkRequest.update({AccountLinkRequest.valid_until: deadline}).where(AccountLinkRequest.id == state)

    refreshed = await browse(refresh_url)  # within the lifetime: a new link
    assert refreshed.status_code == 303
    fresh_link = refreshed.headers["location"]
    assert fresh_link.startswith(stack.sandbox_url)
    await stack.control.expire_account_link(fresh_link)
    next_refresh = await refresh_url_of(fresh_link)
    next_state = uuid.UUID(urlsplit(next_refresh).path.split("/")[-2])
    [inherited] = await AccountLinkRequest.select(AccountLinkRequest.valid_until).where(
        AccountLinkRequest.id == next_state
    )
    assert inherited["valid_until"] == deadline  # the new state inherited the deadline, not a new day

    # The deadline passes (moved, rather than waited for: a test never races the clock).
    passed = datetime.now(UTC) - timedelta(seconds=1)
    await AccountLinkRequest.update({AccountLinkRequest.valid_until: passed}).where(AccountLinkRequest.id == next_state)
    late = await browse(next_refresh)  # the new state's deadline has passed
    assert seller_page_outcome(stack, late) == {"onboarding": ["link_expired"]}
    # The seller, logged in, simply asks for a new link.
    assert (await onboarding_link(stack, auth)).startswith(stack.sandbox_url)


async def test_browser_routes_answer_stripe_failures_with_the_seller_page(stack: Stack) -> None:
    auth, _ = await sign_up(stack)
    await create_account(stack, auth)
    link = await onboarding_link(stack, auth)
    return_url = await submit_onboarding(stack, link, "incomplete")
    refresh_url = return_url.removesuffix("/return") + "/refresh"

    await stack.quiesce()
    await stack.control.fail_next(3, status=500)  # the SDK's first try and both retries fail
    try:
        back = await browse(return_url)
    finally:
        await stack.control.clear_faults()
    assert seller_page_outcome(stack, back) == {"onboarding": ["error"]}

    await stack.quiesce()
    await stack.control.fail_next(3, status=500)
    try:
        failed = await browse(refresh_url)
    finally:
        await stack.control.clear_faults()
    assert seller_page_outcome(stack, failed) == {"onboarding": ["error"]}
    # Stripe failed, so the state was not used up: the seller's retry works.
    retried = await browse(refresh_url)
    assert retried.status_code == 303
    assert retried.headers["location"].startswith(stack.sandbox_url)


async def test_unknown_onboarding_state_redirects_to_the_seller_page(stack: Stack) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        response = await browser.get(f"{stack.api_url}/sellers/onboarding/{uuid.uuid4()}/refresh")
    assert response.status_code == 303
    assert response.headers["location"].startswith(stack.settings.seller_return_url)
    assert "onboarding=link_expired" in response.headers["location"]


async def test_deauthorization_disconnects_and_refuses_checkout_and_links(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    link = await onboarding_link(stack, auth)  # a tab still open when the seller leaves the platform
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")

    await stack.control.deauthorize(account_id)
    state = (
        await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "disconnected")
    )["connected_account"]
    assert state["disconnected_at"] is not None
    assert state["charges_enabled"] is False

    with pytest.raises(SellerCannotSell) as refused:
        await selling_terms(uuid.UUID(seller["id"]))
    assert "disconnected" in str(refused.value)
    link_refused = await stack.api.post("/sellers/me/onboarding-link", headers=auth)
    assert link_refused.status_code == 409
    assert link_refused.json()["type"].endswith("account-disconnected")
    # An account.updated processed after the deauthorization cannot bring the account back.
    resync = await stack.api.post(f"/admin/sellers/{seller['id']}/sync", headers=await admin_auth(stack))
    assert resync.status_code == 200
    assert resync.json()["status"] == "disconnected"
    # The browser routes of the old link say so on the seller page (no JSON problem for a browser).
    await stack.control.expire_account_link(link)
    refresh_url = await refresh_url_of(link)
    assert seller_page_outcome(stack, await browse(refresh_url)) == {"onboarding": ["disconnected"]}
    return_url = refresh_url.removesuffix("/refresh") + "/return"
    assert seller_page_outcome(stack, await browse(return_url)) == {"onboarding": ["disconnected"]}


async def test_a_failed_read_never_disconnects_only_the_deauthorization_event_does(stack: Stack) -> None:
    """A 403 while reading the account (as a wrong or rotated key would also answer) is reported, not final."""
    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")

    await stack.control.set_delivery_faults(delay=3.0)  # the deauthorization event arrives late
    try:
        await stack.control.deauthorize(account_id)
    finally:
        await stack.control.set_delivery_faults(delay=0.0)
    resync = await stack.api.post(f"/admin/sellers/{seller['id']}/sync", headers=await admin_auth(stack))
    assert resync.status_code == 502, resync.text  # Stripe refused the read: reported as a problem
    assert resync.headers["content-type"].startswith("application/problem+json")
    pending = await stack.control.deliveries(account=account_id, type="account.application.deauthorized")
    assert [d["attempts"] for d in pending] == [[]]  # the read really came before the event
    assert (await me(stack, auth))["connected_account"]["status"] == "active"

    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "disconnected")


async def test_a_disconnected_seller_connects_a_new_account(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    first = (await create_account(stack, auth))["account_id"]
    await stack.control.deauthorize(first)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "disconnected")

    again = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    assert again.status_code == 201, again.text
    second = again.json()
    assert second["account_id"] != first
    assert second["status"] == "onboarding"
    assert second["disconnected_at"] is None
    same = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    assert (same.status_code, same.json()["account_id"]) == (200, second["account_id"])
    assert (await me(stack, auth))["connected_account"]["account_id"] == second["account_id"]
    # The new account's key is derived from the new row: the same request under it is the same account.
    seller_id = uuid.UUID(seller["id"])
    params = our_create_params(seller)
    replayed = await stack.stripe.v1.accounts.create_async(
        params=params, options={"idempotency_key": f"account:{seller_id}:2"}
    )
    assert replayed.id == second["account_id"]

    # Onboarding works for the new account, and the admin list shows the seller once, as it is now.
    await submit_onboarding(stack, await onboarding_link(stack, auth), "complete")
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")
    listed = await stack.api.get("/admin/sellers", params={"limit": 200}, headers=await admin_auth(stack))
    mine = [s for s in listed.json() if s["seller_id"] == seller["id"]]
    assert [s["connected_account"]["account_id"] for s in mine] == [second["account_id"]]
    assert await seller_may_be_shown(seller_id)


async def test_reordered_and_duplicated_account_updates_end_on_the_newest_state(stack: Stack) -> None:
    """An older account.updated (twice) arrives after the newer one was processed: the newest state stays."""
    auth, _ = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    # The restriction's account.updated is delivered twice, both copies held back for a few seconds.
    await stack.control.set_delivery_faults(duplicate=1, delay=4.0)
    try:
        await stack.control.restrict_onboarding(account_id, currently_due=["external_account"], details_submitted=True)
    finally:
        await stack.control.set_delivery_faults(duplicate=0, delay=0.0)
    older = await stack.control.deliveries(account=account_id, type="account.updated")
    assert len(older) == 2  # the delivery and its duplicate
    (older_event,) = {d["event"] for d in older}

    await stack.control.complete_onboarding(account_id)  # newer; delivered at once
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")
    held = await stack.control.deliveries(event=older_event)
    assert all(not d["attempts"] for d in held), "the older event must arrive after the newer was processed"

    async def older_processed() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await StripeEvent.select(StripeEvent.id, StripeEvent.status).where(
            StripeEvent.id == older_event
        )
        return rows

    await stack.control.wait_for_deliveries(account=account_id)
    stored = await stack.eventually(older_processed, lambda rows: [r["status"] for r in rows] == ["processed"])
    assert len(stored) == 1  # the duplicate was stored once
    assert all(d["status"] == "succeeded" for d in await stack.control.deliveries(event=older_event))
    state = (await me(stack, auth))["connected_account"]
    assert state["synced_from"] == f"event:{older_event}"  # the late event was applied: it re-read Stripe
    assert state["status"] == "active"
    assert state["charges_enabled"] is True
    assert state["requirements"]["currently_due"] == []


async def test_concurrent_account_creation_makes_one_stripe_account(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    responses = await asyncio.gather(*(stack.api.post("/sellers/me/stripe-account", headers=auth) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    ids = {r.json()["account_id"] for r in responses}
    assert len(ids) == 1
    assert await stripe_accounts_of(stack, seller["id"]) == list(ids)


async def test_a_crash_after_stripe_answered_is_healed_by_the_same_key(stack: Stack) -> None:
    """Stripe made the account but our process died before writing it: the next call gets that account."""
    auth, seller = await sign_up(stack)
    params = our_create_params(seller)
    # Exactly the request our process sends, answered by Stripe; then the process died.
    made = await stack.stripe.v1.accounts.create_async(
        params=params, options={"idempotency_key": account_key(uuid.UUID(seller["id"]))}
    )
    response = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["account_id"] == made.id
    assert await stripe_accounts_of(stack, seller["id"]) == [made.id]


async def test_an_event_for_an_account_we_never_recorded_attaches_it_to_its_seller(stack: Stack) -> None:
    """Our process died after Stripe made the account: the account's own events record and sync it."""
    auth, seller = await sign_up(stack)
    row = await stripe_unreachable_during_creation(stack, auth, seller)  # our row, still without an account
    made = await stack.stripe.v1.accounts.create_async(  # the retry Stripe answered, just before the crash
        params=row["create_params"], options={"idempotency_key": account_key(uuid.UUID(seller["id"]))}
    )
    await stack.control.complete_onboarding(made.id)  # account.updated reaches the Connect endpoint
    profile = await stack.eventually(
        lambda: me(stack, auth), lambda p: (p.get("connected_account") or {}).get("status") == "active"
    )
    assert profile["connected_account"]["account_id"] == made.id
    assert await stripe_accounts_of(stack, seller["id"]) == [made.id]
    again = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    assert again.status_code == 200, again.text
    assert again.json()["account_id"] == made.id


async def stripe_unreachable_during_creation(stack: Stack, auth: dict[str, str], seller: dict[str, Any]) -> Any:
    """POST /sellers/me/stripe-account while Stripe does not answer; returns the row it left behind."""
    await stack.quiesce()
    await stack.control.fail_next(3, status=500)  # the SDK's first try and both retries fail
    try:
        failed = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    finally:
        await stack.control.clear_faults()
    assert failed.status_code == 503, failed.text
    row = await ConnectedAccount.select().where(ConnectedAccount.seller == seller["id"]).output(load_json=True).first()
    assert row is not None
    assert row["stripe_account_id"] is None
    return row


async def test_a_retry_sends_what_the_row_stored_even_after_the_platform_config_changed(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    row = await stripe_unreachable_during_creation(stack, auth, seller)
    # Meanwhile an attempt had reached Stripe (as in the crash above) with the request the row stored.
    made = await stack.stripe.v1.accounts.create_async(
        params=row["create_params"], options={"idempotency_key": account_key(uuid.UUID(seller["id"]))}
    )

    # The platform switched its default profile before the seller retried.
    async with stack.api_with(default_account_profile="seller_managed") as changed_api:
        retried = await changed_api.post("/sellers/me/stripe-account", headers=auth)
    assert retried.status_code == 201, retried.text
    assert retried.json()["account_id"] == made.id
    assert retried.json()["profile"] == "platform_managed"
    assert retried.json()["dashboard"] == "express"
    assert await stripe_accounts_of(stack, seller["id"]) == [made.id]


async def test_a_retry_after_the_key_expired_adopts_the_account_stripe_already_made(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    row = await stripe_unreachable_during_creation(stack, auth, seller)
    # An attempt a day ago made an account at Stripe and died; Stripe has since forgotten its key (keys
    # live at least 24 h), which a key Stripe never saw stands for here; the row is a day old.
    made = await stack.stripe.v1.accounts.create_async(
        params=row["create_params"], options={"idempotency_key": f"forgotten-{uuid.uuid4()}"}
    )
    await ConnectedAccount.update({ConnectedAccount.created_at: datetime.now(UTC) - timedelta(hours=24)}).where(
        ConnectedAccount.id == row["id"]
    )

    retried = await stack.api.post("/sellers/me/stripe-account", headers=auth)
    assert retried.status_code == 201, retried.text
    assert retried.json()["account_id"] == made.id
    assert await stripe_accounts_of(stack, seller["id"]) == [made.id]  # no second account


async def test_the_seller_is_told_of_restriction_new_requirements_and_disconnection(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]

    async def settled() -> None:
        """Every event of the account so far delivered and processed (each step reads the account)."""

        async def statuses() -> list[str]:
            rows = await StripeEvent.select(StripeEvent.status).where(StripeEvent.account == account_id)
            return [r["status"] for r in rows]

        await stack.control.wait_for_deliveries(account=account_id)
        await stack.eventually(statuses, lambda found: bool(found) and set(found) == {"processed"})

    await stack.control.complete_onboarding(account_id)
    await settled()
    await stack.control.restrict_onboarding(account_id, currently_due=["external_account"], details_submitted=True)
    await settled()
    await stack.control.restrict_onboarding(
        account_id, currently_due=["external_account", "individual.id_number"], details_submitted=True
    )
    await settled()
    await stack.control.deauthorize(account_id)
    await settled()

    messages = await messages_to(seller)
    summary = [(m["kind"], m["payload"]["status"]) for m in messages]
    assert summary == [
        ("seller.account_status_changed", "active"),
        ("seller.account_status_changed", "restricted"),
        ("seller.account_requirements_changed", "restricted"),
        ("seller.account_status_changed", "disconnected"),
    ]
    assert messages[1]["payload"]["requirements"]["currently_due"] == ["external_account"]
    assert sorted(messages[2]["payload"]["requirements"]["currently_due"]) == [
        "external_account",
        "individual.id_number",
    ]
    assert all(m["payload"]["account_id"] == account_id for m in messages)


async def test_a_seller_picks_the_profile_at_sign_up_when_the_platform_allows_it(stack: Stack) -> None:
    async with stack.api_with(allow_seller_account_profile=True) as choosing_api:
        auth, seller = await sign_up(stack, choosing_api, account_profile="seller_managed")
        assert seller["account_profile"] == "seller_managed"
        account = await create_account(stack, auth)
        assert account["profile"] == "seller_managed"
        assert account["dashboard"] == "full"
    # Where the platform does not allow it, the choice is ignored and the default applies.
    auth_default, seller_default = await sign_up(stack, account_profile="seller_managed")
    assert seller_default["account_profile"] is None
    account_default = await create_account(stack, auth_default)
    assert account_default["profile"] == "platform_managed"
    assert account_default["dashboard"] == "express"


async def test_only_sellers_who_can_take_payments_are_shown_and_can_check_out(stack: Stack) -> None:
    """The reusable rules for checkout and listings, against rows made through the real flows."""
    sellers: dict[str, uuid.UUID] = {}
    _, seller = await sign_up(stack)
    sellers["none"] = uuid.UUID(seller["id"])

    auth, seller = await sign_up(stack)
    await create_account(stack, auth)
    sellers["onboarding"] = uuid.UUID(seller["id"])

    auth, seller = await sign_up(stack)
    await create_account(stack, auth)
    back = await browse(await submit_onboarding(stack, await onboarding_link(stack, auth), "incomplete"))
    assert seller_page_outcome(stack, back)["status"] == ["restricted"]
    sellers["restricted"] = uuid.UUID(seller["id"])

    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")
    sellers["active"] = uuid.UUID(seller["id"])

    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "active")
    await stack.control.deauthorize(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["status"] == "disconnected")
    sellers["disconnected"] = uuid.UUID(seller["id"])

    shown = {r["id"] for r in await Seller.select(Seller.id).where(Seller.id.is_in(sellers_shown_to_buyers()))}
    assert shown & set(sellers.values()) == {sellers["active"]}
    for status, seller_id in sellers.items():
        assert await seller_may_be_shown(seller_id) is (status == "active"), status
        if status == "active":
            assert (await selling_terms(seller_id)).charge_type == "destination"
            continue
        with pytest.raises(SellerCannotSell) as refused:
            await selling_terms(seller_id)
        assert refused.value.status == 409
        assert refused.value.slug == "seller-cannot-sell"
        assert refused.value.extra["seller_status"] == status
        assert str(refused.value)


async def test_dashboard_link_for_express_and_409_for_full_dashboard(stack: Stack) -> None:
    auth, seller = await sign_up(stack)
    account_id = (await create_account(stack, auth))["account_id"]
    early = await stack.api.post("/sellers/me/dashboard-link", headers=auth)
    assert early.status_code == 409  # Stripe only logs in sellers who finished onboarding
    assert early.json()["type"].endswith("onboarding-incomplete")
    await stack.control.complete_onboarding(account_id)
    await stack.eventually(lambda: me(stack, auth), lambda p: p["connected_account"]["details_submitted"])
    link = await stack.api.post("/sellers/me/dashboard-link", headers=auth)
    assert link.status_code == 201, link.text
    assert link.json()["url"].startswith(stack.sandbox_url)
    # The login link's request row is no onboarding state: its id opens neither browser route.
    login_request = (
        await AccountLinkRequest.select(AccountLinkRequest.id)
        .where((AccountLinkRequest.seller == seller["id"]) & (AccountLinkRequest.kind == "login"))
        .first()
    )
    assert login_request is not None
    for action in ("refresh", "return"):
        answer = await browse(f"{stack.api_url}/sellers/onboarding/{login_request['id']}/{action}")
        assert seller_page_outcome(stack, answer) == {"onboarding": ["link_expired"]}, action

    # A seller-managed (full dashboard) account gets a clear 409 problem instead.
    async with stack.api_with(allow_seller_account_profile=True) as choosing_api:
        auth_full, _ = await sign_up(stack, choosing_api, account_profile="seller_managed")
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
