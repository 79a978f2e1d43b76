"""Request and response bodies for seller routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from connect.currencies import MAXIMUM_AMOUNT, SUPPORTED_CURRENCIES, amount_step
from connect.fees import MAX_BASIS_POINTS
from connect.profiles import AccountProfile, AccountStatus
from marketplace.lib.schemas import CountryCode, DisplayName, Email, LowercaseCurrencyCode
from marketplace.lib.text import require_email, require_shown

BusinessType = Literal["individual", "company", "non_profit", "government_entity"]
AccountProfileName = AccountProfile


class SellerSignup(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName
    email: Email
    country: CountryCode = "US"
    business_type: BusinessType = "individual"
    # Only honoured when the platform allows sellers to choose (ALLOW_SELLER_ACCOUNT_PROFILE).
    account_profile: AccountProfileName | None = None

    def __post_init__(self) -> None:
        # The decoder's 400 names the field; the address is stored normalized (marketplace.lib.text).
        require_shown(display_name=self.display_name)
        self.email = require_email("email", self.email)


class SellerOut(msgspec.Struct):
    id: uuid.UUID
    display_name: str
    email: str
    country: str
    business_type: str
    account_profile: str | None
    created_at: datetime


class SellerSignupResult(msgspec.Struct):
    seller: SellerOut
    token: str


class Requirements(msgspec.Struct):
    currently_due: list[str]
    past_due: list[str]
    eventually_due: list[str]
    pending_verification: list[str]
    disabled_reason: str | None
    current_deadline: int | None


AccountStatusName = AccountStatus


class ConnectedAccountOut(msgspec.Struct):
    account_id: str | None
    profile: str
    status: AccountStatusName
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements: Requirements
    capabilities: dict[str, str]
    dashboard: str | None
    synced_at: datetime | None
    synced_from: str | None
    disconnected_at: datetime | None


class SellerProfile(msgspec.Struct):
    seller: SellerOut
    connected_account: ConnectedAccountOut | None


class LinkOut(msgspec.Struct):
    url: str
    expires_at: datetime | None = None


class AdminSellerOut(msgspec.Struct):
    seller_id: uuid.UUID
    display_name: str
    email: str
    connected_account: ConnectedAccountOut


# Fee policy (connect.fees, docs/fees.md). Amounts in the currency's minor unit; currency keys are
# lowercase codes of connect.currencies.SUPPORTED_CURRENCIES (the decoder refuses any other; the route
# checks the amounts again, and the policy as a whole, and names every problem).
BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=MAX_BASIS_POINTS, description="1 bp = 0.01 %; 10000 = 100 %")]
MinorAmount = Annotated[int, msgspec.Meta(ge=0, le=MAXIMUM_AMOUNT, description="minor units of the currency")]
# What msgspec cannot say of a dict: three-decimal currencies' amounts end in 0 (a multiple of the step).
_STEPPED_AMOUNTS = {
    code: {"type": "integer", "minimum": 0, "maximum": MAXIMUM_AMOUNT, "multipleOf": amount_step(code)}
    for code in sorted(SUPPORTED_CURRENCIES)
    if amount_step(code) > 1
}
PerCurrency = Annotated[
    dict[LowercaseCurrencyCode, MinorAmount],
    msgspec.Meta(
        max_length=len(SUPPORTED_CURRENCIES),
        description="lowercase currency code to minor units (three-decimal currencies: a multiple of 10)",
        extra_json_schema={"properties": _STEPPED_AMOUNTS},
    ),
]


class FeeOverrideIn(msgspec.Struct, forbid_unknown_fields=True):
    """A seller's fee override: each field given replaces the platform's whole field; null or absent
    leaves it to the platform (`{}` is not null: `"maximum": {}` removes every cap)."""

    basis_points: BasisPoints | None = None
    fixed: PerCurrency | None = None
    minimum: PerCurrency | None = None
    maximum: PerCurrency | None = None


class FeeOverrideOut(msgspec.Struct):
    basis_points: int | None
    fixed: dict[str, int] | None
    minimum: dict[str, int] | None
    maximum: dict[str, int] | None


class FeePolicyOut(msgspec.Struct):
    """A complete policy; a currency absent from `maximum` has no cap, from `fixed`/`minimum`: 0."""

    basis_points: int
    fixed: dict[str, int]
    minimum: dict[str, int]
    maximum: dict[str, int]


class SellerFeePolicyOut(msgspec.Struct):
    """The seller's override (null: none) and the policy their charges get (null with `conflict` when
    the stored override no longer fits the platform policy: charges are refused until it is fixed)."""

    seller_id: uuid.UUID
    override: FeeOverrideOut | None
    effective: FeePolicyOut | None
    conflict: str | None = None
