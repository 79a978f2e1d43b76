"""Seller onboarding: the connected account's lifecycle on our side.

One function per use case, whoever calls it (routes, webhook handlers, admin): create the account
once, mint links, and `sync_connected_account`, the only writer of account state, which re-reads the
account from Stripe so an old or duplicated event can never overwrite newer state.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from connect import accounts as stripe_accounts
from connect.idempotency import account_key, account_link_key, login_link_key
from marketplace.db import DB
from marketplace.outbox.service import add_message
from marketplace.problems import Conflict, NotFound, Problem
from marketplace.sellers.tables import AccountLinkRequest, ConnectedAccount, Seller
from marketplace.settings import Settings
from marketplace.stripe_errors import problem_from_stripe

log = logging.getLogger("marketplace.onboarding")

# How long the refresh/return URLs handed to Stripe keep working (the Stripe link itself lives minutes).
# The URL is a credential (it mints onboarding links for the seller's account), so it is short-lived,
# never logged (see observability), and a stale tab older than this lands on the seller page instead.
LINK_STATE_TTL = timedelta(hours=24)


class AccountNotCreated(Conflict):
    slug = "no-connected-account"
    title = "No connected account yet"


class SellerCannotSell(Conflict):
    slug = "seller-cannot-sell"
    title = "Seller cannot take payments"


@dataclass(frozen=True, slots=True)
class SyncResult:
    account_id: str
    status: str
    changed: bool
    applied: bool


async def seller_for_principal(principal_id: uuid.UUID) -> dict[str, Any]:
    row = await Seller.select().where(Seller.principal == principal_id).first()
    if row is None:
        raise NotFound("No seller profile for this token.")
    return dict(row)


async def account_for_seller(seller_id: uuid.UUID) -> dict[str, Any] | None:
    row = await ConnectedAccount.select().where(ConnectedAccount.seller == seller_id).output(load_json=True).first()
    return dict(row) if row else None


async def ensure_connected_account(
    client: stripe.StripeClient, settings: Settings, seller: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The seller's connected account, created on first call; returns (row, created_now).

    The row is locked for the Stripe call, so concurrent calls queue behind the first and then find
    its account; a crash after Stripe answered is healed by the next call, whose idempotency key
    (`account:{seller_id}`) makes Stripe return the same account rather than a second one.
    """
    profile: stripe_accounts.AccountProfile = seller["account_profile"] or settings.default_account_profile
    try:
        params = stripe_accounts.account_create_params(
            seller_id=str(seller["id"]),
            email=seller["email"],
            country=seller["country"],
            business_type=seller["business_type"],
            profile=profile,
        )
    except ValueError as exc:
        raise Problem(str(exc), status=422, slug="unsupported-account", title="Unsupported account details") from exc

    await ConnectedAccount.insert(
        ConnectedAccount(id=uuid.uuid4(), seller=seller["id"], profile=profile, created_at=datetime.now(UTC))
    ).on_conflict(target=ConnectedAccount.seller, action="DO NOTHING")

    async with DB.transaction():
        row = (
            await ConnectedAccount.select()
            .where(ConnectedAccount.seller == seller["id"])
            .lock_rows("UPDATE")
            .output(load_json=True)
            .first()
        )
        assert row is not None
        if row["stripe_account_id"]:
            return dict(row), False
        try:
            account = await stripe_accounts.create_account(client, params, account_key(seller["id"]))
        except stripe.StripeError as exc:
            raise problem_from_stripe(exc, "create the connected account") from exc
        snapshot = stripe_accounts.snapshot_from_account(account)
        values = _values_from_snapshot(snapshot, datetime.now(UTC), "create")
        await ConnectedAccount.update({ConnectedAccount.stripe_account_id: snapshot.account_id, **values}).where(
            ConnectedAccount.id == row["id"]
        )
    log.info("connected account %s created for seller %s", snapshot.account_id, seller["id"])
    created = await account_for_seller(seller["id"])
    assert created is not None
    return created, True


def _values_from_snapshot(
    snapshot: stripe_accounts.AccountSnapshot, read_at: datetime, source: str, *, returned: bool = False
) -> dict[Any, Any]:
    return {
        ConnectedAccount.status: snapshot.status(seller_has_been_through_onboarding=returned),
        ConnectedAccount.charges_enabled: snapshot.charges_enabled,
        ConnectedAccount.payouts_enabled: snapshot.payouts_enabled,
        ConnectedAccount.details_submitted: snapshot.details_submitted,
        ConnectedAccount.requirements: snapshot.requirements(),
        ConnectedAccount.capabilities: snapshot.capabilities,
        ConnectedAccount.dashboard: snapshot.dashboard,
        ConnectedAccount.synced_at: read_at,
        ConnectedAccount.synced_from: source[:255],
    }


async def sync_connected_account(client: stripe.StripeClient, account_id: str, source: str) -> SyncResult | None:
    """Re-read `account_id` from Stripe and store it, unless a newer read is already stored.

    Returns None for an account that is not one of ours. Losing access to the account (a
    deauthorization we have not heard of yet) marks it disconnected.
    """
    read_at = datetime.now(UTC)
    try:
        account = await stripe_accounts.retrieve_account(client, account_id)
    except stripe.StripeError as exc:
        if stripe_accounts.is_account_gone(exc):
            return await mark_disconnected(account_id, source)
        raise
    snapshot = stripe_accounts.snapshot_from_account(account)
    async with DB.transaction():
        row = await _lock_account(account_id)
        if row is None:
            log.warning("account %s is not connected to any seller; ignored", account_id)
            return None
        if row["disconnected_at"] is not None:
            return SyncResult(account_id, "disconnected", changed=False, applied=False)
        if row["synced_at"] is not None and row["synced_at"] >= read_at:
            return SyncResult(account_id, row["status"], changed=False, applied=False)
        returned = row["onboarding_returned_at"] is not None
        status = snapshot.status(seller_has_been_through_onboarding=returned)
        changed = row["status"] != status
        values = _values_from_snapshot(snapshot, read_at, source, returned=returned)
        if changed:
            values[ConnectedAccount.status_version] = row["status_version"] + 1
        await ConnectedAccount.update(values).where(ConnectedAccount.id == row["id"])
        if changed:
            await _announce(row, status, row["status_version"] + 1, snapshot.requirements())
    return SyncResult(account_id, status, changed=changed, applied=True)


async def _lock_account(account_id: str) -> dict[str, Any] | None:
    """The account's row (with its seller's principal), locked until the caller's transaction ends."""
    row = (
        await ConnectedAccount.select(*ConnectedAccount.all_columns(), ConnectedAccount.seller.principal)
        .where(ConnectedAccount.stripe_account_id == account_id)
        .lock_rows("UPDATE", of=(ConnectedAccount,))
        .first()
    )
    return dict(row) if row else None


async def mark_disconnected(account_id: str, source: str) -> SyncResult | None:
    """The platform lost the account (deauthorized): final; listings hide and checkout is refused."""
    now = datetime.now(UTC)
    async with DB.transaction():
        row = await _lock_account(account_id)
        if row is None:
            log.warning("deauthorized account %s is not connected to any seller; ignored", account_id)
            return None
        if row["disconnected_at"] is not None:
            return SyncResult(account_id, "disconnected", changed=False, applied=False)
        version = row["status_version"] + 1
        await ConnectedAccount.update(
            {
                ConnectedAccount.status: "disconnected",
                ConnectedAccount.status_version: version,
                ConnectedAccount.disconnected_at: now,
                ConnectedAccount.charges_enabled: False,
                ConnectedAccount.payouts_enabled: False,
                ConnectedAccount.synced_at: now,
                ConnectedAccount.synced_from: source[:255],
            }
        ).where(ConnectedAccount.id == row["id"])
        await _announce(row, "disconnected", version, None)
    log.info("connected account %s disconnected (%s)", account_id, source)
    return SyncResult(account_id, "disconnected", changed=True, applied=True)


async def _announce(row: dict[str, Any], status: str, version: int, requirements: dict[str, Any] | None) -> None:
    await add_message(
        kind="seller.account_status_changed",
        dedupe_key=f"account-status:{row['stripe_account_id']}:{version}",
        principal_id=row["seller.principal"],
        payload={
            "account_id": row["stripe_account_id"],
            "previous_status": row["status"],
            "status": status,
            "requirements": requirements,
        },
    )


async def mint_onboarding_link(
    client: stripe.StripeClient, settings: Settings, seller_id: uuid.UUID
) -> tuple[str, datetime]:
    """A fresh hosted onboarding (or, once submitted, update) link; returns (url, expires_at)."""
    account = await account_for_seller(seller_id)
    if account is None or not account["stripe_account_id"]:
        raise AccountNotCreated("Create the connected account first: POST /sellers/me/stripe-account.")
    if account["disconnected_at"] is not None:
        raise Conflict("This connected account was disconnected from the platform.", slug="account-disconnected")
    link_type: stripe_accounts.LinkType = "account_update" if account["details_submitted"] else "account_onboarding"
    if account["details_submitted"] and account["dashboard"] != "none":
        # Stripe only offers account_update links for accounts without a Stripe dashboard.
        link_type = "account_onboarding"
    request_id = uuid.uuid4()
    await AccountLinkRequest.insert(
        AccountLinkRequest(
            id=request_id, seller=seller_id, account=account["id"], kind=link_type, created_at=datetime.now(UTC)
        )
    )
    base = f"{settings.public_base_url}/sellers/onboarding/{request_id}"
    try:
        url, expires_at = await stripe_accounts.create_account_link(
            client,
            account_id=account["stripe_account_id"],
            refresh_url=f"{base}/refresh",
            return_url=f"{base}/return",
            link_type=link_type,
            idempotency_key=account_link_key(request_id),
        )
    except stripe.StripeError as exc:
        raise problem_from_stripe(exc, "create an onboarding link") from exc
    expires = datetime.fromtimestamp(expires_at, UTC)
    await AccountLinkRequest.update({AccountLinkRequest.expires_at: expires}).where(AccountLinkRequest.id == request_id)
    return url, expires


async def link_request(state: uuid.UUID) -> dict[str, Any] | None:
    """The link request a refresh/return URL names, if it exists and is recent enough."""
    row = await AccountLinkRequest.select().where(AccountLinkRequest.id == state).first()
    if row is None or row["created_at"] < datetime.now(UTC) - LINK_STATE_TTL:
        return None
    return dict(row)


async def record_onboarding_return(account_row_id: uuid.UUID) -> None:
    """Remember that the seller came back from hosted onboarding (first time only)."""
    await ConnectedAccount.update({ConnectedAccount.onboarding_returned_at: datetime.now(UTC)}).where(
        (ConnectedAccount.id == account_row_id) & ConnectedAccount.onboarding_returned_at.is_null()
    )


async def mint_dashboard_link(client: stripe.StripeClient, seller_id: uuid.UUID) -> str:
    account = await account_for_seller(seller_id)
    if account is None or not account["stripe_account_id"]:
        raise AccountNotCreated("Create the connected account first: POST /sellers/me/stripe-account.")
    if account["dashboard"] != "express":
        raise Conflict(
            "Only platform-managed (Express dashboard) accounts get a dashboard login link; "
            "this seller signs in at dashboard.stripe.com.",
            slug="dashboard-link-unavailable",
            title="No Express dashboard",
        )
    if account["disconnected_at"] is not None:
        raise Conflict("This connected account was disconnected from the platform.", slug="account-disconnected")
    if not account["details_submitted"]:
        raise Conflict(
            "Finish onboarding first: Stripe only opens the Express dashboard for accounts that completed it.",
            slug="onboarding-incomplete",
            title="Onboarding incomplete",
        )
    request_id = uuid.uuid4()
    await AccountLinkRequest.insert(
        AccountLinkRequest(
            id=request_id, seller=seller_id, account=account["id"], kind="login", created_at=datetime.now(UTC)
        )
    )
    try:
        return await stripe_accounts.create_login_link(client, account["stripe_account_id"], login_link_key(request_id))
    except stripe.StripeError as exc:
        raise problem_from_stripe(exc, "create a dashboard login link") from exc


async def ensure_can_accept_checkout(seller_id: uuid.UUID) -> dict[str, Any]:
    """The seller's account if it may take a new checkout; otherwise a 409 problem saying why.

    The checkout flow calls this before creating a session: a disconnected, disabled, restricted or
    still-onboarding account cannot take new payments until the seller fixes it.
    """
    account = await account_for_seller(seller_id)
    if account is None or not account["stripe_account_id"]:
        raise SellerCannotSell("This seller has not set up payments yet.", seller_status="none")
    status = account["status"]
    if status != "active" or not account["charges_enabled"]:
        reasons = {
            "disconnected": "This seller's payment account was disconnected from the marketplace.",
            "disabled": "This seller's payment account was disabled by Stripe.",
            "restricted": "This seller's payment account needs more information before it can take payments.",
            "onboarding": "This seller has not finished setting up payments.",
        }
        raise SellerCannotSell(reasons.get(status, "This seller cannot take payments."), seller_status=status)
    return account


async def accounts_by_status(status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    query = (
        ConnectedAccount.select(
            *ConnectedAccount.all_columns(),
            ConnectedAccount.seller.display_name,
            ConnectedAccount.seller.email,
        )
        .order_by(ConnectedAccount.created_at, ascending=False)
        .limit(limit)
        .offset(offset)
        .output(load_json=True)
    )
    if status:
        query = query.where(ConnectedAccount.status == status)
    return [dict(r) for r in await query]
