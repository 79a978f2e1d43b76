"""Request and response bodies for buyer routes."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from marketplace.lib.schemas import DisplayName, Email
from marketplace.lib.text import require_email, require_shown


class BuyerSignup(msgspec.Struct, forbid_unknown_fields=True):
    display_name: DisplayName
    email: Email

    def __post_init__(self) -> None:
        # The decoder's 400 names the field; the address is stored normalized (marketplace.lib.text).
        require_shown(display_name=self.display_name)
        self.email = require_email("email", self.email)


class BuyerOut(msgspec.Struct):
    id: uuid.UUID
    display_name: str
    email: str
    created_at: datetime


class BuyerSignupResult(msgspec.Struct):
    buyer: BuyerOut
    token: str
