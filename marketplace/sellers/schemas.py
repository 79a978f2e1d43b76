"""Request and response bodies for seller routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

from marketplace.schemas import CountryCode, DisplayName, Email

BusinessType = Literal["individual", "company", "non_profit", "government_entity"]
AccountProfileName = Literal["platform_managed", "seller_managed"]


class SellerSignup(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName
    email: Email
    country: CountryCode = "US"
    business_type: BusinessType = "individual"
    # Only honoured when the platform allows sellers to choose (ALLOW_SELLER_ACCOUNT_PROFILE).
    account_profile: AccountProfileName | None = None


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
