"""A seller's connected accounts on our side: the typed row, finding the current one, creating it once.

`ensure_connected_account` follows the one Stripe-call shape (`connect.calls.post`): the row is written
first with the exact creation parameters (its generation names the idempotency key), Stripe is called
with nothing held, and the account id is recorded by a guarded update. Concurrent calls for one seller
all send the same parameters under the same key, so Stripe makes one account and answers each of them
with it; whichever records first wins, the others find it recorded.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe
from piccolo.query import WhereRaw
from stripe.params import AccountCreateParams

from connect import accounts as stripe_accounts
from connect import calls
from connect.idempotency import account_key
from connect.profiles import AccountProfile, AccountStatus, ChargeType, charge_type_for
from marketplace.lib.problems import NotFound
from marketplace.lib.settings import Settings
from marketplace.lib.stripe_errors import problem_from_stripe
from marketplace.sellers.errors import UnsupportedAccount
from marketplace.sellers.tables import ConnectedAccount, Seller

log = logging.getLogger("marketplace.onboarding")

# Stripe keeps idempotency keys at least 24 hours: a creation retried later than this (the row still
# without an account) first looks for an account an earlier attempt may have made.
KEY_REUSE_WINDOW = timedelta(hours=23)
# How far before our row's creation an earlier attempt's account may be dated (clock differences).
_CREATED_SLACK_SECONDS = 3600


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One `connected_accounts` row: a seller's connected account and the state last read from Stripe."""

    id: uuid.UUID
    seller: uuid.UUID
    generation: int
    stripe_account_id: str | None
    profile: AccountProfile
    status: AccountStatus
    status_version: int
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    created_at: datetime
    create_params: dict[str, Any] | None = None
    requirements: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, str] = field(default_factory=dict)
    dashboard: str | None = None
    disconnected_at: datetime | None = None
    onboarding_returned_at: datetime | None = None
    synced_at: datetime | None = None
    synced_from: str | None = None
    sync_ticket: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AccountRow:
        return cls(
            id=row["id"],
            seller=row["seller"],
            generation=row["generation"],
            stripe_account_id=row["stripe_account_id"],
            profile=row["profile"],
            status=row["status"],
            status_version=row["status_version"],
            charges_enabled=bool(row["charges_enabled"]),
            payouts_enabled=bool(row["payouts_enabled"]),
            details_submitted=bool(row["details_submitted"]),
            created_at=row["created_at"],
            create_params=_json(row["create_params"]),
            requirements=_json(row["requirements"]) or {},
            capabilities=_json(row["capabilities"]) or {},
            dashboard=row["dashboard"],
            disconnected_at=row["disconnected_at"],
            onboarding_returned_at=row["onboarding_returned_at"],
            synced_at=row["synced_at"],
            synced_from=row["synced_from"],
            sync_ticket=int(row.get("sync_ticket") or 0),
        )

    @property
    def charge_type(self) -> ChargeType:
        return charge_type_for(self.profile)

    @property
    def connected(self) -> bool:
        """Created in Stripe and not disconnected."""
        return self.stripe_account_id is not None and self.disconnected_at is None


@dataclass(frozen=True, slots=True)
class SellerRow:
    """One `sellers` row: a seller's marketplace profile (its fee override is read by `sellers.fees`)."""

    id: uuid.UUID
    principal: uuid.UUID
    display_name: str
    email: str
    country: str
    business_type: str
    account_profile: AccountProfile | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SellerRow:
        return cls(
            id=row["id"],
            principal=row["principal"],
            display_name=row["display_name"],
            email=row["email"],
            country=row["country"],
            business_type=row["business_type"],
            account_profile=row["account_profile"],
            created_at=row["created_at"],
        )


async def seller_for_principal(principal_id: uuid.UUID) -> SellerRow:
    """The seller profile of a seller principal (`marketplace.sellers.deps.current_seller` for routes)."""
    row = await Seller.select().where(Seller.principal == principal_id).first()
    if row is None:
        raise NotFound("No seller profile for this token.")
    return SellerRow.from_row(row)


async def account_for_seller(seller_id: uuid.UUID) -> AccountRow | None:
    """The seller's current connected account: the row of the highest generation (None before the first)."""
    row = await (
        ConnectedAccount.select()
        .where(ConnectedAccount.seller == seller_id)
        .order_by(ConnectedAccount.generation, ascending=False)
        .first()
    )
    return AccountRow.from_row(row) if row else None


def _create_params(seller: SellerRow, profile: AccountProfile) -> AccountCreateParams:
    try:
        return stripe_accounts.account_create_params(
            seller_id=str(seller.id),
            email=seller.email,
            country=seller.country,
            business_type=seller.business_type,
            profile=profile,
        )
    except ValueError as exc:
        raise UnsupportedAccount(str(exc)) from exc


async def ensure_connected_account(
    client: stripe.StripeClient, settings: Settings, seller: SellerRow
) -> tuple[AccountRow, bool]:
    """The seller's current connected account, created when there is none; returns (row, created_now).

    A row is written first (generation 1, or n + 1 when the current account was disconnected), with
    the profile and the exact creation parameters. Every attempt sends the row's stored parameters
    under the row's key, so a crash after Stripe answered is healed by the next call (Stripe replays
    the same account) even if the platform's configuration changed in between, and concurrent calls
    get one account. A row older than Stripe's key lifetime first looks for an account an earlier
    attempt made (`KEY_REUSE_WINDOW`).
    """
    current = await account_for_seller(seller.id)
    if current is not None and current.connected:
        return current, False

    async def intent() -> tuple[AccountRow, str]:
        if current is None:
            generation = 1
        elif current.disconnected_at is not None:
            generation = current.generation + 1
        else:
            generation = current.generation  # written by an earlier attempt that did not finish
        profile: AccountProfile = seller.account_profile or settings.default_account_profile
        params = _create_params(seller, profile)  # validated before anything is written
        await ConnectedAccount.insert(
            ConnectedAccount(
                id=uuid.uuid4(),
                seller=seller.id,
                generation=generation,
                profile=profile,
                create_params=params,
                created_at=datetime.now(UTC),
            )
        ).on_conflict(target=(ConnectedAccount.seller, ConnectedAccount.generation), action="DO NOTHING")
        row = await account_for_seller(seller.id)
        assert row is not None
        if row.create_params is None:  # a row written before parameters were stored: fix them, from its profile
            stored = _create_params(seller, row.profile)
            await ConnectedAccount.update({ConnectedAccount.create_params: stored}).where(
                (ConnectedAccount.id == row.id) & ConnectedAccount.create_params.is_null()
            )
            row = await account_for_seller(seller.id)
            assert row is not None
        return row, account_key(row.seller, row.generation)

    async def call(row: AccountRow, key: str) -> dict[str, Any] | None:
        if row.stripe_account_id is not None:
            return None  # recorded meanwhile (another call, or an event that outran it)
        try:
            return await _adopt_or_create(client, row, cast(AccountCreateParams, row.create_params), key)
        except stripe.StripeError as exc:
            raise problem_from_stripe(exc, "create the connected account") from exc

    async def record(row: AccountRow, account: dict[str, Any] | None) -> tuple[AccountRow, bool]:
        created = False
        if account is not None:
            snapshot = stripe_accounts.snapshot_from_account(account)
            values = snapshot_values(snapshot, datetime.now(UTC), "create")
            recorded = (
                await ConnectedAccount.update({ConnectedAccount.stripe_account_id: snapshot.account_id, **values})
                .where((ConnectedAccount.id == row.id) & ConnectedAccount.stripe_account_id.is_null())
                .returning(ConnectedAccount.id)
            )
            created = bool(recorded)
            if created:
                log.info(
                    "connected account %s (generation %s) created for seller %s",
                    snapshot.account_id,
                    row.generation,
                    row.seller,
                )
        fresh = await account_for_seller(row.seller)
        assert fresh is not None
        if account is not None and fresh.stripe_account_id != account["id"]:
            log.error(
                "seller %s: Stripe answered account %s but the row records %s",
                row.seller,
                account["id"],
                fresh.stripe_account_id,
            )
        return fresh, created

    return await calls.post("create a connected account", intent=intent, call=call, record=record)


async def _adopt_or_create(
    client: stripe.StripeClient, row: AccountRow, params: AccountCreateParams, key: str
) -> dict[str, Any]:
    """The account for `row`: the one an earlier attempt made when the key may have expired, else a new one."""
    if row.created_at < datetime.now(UTC) - KEY_REUSE_WINDOW:
        known = {
            r["stripe_account_id"]
            for r in await ConnectedAccount.select(ConnectedAccount.stripe_account_id).where(
                (ConnectedAccount.seller == row.seller) & ConnectedAccount.stripe_account_id.is_not_null()
            )
        }
        earlier = await stripe_accounts.find_account_for_seller(
            client,
            seller_id=str(row.seller),
            created_from=int(row.created_at.timestamp()) - _CREATED_SLACK_SECONDS,
            exclude=known,
        )
        if earlier is not None:
            log.warning(
                "seller %s: adopting account %s made by an earlier attempt (its idempotency key may have expired)",
                row.seller,
                earlier["id"],
            )
            return earlier
    return await stripe_accounts.create_account(client, params, key)


def snapshot_values(
    snapshot: stripe_accounts.AccountSnapshot, read_at: datetime, source: str, *, returned: bool = False
) -> dict[Any, Any]:
    """The columns a read of the account sets."""
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


@dataclass(frozen=True, slots=True)
class ListedAccount:
    """A seller's current account as the admin list shows it."""

    account: AccountRow
    display_name: str
    email: str


async def accounts_by_status(status: str | None, limit: int, offset: int) -> list[ListedAccount]:
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
    )
    if status:
        query = query.where(ConnectedAccount.status == status)
    return [ListedAccount(AccountRow.from_row(r), r["seller.display_name"], r["seller.email"]) for r in await query]
