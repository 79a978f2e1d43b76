"""Request and response bodies for buyer routes."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from marketplace.lib.schemas import DisplayName, Email


class BuyerSignup(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName
    email: Email


class BuyerOut(msgspec.Struct):
    id: uuid.UUID
    display_name: str
    email: str
    created_at: datetime


class BuyerSignupResult(msgspec.Struct):
    buyer: BuyerOut
    token: str
