"""polyfactory factories for request payloads."""

from __future__ import annotations

import uuid
from typing import Any

from polyfactory.factories.msgspec_factory import MsgspecFactory

from marketplace.buyers.schemas import BuyerSignup
from marketplace.sellers.schemas import SellerSignup


class SellerSignupFactory(MsgspecFactory[SellerSignup]):
    __check_model__ = False

    @classmethod
    def display_name(cls) -> str:
        return cls.__faker__.company()[:200]

    @classmethod
    def email(cls) -> str:
        return f"seller-{uuid.uuid4().hex[:12]}@example.com"

    @classmethod
    def country(cls) -> str:
        return "US"

    @classmethod
    def account_profile(cls) -> None:
        return None


class BuyerSignupFactory(MsgspecFactory[BuyerSignup]):
    __check_model__ = False

    @classmethod
    def display_name(cls) -> str:
        return cls.__faker__.name()[:200]

    @classmethod
    def email(cls) -> str:
        return f"buyer-{uuid.uuid4().hex[:12]}@example.com"


def payload(factory: type[MsgspecFactory[Any]], **overrides: Any) -> dict[str, Any]:
    """A JSON-ready dict built by `factory`."""
    import msgspec

    result: dict[str, Any] = msgspec.to_builtins(factory.build(**overrides))
    return result
