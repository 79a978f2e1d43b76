"""Request and response bodies for seller routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

from connect.profiles import AccountProfile, AccountStatus
from marketplace.schemas import CountryCode, DisplayName, Email

BusinessType = Literal["individual", "company", "non_profit", "government_entity"]
AccountProfileName = AccountProfile


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
