"""The problems checkout and order reads answer with; each is one HTTP problem, and none writes anything."""

from __future__ import annotations

from marketplace.lib.problems import Conflict, Problem


class ListingUnavailable(Problem):
    """A line names a listing that does not exist, is inactive, or whose seller cannot take payments."""

    status = 422
    slug = "listing-unavailable"
    title = "Listing not available"


class CartSpansSellers(Problem):
    """The lines belong to more than one seller; one checkout pays one seller (`sellers` names them)."""

    status = 422
    slug = "cart-spans-sellers"
    title = "Cart spans several sellers"


class MixedCurrencies(Problem):
    """The lines are priced in more than one currency."""

    status = 422
    slug = "mixed-currencies"
    title = "Cart mixes currencies"


class AmountNotChargeable(Problem):
    """The cart's total is one Stripe would refuse (over its limit, under its minimum charge)."""

    status = 422
    slug = "amount-not-chargeable"
    title = "Total cannot be charged"


class InsufficientStock(Conflict):
    """A listing has fewer units in stock right now than the line asks for (`lines` says which)."""

    slug = "insufficient-stock"
    title = "Not enough stock"


class CheckoutRefused(Problem):
    """Stripe refused to start this checkout (a definitive error); the order is `failed` with Stripe's code."""

    status = 502
    slug = "checkout-refused"
    title = "Checkout could not start"


class WrongRoleForCheckout(Problem):
    """Only a buyer's token, or no token (a guest giving an email), may check out."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class IdempotencyKeyReused(Problem):
    """The `Idempotency-Key` was used, within its lifetime (24 h), for a checkout of another body (other lines,
    quantities or email); nothing was written. Use a new key for a new checkout."""

    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused with another request"
