"""Who may sell, and with which charge type: the one rule checkout and the storefront both apply.

A seller may take a new checkout when their current connected account is active (charges and payouts
enabled), not disconnected, and has the capability its charge type needs active
(`connect.profiles.REQUIRED_CAPABILITIES`: `transfers` for a destination charge, `card_payments` for a
direct one). Buyers see the listings of exactly those sellers (`sellers_shown_to_buyers`, the same rule
in SQL). A seller has at most one account that is not disconnected, so "some account of the seller
can take payments" is "the current one can".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from piccolo.query import Select, WhereRaw

from connect.profiles import ACCOUNT_PROFILES, REQUIRED_CAPABILITIES, AccountProfile, ChargeType, charge_type_for
from marketplace.sellers.accounts import AccountRow, account_for_seller
from marketplace.sellers.errors import SellerCannotSell
from marketplace.sellers.tables import ConnectedAccount


@dataclass(frozen=True, slots=True)
class SellingTerms:
    """How a checkout for this seller is charged, read from their current account."""

    seller_id: uuid.UUID
    account_row_id: uuid.UUID
    stripe_account_id: str
    profile: AccountProfile
    charge_type: ChargeType


def missing_capabilities(account: AccountRow) -> list[str]:
    """The capabilities the account's charge type needs that are not active."""
    return [c for c in REQUIRED_CAPABILITIES[account.charge_type] if account.capabilities.get(c) != "active"]


def can_take_payments(account: AccountRow | None) -> bool:
    """Whether a (current) account may take new checkouts now."""
    return (
        account is not None
        and account.connected
        and account.status == "active"
        and account.charges_enabled
        and not missing_capabilities(account)
    )


def _capabilities_active_sql() -> str:
    # Fixed strings from REQUIRED_CAPABILITIES only: no value from outside is interpolated.
    per_profile = []
    for profile in ACCOUNT_PROFILES:
        capabilities = REQUIRED_CAPABILITIES[charge_type_for(profile)]
        needed = " AND ".join(f"connected_accounts.capabilities->>'{c}' = 'active'" for c in capabilities)
        per_profile.append(f"(connected_accounts.profile = '{profile}' AND {needed})")
    return "(" + " OR ".join(per_profile) + ")"


def sellers_shown_to_buyers() -> Select[ConnectedAccount]:
    """A sub-select of the ids of sellers whose listings buyers may see (`can_take_payments`, in SQL).

    For listing queries: `Listing.select().where(Listing.seller.is_in(sellers_shown_to_buyers()))`.
    A disconnected, disabled, restricted or still-onboarding seller is hidden until fixed.
    """
    return ConnectedAccount.select(ConnectedAccount.seller).where(
        (ConnectedAccount.status == "active")
        & ConnectedAccount.charges_enabled.eq(True)
        & ConnectedAccount.disconnected_at.is_null()
        & ConnectedAccount.stripe_account_id.is_not_null()
        & WhereRaw(_capabilities_active_sql())
    )


async def seller_may_be_shown(seller_id: uuid.UUID) -> bool:
    """Whether buyers may see this seller (and its listings) now."""
    return can_take_payments(await account_for_seller(seller_id))


_REASONS = {
    "disconnected": "This seller's payment account was disconnected from the marketplace.",
    "disabled": "This seller's payment account was disabled by Stripe.",
    "restricted": "This seller's payment account needs more information before it can take payments.",
    "onboarding": "This seller has not finished setting up payments.",
}


async def selling_terms(seller_id: uuid.UUID) -> SellingTerms:
    """How to charge a new checkout for this seller; a 409 `SellerCannotSell` problem saying why not.

    The checkout flow calls this (or `terms_for` on the account it read) before writing an order: a
    disconnected, disabled, restricted or still-onboarding account, or one whose charge type's
    capability is not active, cannot take new payments until the seller fixes it.
    """
    return terms_for(seller_id, await account_for_seller(seller_id))


def terms_for(seller_id: uuid.UUID, account: AccountRow | None) -> SellingTerms:
    """`selling_terms` for the seller's current account as already read (None: no account yet)."""
    if account is None or account.stripe_account_id is None:
        raise SellerCannotSell("This seller has not set up payments yet.", seller_status="none")
    if account.disconnected_at is not None or account.status != "active" or not account.charges_enabled:
        raise SellerCannotSell(
            _REASONS.get(account.status, "This seller cannot take payments."), seller_status=account.status
        )
    missing = missing_capabilities(account)
    if missing:
        raise SellerCannotSell(
            f"This seller's payment account cannot take {account.charge_type} charges yet "
            f"({', '.join(missing)} not active).",
            seller_status="restricted",
            missing_capabilities=missing,
        )
    return SellingTerms(seller_id, account.id, account.stripe_account_id, account.profile, account.charge_type)
