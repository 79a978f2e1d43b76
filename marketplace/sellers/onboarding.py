"""Seller onboarding: the connected account's lifecycle on our side.

One function per use case, whoever calls it (routes, webhook handlers, admin): create the account
once (and again after a disconnect), mint links, and `sync_connected_account`, the only writer of
account state read from Stripe, which re-reads the account under a row lock so that duplicated, late
or reordered events all end on Stripe's current state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe
from piccolo.query import Select, WhereRaw
from stripe.params import AccountCreateParams

from connect import accounts as stripe_accounts
from connect.idempotency import account_key, account_link_key, login_link_key
from marketplace.db import DB
from marketplace.outbox.service import add_message
from marketplace.problems import Conflict, NotFound, Problem
from marketplace.sellers.tables import AccountLinkRequest, ConnectedAccount, Seller
from marketplace.settings import Settings
from marketplace.stripe_errors import problem_from_stripe

log = logging.getLogger("marketplace.onboarding")

# How long the refresh/return URLs handed to Stripe keep working (the Stripe link itself lives minutes),
# counted from the seller's authenticated request for a link. The state in those URLs is a credential
# (it mints onboarding links for the seller's account): a refresh consumes it and the state it mints
# inherits this deadline, so a leaked URL cannot be chained into lasting access. It is never logged
# (see observability); a stale tab past the deadline lands on the seller page instead.
LINK_STATE_TTL = timedelta(hours=24)
ONBOARDING_LINK_KINDS = ("account_onboarding", "account_update")
# Stripe keeps idempotency keys at least 24 hours: a creation retried later than this (the row still
# without an account) first looks for an account an earlier attempt may have made.
KEY_REUSE_WINDOW = timedelta(hours=23)
# How far before our row's creation an earlier attempt's account may be dated (clock differences).
_CREATED_SLACK_SECONDS = 3600


class AccountNotCreated(Conflict):
    """The seller has no connected account yet: create it with `POST /sellers/me/stripe-account`."""

    slug = "no-connected-account"
    title = "No connected account yet"


class AccountDisconnected(Conflict):
    """The connected account was disconnected from the platform; create a new one to sell again."""

    slug = "account-disconnected"
    title = "Account disconnected"


class DashboardLinkUnavailable(Conflict):
    """Only platform-managed (Express dashboard) accounts get a login link."""

    slug = "dashboard-link-unavailable"
    title = "No Express dashboard"


class OnboardingIncomplete(Conflict):
    """Stripe opens the Express dashboard only for accounts that completed onboarding."""

    slug = "onboarding-incomplete"
    title = "Onboarding incomplete"


class UnsupportedAccount(Problem):
    """The seller's country or business type cannot have a connected account."""

    status = 422
    slug = "unsupported-account"
    title = "Unsupported account details"


class SellerCannotSell(Conflict):
    """The seller's account cannot take a new checkout (`seller_status` says why)."""

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


async def account_for_seller(seller_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any] | None:
    """The seller's current connected account: the row of the highest generation (None before the first).

    `lock`: locked (`FOR NO KEY UPDATE`, see `_lock_account`) until the caller's transaction ends.
    """
    query = (
        ConnectedAccount.select()
        .where(ConnectedAccount.seller == seller_id)
        .order_by(ConnectedAccount.generation, ascending=False)
        .output(load_json=True)
    )
    row = await (query.lock_rows("NO KEY UPDATE") if lock else query).first()
    return dict(row) if row else None


def _create_params(seller: Mapping[str, Any], profile: stripe_accounts.AccountProfile) -> AccountCreateParams:
    try:
        return stripe_accounts.account_create_params(
            seller_id=str(seller["id"]),
            email=seller["email"],
            country=seller["country"],
            business_type=seller["business_type"],
            profile=profile,
        )
    except ValueError as exc:
        raise UnsupportedAccount(str(exc)) from exc


async def ensure_connected_account(
    client: stripe.StripeClient, settings: Settings, seller: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The seller's current connected account, created when there is none; returns (row, created_now).

    A row is written first (generation 1, or n + 1 when the current account was disconnected), with
    the profile and the exact creation parameters; it is locked for the Stripe call, so concurrent
    calls queue behind the first and then find its account. Every attempt sends the row's stored
    parameters under the row's key, so a crash after Stripe answered is healed by the next call (Stripe
    replays the same account) even if the platform's configuration changed in between. A row older than
    Stripe's key lifetime first looks for an account an earlier attempt made (`KEY_REUSE_WINDOW`).
    """
    current = await account_for_seller(seller["id"])
    if current is not None and current["stripe_account_id"] and current["disconnected_at"] is None:
        return current, False
    if current is None:
        generation = 1
    elif current["disconnected_at"] is not None:
        generation = current["generation"] + 1
    else:
        generation = current["generation"]  # written by an earlier attempt that did not finish
    profile: stripe_accounts.AccountProfile = seller["account_profile"] or settings.default_account_profile
    params = _create_params(seller, profile)  # validated before anything is written
    await ConnectedAccount.insert(
        ConnectedAccount(
            id=uuid.uuid4(),
            seller=seller["id"],
            generation=generation,
            profile=profile,
            create_params=params,
            created_at=datetime.now(UTC),
        )
    ).on_conflict(target=(ConnectedAccount.seller, ConnectedAccount.generation), action="DO NOTHING")

    async with DB.transaction():
        row = await account_for_seller(seller["id"], lock=True)
        assert row is not None
        if row["stripe_account_id"]:
            return dict(row), False
        stored = row["create_params"]
        if stored is None:  # a row written before parameters were stored: fix them now, from its profile
            stored = _create_params(seller, row["profile"])
            await ConnectedAccount.update({ConnectedAccount.create_params: stored}).where(
                ConnectedAccount.id == row["id"]
            )
        try:
            account = await _adopt_or_create(client, row, cast(AccountCreateParams, stored))
        except stripe.StripeError as exc:
            raise problem_from_stripe(exc, "create the connected account") from exc
        snapshot = stripe_accounts.snapshot_from_account(account)
        values = _values_from_snapshot(snapshot, datetime.now(UTC), "create")
        await ConnectedAccount.update({ConnectedAccount.stripe_account_id: snapshot.account_id, **values}).where(
            ConnectedAccount.id == row["id"]
        )
    log.info(
        "connected account %s (generation %s) created for seller %s", snapshot.account_id, generation, seller["id"]
    )
    created = await account_for_seller(seller["id"])
    assert created is not None
    return created, True


async def _adopt_or_create(
    client: stripe.StripeClient, row: Mapping[str, Any], params: AccountCreateParams
) -> dict[str, Any]:
    """The account for `row`: the one an earlier attempt made when the key may have expired, else a new one."""
    seller_id: uuid.UUID = row["seller"]
    if row["created_at"] < datetime.now(UTC) - KEY_REUSE_WINDOW:
        known = {
            r["stripe_account_id"]
            for r in await ConnectedAccount.select(ConnectedAccount.stripe_account_id).where(
                (ConnectedAccount.seller == seller_id) & ConnectedAccount.stripe_account_id.is_not_null()
            )
        }
        earlier = await stripe_accounts.find_account_for_seller(
            client,
            seller_id=str(seller_id),
            created_from=int(row["created_at"].timestamp()) - _CREATED_SLACK_SECONDS,
            exclude=known,
        )
        if earlier is not None:
            log.warning(
                "seller %s: adopting account %s made by an earlier attempt (its idempotency key may have expired)",
                seller_id,
                earlier["id"],
            )
            return earlier
    return await stripe_accounts.create_account(client, params, account_key(seller_id, row["generation"]))


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
    """Re-read `account_id` from Stripe and store what Stripe says now.

    Syncs of one account are serialized: the row is locked, the account read from Stripe, the result
    written and the lock released at commit, so the read stored last is the newest one, whatever the
    order in which events arrived (no clocks compared). The Stripe call is bounded by the client's
    timeout (connect.client). A Stripe error is raised to the caller (the webhook worker retries the
    event; routes report it): it never disconnects the account, since a wrong key answers much as a
    deauthorized account does. Returns None for an account that is not one of ours; a disconnected
    account is final and is not read again.
    """
    async with DB.transaction():
        row = await _lock_account(account_id) or await _record_unrecorded_account(client, account_id)
        if row is None:
            log.warning("account %s is not connected to any seller; ignored", account_id)
            return None
        if row["disconnected_at"] is not None:
            return SyncResult(account_id, "disconnected", changed=False, applied=False)
        account = await stripe_accounts.retrieve_account(client, account_id)
        snapshot = stripe_accounts.snapshot_from_account(account)
        returned = row["onboarding_returned_at"] is not None
        status = snapshot.status(seller_has_been_through_onboarding=returned)
        changed = row["status"] != status
        values = _values_from_snapshot(snapshot, datetime.now(UTC), source, returned=returned)
        if changed:
            values[ConnectedAccount.status_version] = row["status_version"] + 1
        await ConnectedAccount.update(values).where(ConnectedAccount.id == row["id"])
        if changed:
            await _announce(row, status, row["status_version"] + 1, snapshot.requirements())
        elif _requirements_to_announce(status, row["requirements"], snapshot.requirements()):
            await _announce_requirements(row, status, snapshot.requirements())
    return SyncResult(account_id, status, changed=changed, applied=True)


async def _record_unrecorded_account(client: stripe.StripeClient, account_id: str) -> dict[str, Any] | None:
    """The locked row for an account no row names yet, found through the account's `metadata.seller_id`.

    An event can outrun our write of a new account (the creating call still holds the seller's row
    lock: waiting for it ends with the account recorded), or our process died between Stripe's answer
    and that write (the row still waits for an account: it is recorded here). None when the account
    is no seller's current one.
    """
    account = await stripe_accounts.retrieve_account(client, account_id)
    try:
        seller_id = uuid.UUID(str((account.get("metadata") or {}).get("seller_id")))
    except ValueError:
        return None
    current = await account_for_seller(seller_id, lock=True)
    if current is None or current["disconnected_at"] is not None:
        return None
    if current["stripe_account_id"] is None:
        await ConnectedAccount.update({ConnectedAccount.stripe_account_id: account_id}).where(
            ConnectedAccount.id == current["id"]
        )
        log.warning(
            "seller %s: account %s recorded from its event (its creation was never recorded)", seller_id, account_id
        )
    elif current["stripe_account_id"] != account_id:
        return None
    return await _lock_account(account_id)


async def _lock_account(account_id: str) -> dict[str, Any] | None:
    """The account's row (with its seller's principal), locked until the caller's transaction ends.

    `NO KEY UPDATE`, like every lock on an account row here: it serializes syncs (held across a Stripe
    read) but not the rows that merely reference the account, so minting a link never waits for Stripe.
    """
    row = (
        await ConnectedAccount.select(*ConnectedAccount.all_columns(), ConnectedAccount.seller.principal)
        .where(ConnectedAccount.stripe_account_id == account_id)
        .lock_rows("NO KEY UPDATE", of=(ConnectedAccount,))
        .output(load_json=True)
        .first()
    )
    return dict(row) if row else None


async def mark_disconnected(account_id: str, source: str) -> SyncResult | None:
    """The account deauthorized the platform (`account.application.deauthorized`): final for this account.

    Buyers no longer see the seller and checkout is refused; the seller may connect a new account.
    """
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


def _due(requirements: Mapping[str, Any] | None) -> tuple[list[str], int | None]:
    """What the seller has to act on: the fields due now or overdue, and the deadline."""
    req = requirements or {}
    due = sorted({*(req.get("currently_due") or []), *(req.get("past_due") or [])})
    return due, req.get("current_deadline")


def _requirements_to_announce(status: str, before: Any, after: Mapping[str, Any]) -> bool:
    """Whether a read that kept the status brought new requirements or a new deadline worth telling.

    Only for accounts that have been through onboarding (restricted, or active with something due
    before a deadline); an `onboarding` account's requirements are simply the form not yet filled in.
    """
    if status not in ("restricted", "active"):
        return False
    due, deadline = _due(after)
    if not due and deadline is None:
        return False
    previous = json.loads(before) if isinstance(before, str) else before
    return (due, deadline) != _due(previous)


async def _announce_requirements(row: dict[str, Any], status: str, requirements: dict[str, Any]) -> None:
    due, deadline = _due(requirements)
    digest = hashlib.sha256(json.dumps([due, deadline]).encode()).hexdigest()[:16]
    await add_message(
        kind="seller.account_requirements_changed",
        # Once per requirement set and deadline within one status episode (status_version).
        dedupe_key=f"account-requirements:{row['stripe_account_id']}:{row['status_version']}:{digest}",
        principal_id=row["seller.principal"],
        payload={"account_id": row["stripe_account_id"], "status": status, "requirements": requirements},
    )


async def mint_onboarding_link(
    client: stripe.StripeClient, settings: Settings, seller_id: uuid.UUID, *, valid_until: datetime | None = None
) -> tuple[str, datetime]:
    """A fresh hosted onboarding (or, once submitted, update) link; returns (url, expires_at).

    Its refresh/return URLs carry a new state that works until `valid_until` (by default
    `LINK_STATE_TTL` from now: the lifetime a seller's authenticated request grants).
    """
    account = await account_for_seller(seller_id)
    if account is None or not account["stripe_account_id"]:
        raise AccountNotCreated("Create the connected account first: POST /sellers/me/stripe-account.")
    if account["disconnected_at"] is not None:
        raise AccountDisconnected(
            "This connected account was disconnected from the platform; "
            "connect a new one with POST /sellers/me/stripe-account."
        )
    link_type: stripe_accounts.LinkType = "account_update" if account["details_submitted"] else "account_onboarding"
    if account["details_submitted"] and account["dashboard"] != "none":
        # Stripe only offers account_update links for accounts without a Stripe dashboard.
        link_type = "account_onboarding"
    request_id = uuid.uuid4()
    now = datetime.now(UTC)
    await AccountLinkRequest.insert(
        AccountLinkRequest(
            id=request_id,
            seller=seller_id,
            account=account["id"],
            kind=link_type,
            created_at=now,
            valid_until=valid_until or now + LINK_STATE_TTL,
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
    for an account that is no longer the seller's current one. The consumption and the new state
    are committed together with Stripe's answer: if Stripe fails, the state is left unused (the
    seller may try again) and the error is raised.
    """
    now = datetime.now(UTC)
    async with DB.transaction():
        row = await AccountLinkRequest.select().where(AccountLinkRequest.id == state).lock_rows("UPDATE").first()
        if row is None or not _usable(row, now) or row["used_at"] is not None:
            return None
        current = await account_for_seller(row["seller"])
        if current is None or current["id"] != row["account"]:
            return None
        await AccountLinkRequest.update({AccountLinkRequest.used_at: now}).where(AccountLinkRequest.id == state)
        minted = await mint_onboarding_link(client, settings, row["seller"], valid_until=_usable_until(row))
    return minted


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
    result = await sync_connected_account(client, row["stripe_account_id"], source="return")
    return result.status if result is not None else "no_account"


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
        raise DashboardLinkUnavailable(
            "Only platform-managed (Express dashboard) accounts get a dashboard login link; "
            "this seller signs in at dashboard.stripe.com."
        )
    if account["disconnected_at"] is not None:
        raise AccountDisconnected("This connected account was disconnected from the platform.")
    if not account["details_submitted"]:
        raise OnboardingIncomplete(
            "Finish onboarding first: Stripe only opens the Express dashboard for accounts that completed it."
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


# ---- who may sell, and who buyers may see -------------------------------------------------------------
# A seller has at most one account that is not disconnected (a new generation is only made once the
# current one is disconnected), so "some account of the seller can take payments" is "the current one can".


def can_take_payments(account: Mapping[str, Any] | None) -> bool:
    """Whether a (current) account row may take new checkouts: active, charges enabled, not disconnected."""
    return (
        account is not None
        and bool(account["stripe_account_id"])
        and account["disconnected_at"] is None
        and account["status"] == "active"
        and bool(account["charges_enabled"])
    )


def sellers_shown_to_buyers() -> Select[ConnectedAccount]:
    """A sub-select of the ids of sellers whose listings buyers may see (their account can take payments).

    For listing queries: `Listing.select().where(Listing.seller.is_in(sellers_shown_to_buyers()))`.
    A disconnected, disabled, restricted or still-onboarding seller is hidden until fixed.
    """
    return ConnectedAccount.select(ConnectedAccount.seller).where(
        (ConnectedAccount.status == "active")
        & ConnectedAccount.charges_enabled.eq(True)
        & ConnectedAccount.disconnected_at.is_null()
        & ConnectedAccount.stripe_account_id.is_not_null()
    )


async def seller_may_be_shown(seller_id: uuid.UUID) -> bool:
    """Whether buyers may see this seller (and its listings) now."""
    return can_take_payments(await account_for_seller(seller_id))


async def ensure_can_accept_checkout(seller_id: uuid.UUID) -> dict[str, Any]:
    """The seller's account if it may take a new checkout; otherwise a 409 problem saying why.

    The checkout flow calls this before creating a session: a disconnected, disabled, restricted or
    still-onboarding account cannot take new payments until the seller fixes it. Same rule as
    `sellers_shown_to_buyers`.
    """
    account = await account_for_seller(seller_id)
    if account is None or not account["stripe_account_id"]:
        raise SellerCannotSell("This seller has not set up payments yet.", seller_status="none")
    if not can_take_payments(account):
        status = account["status"]
        reasons = {
            "disconnected": "This seller's payment account was disconnected from the marketplace.",
            "disabled": "This seller's payment account was disabled by Stripe.",
            "restricted": "This seller's payment account needs more information before it can take payments.",
            "onboarding": "This seller has not finished setting up payments.",
        }
        raise SellerCannotSell(reasons.get(status, "This seller cannot take payments."), seller_status=status)
    return account


async def accounts_by_status(status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """Sellers' current accounts (an account replaced by a reconnection is not listed), newest first."""
    current = (
        "connected_accounts.generation = "
        "(SELECT max(c.generation) FROM connected_accounts c WHERE c.seller = connected_accounts.seller)"
    )
    query = (
        ConnectedAccount.select(
            *ConnectedAccount.all_columns(),
            ConnectedAccount.seller.display_name,
            ConnectedAccount.seller.email,
        )
        .where(WhereRaw(current))
        .order_by(ConnectedAccount.created_at, ascending=False)
        .limit(limit)
        .offset(offset)
        .output(load_json=True)
    )
    if status:
        query = query.where(ConnectedAccount.status == status)
    return [dict(r) for r in await query]
