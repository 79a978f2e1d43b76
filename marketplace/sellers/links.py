"""Hosted links for a seller: onboarding (and update) links, their refresh/return, Express dashboard links.

Each link is a Stripe POST in the one shape (`connect.calls.post`): an `account_link_requests` row is
written first (its id is the idempotency key and, for onboarding links, the state in the refresh and
return URLs), Stripe is called with nothing held, and the link's expiry is recorded afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from connect import accounts as stripe_accounts
from connect import calls
from connect.idempotency import account_link_key, login_link_key
from marketplace.lib.settings import Settings
from marketplace.lib.stripe_errors import problem_from_stripe
from marketplace.sellers.accounts import AccountRow, account_for_seller
from marketplace.sellers.errors import (
    AccountDisconnected,
    AccountNotCreated,
    DashboardLinkUnavailable,
    OnboardingIncomplete,
)
from marketplace.sellers.sync import NotOurAccount, sync_connected_account
from marketplace.sellers.tables import AccountLinkRequest, ConnectedAccount
from marketplace.sellers.urls import onboarding_refresh_url, onboarding_return_url

# How long the refresh/return URLs handed to Stripe keep working (the Stripe link itself lives minutes),
# counted from the seller's authenticated request for a link. The state in those URLs is a credential
# (it mints onboarding links for the seller's account): a refresh consumes it and the state it mints
# inherits this deadline, so a leaked URL cannot be chained into lasting access. It is never logged
# (see observability); a stale tab past the deadline lands on the seller page instead.
LINK_STATE_TTL = timedelta(hours=24)
ONBOARDING_LINK_KINDS = ("account_onboarding", "account_update")


def _connected_or_raise(account: AccountRow | None) -> AccountRow:
    if account is None or not account.stripe_account_id:
        raise AccountNotCreated("Create the connected account first: POST /sellers/me/stripe-account.")
    if account.disconnected_at is not None:
        raise AccountDisconnected(
            "This connected account was disconnected from the platform; "
            "connect a new one with POST /sellers/me/stripe-account."
        )
    return account


async def mint_onboarding_link(
    client: stripe.StripeClient, settings: Settings, seller_id: uuid.UUID, *, valid_until: datetime | None = None
) -> tuple[str, datetime]:
    """A fresh hosted onboarding (or, once submitted, update) link; returns (url, expires_at).

    Its refresh/return URLs carry a new state that works until `valid_until` (by default
    `LINK_STATE_TTL` from now: the lifetime a seller's authenticated request grants).
    """
    account = _connected_or_raise(await account_for_seller(seller_id))
    assert account.stripe_account_id is not None
    link_type: stripe_accounts.LinkType = "account_update" if account.details_submitted else "account_onboarding"
    if account.details_submitted and account.dashboard != "none":
        # Stripe only offers account_update links for accounts without a Stripe dashboard.
        link_type = "account_onboarding"

    async def intent() -> tuple[uuid.UUID, str]:
        request_id = uuid.uuid4()
        now = datetime.now(UTC)
        await AccountLinkRequest.insert(
            AccountLinkRequest(
                id=request_id,
                seller=seller_id,
                account=account.id,
                kind=link_type,
                created_at=now,
                valid_until=valid_until or now + LINK_STATE_TTL,
            )
        )
        return request_id, account_link_key(request_id)

    async def call(request_id: uuid.UUID, key: str) -> tuple[str, int]:
        assert account.stripe_account_id is not None
        try:
            return await stripe_accounts.create_account_link(
                client,
                account_id=account.stripe_account_id,
                refresh_url=onboarding_refresh_url(settings.public_base_url, request_id),
                return_url=onboarding_return_url(settings.public_base_url, request_id),
                link_type=link_type,
                idempotency_key=key,
            )
        except stripe.StripeError as exc:
            raise problem_from_stripe(exc, "create an onboarding link") from exc

    async def record(request_id: uuid.UUID, answer: tuple[str, int]) -> tuple[str, datetime]:
        url, expires_at = answer
        expires = datetime.fromtimestamp(expires_at, UTC)
        await AccountLinkRequest.update({AccountLinkRequest.expires_at: expires}).where(
            AccountLinkRequest.id == request_id
        )
        return url, expires

    return await calls.post("create an onboarding link", intent=intent, call=call, record=record)


def _usable_until(row: Mapping[str, Any]) -> datetime:
    valid_until: datetime | None = row["valid_until"]
    return valid_until or row["created_at"] + LINK_STATE_TTL


def _usable(row: Mapping[str, Any] | None, now: datetime) -> bool:
    return row is not None and row["kind"] in ONBOARDING_LINK_KINDS and _usable_until(row) > now


async def link_request(state: uuid.UUID) -> dict[str, Any] | None:
    """The onboarding link request a return URL names, if it is one and still within its lifetime.

    A return does not consume the state (it only reads the account and reports its status): a seller
    who finished in one tab still lands on the right page although another tab refreshed meanwhile.
    """
    row = await AccountLinkRequest.select().where(AccountLinkRequest.id == state).first()
    return dict(row) if row is not None and _usable(row, datetime.now(UTC)) else None


async def refresh_onboarding_link(
    client: stripe.StripeClient, settings: Settings, state: uuid.UUID
) -> tuple[str, datetime] | None:
    """Consume a refresh URL's state and mint the next link, whose state keeps the same deadline.

    None when the state is unknown, not an onboarding link's, already used, past its lifetime, or
    for an account that is no longer the seller's current one. The state is consumed by a guarded
    update before Stripe is called (so two refreshes of one state mint one link); if minting fails the
    consumption is given back (the seller may try again) and the error is raised.
    """
    now = datetime.now(UTC)
    row = await AccountLinkRequest.select().where(AccountLinkRequest.id == state).first()
    if row is None or not _usable(row, now) or row["used_at"] is not None:
        return None
    current = await account_for_seller(row["seller"])
    if current is None or current.id != row["account"]:
        return None
    consumed = (
        await AccountLinkRequest.update({AccountLinkRequest.used_at: now})
        .where((AccountLinkRequest.id == state) & AccountLinkRequest.used_at.is_null())
        .returning(AccountLinkRequest.id)
    )
    if not consumed:
        return None  # another refresh of this state won
    try:
        return await mint_onboarding_link(client, settings, row["seller"], valid_until=_usable_until(row))
    except BaseException:
        await AccountLinkRequest.update({AccountLinkRequest.used_at: None}).where(
            (AccountLinkRequest.id == state) & (AccountLinkRequest.used_at == now)
        )
        raise


async def return_from_onboarding(client: stripe.StripeClient, state: uuid.UUID) -> str:
    """The seller's browser came back from hosted onboarding: re-read the account; returns its status.

    "link_expired" for a state that is not (or no longer) valid, "no_account" when the link's account
    is gone; a disconnected account answers "disconnected" without a read. Stripe errors are raised.
    """
    request = await link_request(state)
    if request is None:
        return "link_expired"
    row = await ConnectedAccount.select().where(ConnectedAccount.id == request["account"]).first()
    if row is None or not row["stripe_account_id"]:
        return "no_account"
    if row["disconnected_at"] is not None:
        return "disconnected"
    # Arriving here proves nothing: the status comes from Stripe's account, read now.
    await record_onboarding_return(row["id"])
    try:
        result = await sync_connected_account(client, row["stripe_account_id"], source="return")
    except NotOurAccount:
        return "no_account"
    return result.status


async def record_onboarding_return(account_row_id: uuid.UUID) -> None:
    """Remember that the seller came back from hosted onboarding (first time only)."""
    await ConnectedAccount.update({ConnectedAccount.onboarding_returned_at: datetime.now(UTC)}).where(
        (ConnectedAccount.id == account_row_id) & ConnectedAccount.onboarding_returned_at.is_null()
    )


async def mint_dashboard_link(client: stripe.StripeClient, seller_id: uuid.UUID) -> str:
    account = await account_for_seller(seller_id)
    if account is None or not account.stripe_account_id:
        raise AccountNotCreated("Create the connected account first: POST /sellers/me/stripe-account.")
    if account.dashboard != "express":
        raise DashboardLinkUnavailable(
            "Only platform-managed (Express dashboard) accounts get a dashboard login link; "
            "this seller signs in at dashboard.stripe.com."
        )
    if account.disconnected_at is not None:
        raise AccountDisconnected("This connected account was disconnected from the platform.")
    if not account.details_submitted:
        raise OnboardingIncomplete(
            "Finish onboarding first: Stripe only opens the Express dashboard for accounts that completed it."
        )
    stripe_account_id = account.stripe_account_id

    async def intent() -> tuple[uuid.UUID, str]:
        request_id = uuid.uuid4()
        await AccountLinkRequest.insert(
            AccountLinkRequest(
                id=request_id, seller=seller_id, account=account.id, kind="login", created_at=datetime.now(UTC)
            )
        )
        return request_id, login_link_key(request_id)

    async def call(request_id: uuid.UUID, key: str) -> str:
        try:
            return await stripe_accounts.create_login_link(client, stripe_account_id, key)
        except stripe.StripeError as exc:
            raise problem_from_stripe(exc, "create a dashboard login link") from exc

    async def record(request_id: uuid.UUID, url: str) -> str:
        return url  # a login link is a credential: nothing of it is stored

    return await calls.post("create a dashboard login link", intent=intent, call=call, record=record)
