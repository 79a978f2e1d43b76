"""Currencies as Stripe takes them (docs.stripe.com/currencies): which we sell in, their minor units, and
the amounts Stripe accepts for a charge.

Every amount in this project is an integer in the currency's minor unit, as Stripe's API expects:
cents for USD (two decimals), whole yen for JPY (zero-decimal), fils for KWD (three decimals). Stripe's
rules applied here:

- **Zero-decimal** currencies (`ZERO_DECIMAL`): the amount is in the major unit (`1000` JPY is ¥1,000).
- **Three-decimal** currencies (`THREE_DECIMAL`): the amount is in thousandths, and Stripe requires it
  to end in 0 (to be divisible by 10): `amount_step` is 10 for them, and every amount we send
  (prices, totals, application fees) is a multiple of it.
- **Maximum**: an amount has at most eight digits (`MAXIMUM_AMOUNT` = 99,999,999 minor units).
- **Minimum charge**: Stripe's table for the currencies it lists (USD 0.50, GBP 0.30, JPY ¥50, …); for
  the three-decimal ones, which it does not list, the equivalent of about USD 0.50 rounded up, which
  is our own conservative floor (Stripe refuses charges worth less than USD 0.50 after conversion).

A currency outside `SUPPORTED_CURRENCIES` is refused: it is the set we have checked the rules of.
"""

from __future__ import annotations

from collections.abc import Mapping

ZERO_DECIMAL: frozenset[str] = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
THREE_DECIMAL: frozenset[str] = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])

MAXIMUM_AMOUNT = 99_999_999

# Minimum charge per currency, in minor units (Stripe's table; three-decimal ones: our floor, see above).
MINIMUM_CHARGE: Mapping[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "krw": 700,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
    "bhd": 200,
    "jod": 400,
    "kwd": 200,
    "omr": 200,
    "tnd": 2000,
}
SUPPORTED_CURRENCIES: frozenset[str] = frozenset(MINIMUM_CHARGE)


def normalize(currency: str) -> str:
    """Stripe wants lowercase ISO 4217 codes."""
    return currency.strip().lower()


def is_supported(currency: str) -> bool:
    return currency in SUPPORTED_CURRENCIES


def decimals(currency: str) -> int:
    """Digits after the decimal point of the currency's major unit, as Stripe counts them."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def amount_step(currency: str) -> int:
    """Every amount of this currency must be a multiple of this (10 for three-decimal currencies)."""
    return 10 if currency in THREE_DECIMAL else 1


def minimum_charge(currency: str) -> int:
    return MINIMUM_CHARGE[currency]


def charge_amount_problem(amount: int, currency: str) -> str | None:
    """Why Stripe would refuse to charge `amount` (minor units) of `currency`; None when it is fine.

    Zero is fine: a fully discounted order is a zero-total session, charged nothing.
    """
    if currency not in SUPPORTED_CURRENCIES:
        return f"{currency!r} is not a currency this marketplace sells in"
    if amount < 0:
        return "the amount is negative"
    if amount > MAXIMUM_AMOUNT:
        return f"{format_amount(amount, currency)} is over Stripe's limit of {format_amount(MAXIMUM_AMOUNT, currency)}"
    if amount % amount_step(currency):
        return f"{currency.upper()} amounts must be multiples of {amount_step(currency)} minor units"
    if 0 < amount < MINIMUM_CHARGE[currency]:
        return (
            f"{format_amount(amount, currency)} is under the minimum charge of "
            f"{format_amount(MINIMUM_CHARGE[currency], currency)}"
        )
    return None


def format_amount(amount: int, currency: str) -> str:
    """`12.50 USD`, `1000 JPY`, `1.250 KWD`: the amount in the major unit with the currency's decimals."""
    places = decimals(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**places)
    text = f"{whole:,}" + (f".{fraction:0{places}d}" if places else "")
    return f"{sign}{text} {currency.upper()}"
