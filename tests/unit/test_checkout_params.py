"""The pure parts of checkout: session parameters per charge type, amounts Stripe would refuse, and
the checkout settings."""

from __future__ import annotations

import pytest

from connect.checkout import CHECKOUT_SESSION_ID, SessionLine, SessionRequest, session_params
from connect.currencies import charge_amount_problem, format_amount
from connect.profiles import CHARGE_TYPES, account_of
from connect.refunds import RefundRequest, refund_params
from marketplace.lib.settings import SettingsError, load_settings
from tests.unit.test_settings import GOOD


def request(charge_type: str, *, fee: int = 250, on_behalf_of: bool = False) -> SessionRequest:
    return SessionRequest(
        order_id="ord-1",
        charge_type=charge_type,  # type: ignore[arg-type]
        connected_account="acct_seller",
        currency="usd",
        lines=[SessionLine("Mug", 1250, 2, "lst-1")],
        application_fee=fee,
        expires_at=1_800_000_000,
        success_url=f"https://shop.example/s?order_id=ord-1&session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://shop.example/c?order_id=ord-1",
        customer_email="b@example.com",
        allow_promotion_codes=False,
        on_behalf_of=on_behalf_of,
    )


def test_a_destination_charge_is_made_on_the_platform_and_transfers_to_the_seller() -> None:
    params, account = session_params(request("destination"))
    assert account is None
    assert params["payment_intent_data"] == {
        "metadata": {"order_id": "ord-1"},
        "application_fee_amount": 250,
        "transfer_data": {"destination": "acct_seller"},
    }
    assert params["metadata"] == {"order_id": "ord-1"}
    assert params["client_reference_id"] == "ord-1"
    assert params["line_items"] == [
        {
            "quantity": 2,
            "price_data": {
                "currency": "usd",
                "unit_amount": 1250,
                "product_data": {"name": "Mug", "metadata": {"listing_id": "lst-1"}},
            },
        }
    ]
    assert "allow_promotion_codes" not in params
    with_obo, _ = session_params(request("destination", on_behalf_of=True))
    assert with_obo["payment_intent_data"]["on_behalf_of"] == "acct_seller"


def test_a_direct_charge_is_made_on_the_connected_account_with_the_fee() -> None:
    params, account = session_params(request("direct"))
    assert account == "acct_seller"
    assert params["payment_intent_data"] == {"metadata": {"order_id": "ord-1"}, "application_fee_amount": 250}
    assert "{CHECKOUT_SESSION_ID}" in params["success_url"]


def test_an_orders_stripe_objects_live_on_the_seller_for_a_direct_charge_and_on_the_platform_otherwise() -> None:
    assert account_of("direct", "acct_seller") == "acct_seller"
    assert account_of("destination", "acct_seller") is None
    # Creating the session and the refund goes where the one rule says, for every charge type.
    for charge_type in CHARGE_TYPES:
        refund = RefundRequest("ref-1", "ord-1", charge_type, "acct_seller", "pi_1", 2500, "oversold")
        assert session_params(request(charge_type))[1] == account_of(charge_type, "acct_seller")
        assert refund_params(refund)[1] == account_of(charge_type, "acct_seller")


def test_a_zero_fee_is_not_sent() -> None:
    params, _ = session_params(request("direct", fee=0))
    assert "application_fee_amount" not in params["payment_intent_data"]


@pytest.mark.parametrize(
    ("amount", "currency", "refused"),
    [
        (50, "usd", False),
        (49, "usd", True),  # under the minimum charge
        (0, "usd", False),  # a fully discounted order charges nothing
        (99_999_999, "jpy", False),
        (100_000_000, "usd", True),  # over eight digits
        (1005, "kwd", True),  # three decimals must end in 0
        (1010, "kwd", False),
        (49, "jpy", True),
        (100, "xxx", True),
    ],
)
def test_amounts_stripe_would_refuse(amount: int, currency: str, refused: bool) -> None:
    assert (charge_amount_problem(amount, currency) is not None) is refused


def test_amounts_are_shown_with_their_currencys_decimals() -> None:
    assert format_amount(1250, "usd") == "12.50 USD"
    assert format_amount(1000, "jpy") == "1,000 JPY"
    assert format_amount(1250, "kwd") == "1.250 KWD"


def test_checkout_urls_must_be_on_an_allowed_origin() -> None:
    with pytest.raises(SettingsError, match="CHECKOUT_SUCCESS_URL"):
        load_settings({**GOOD, "CHECKOUT_SUCCESS_URL": "https://evil.example/success"})
    with pytest.raises(SettingsError, match="CHECKOUT_CANCEL_URL"):
        load_settings({**GOOD, "CHECKOUT_CANCEL_URL": "http://127.0.0.1:8000/cancel?x=1"})
    allowed = load_settings(
        {**GOOD, "ALLOWED_REDIRECT_ORIGINS": "https://shop.example", "CHECKOUT_SUCCESS_URL": "https://shop.example/ok"}
    )
    assert allowed.checkout_success_url == "https://shop.example/ok"


@pytest.mark.parametrize("minutes", ["29", "30", "1441", "soon"])
def test_checkout_expiry_stays_within_stripes_bounds(minutes: str) -> None:
    """30 is Stripe's minimum from the session's creation, which comes after the order fixes expires_at:
    a session asked for at exactly 30 minutes would arrive under it and be refused."""
    with pytest.raises(SettingsError, match="CHECKOUT_EXPIRES_MINUTES"):
        load_settings({**GOOD, "CHECKOUT_EXPIRES_MINUTES": minutes})
    assert load_settings({**GOOD, "CHECKOUT_EXPIRES_MINUTES": "31"}).checkout_expires_minutes == 31


def test_a_guests_identity_is_their_key_and_without_one_never_another_checkouts() -> None:
    from marketplace.orders.checkout import Buyer

    keyless = Buyer(None, "Guest@Example.com")
    assert keyless.identity == keyless.identity  # one checkout, one identity, however often it is read
    assert keyless.identity != Buyer(None, "guest@example.com").identity  # an email alone finds nothing
    keyed = Buyer(None, "Guest@Example.com", "attempt-1")
    assert keyed.identity == Buyer(None, "guest@example.com", "attempt-1").identity
    assert keyed.identity != Buyer(None, "guest@example.com", "attempt-2").identity
    assert "attempt-1" not in keyed.identity  # the key is kept only as its hash
