"""The words checkout and onboarding share: account profile, account status, charge type.

Defined once here; settings, the API's schemas, onboarding and checkout all use these.

- **Account profile** (ours): who runs the seller's Stripe relationship. `platform_managed`: an Express
  dashboard, the platform pays Stripe's fees and carries negative balances. `seller_managed`: the full
  Stripe Dashboard, the seller pays fees and Stripe carries losses. `connect.accounts.controller_for`
  turns a profile into the account's `controller` properties.
- **Account status** (ours, derived from the Account by `connect.accounts.derive_status`).
- **Charge type** (Stripe's): a platform-managed seller is charged with **destination charges** (the
  session and payment on the platform, funds transferred to the seller), a seller-managed one with
  **direct charges** (the session and payment on the connected account). docs/charges.md compares them.
  `account_of` says, once for everything, which account a charge type's objects live on.
"""

from __future__ import annotations

from typing import Literal, get_args

AccountProfile = Literal["platform_managed", "seller_managed"]
AccountStatus = Literal["onboarding", "restricted", "active", "disabled", "disconnected"]
ChargeType = Literal["destination", "direct"]

ACCOUNT_PROFILES: tuple[AccountProfile, ...] = get_args(AccountProfile)
ACCOUNT_STATUSES: tuple[AccountStatus, ...] = get_args(AccountStatus)
CHARGE_TYPES: tuple[ChargeType, ...] = get_args(ChargeType)

_CHARGE_TYPES: dict[AccountProfile, ChargeType] = {
    "platform_managed": "destination",
    "seller_managed": "direct",
}

# The connected account's capabilities each charge type needs active (Stripe's "Connect charges" guide):
# a destination charge moves funds to the account with a transfer; a direct charge is a card payment
# made on the account itself.
REQUIRED_CAPABILITIES: dict[ChargeType, tuple[str, ...]] = {
    "destination": ("transfers",),
    "direct": ("card_payments",),
}


def charge_type_for(profile: AccountProfile) -> ChargeType:
    """The charge type a seller of this profile is charged with."""
    return _CHARGE_TYPES[profile]


def account_of(charge_type: ChargeType, connected_account: str) -> str | None:
    """The account an order's Stripe objects (Checkout Session, PaymentIntent, Charge, Refund) live on:
    the seller's connected account for a direct charge, None (the platform) for a destination charge.

    What to pass as `stripe_account` when creating or reading them, and where their events come from.
    """
    return connected_account if charge_type == "direct" else None
