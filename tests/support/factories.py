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


from marketplace.listings.schemas import ListingCreate  # noqa: E402  (appended with the listings area)


class ListingCreateFactory(MsgspecFactory[ListingCreate]):
    """A valid USD listing (set `currency` and `unit_amount` together for other currencies)."""

    __check_model__ = False

    @classmethod
    def title(cls) -> str:
        return cls.__faker__.catch_phrase()[:200]

    @classmethod
    def description(cls) -> str:
        return cls.__faker__.paragraph()[:5000]

    @classmethod
    def unit_amount(cls) -> int:
        return cls.__random__.randint(50, 100_000)

    @classmethod
    def currency(cls) -> str:
        return "usd"

    @classmethod
    def stock(cls) -> int | None:
        return cls.__random__.choice([None, cls.__random__.randint(0, 100)])

    @classmethod
    def active(cls) -> bool:
        return True
