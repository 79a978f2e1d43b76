"""The platform fee policy: what the platform keeps of a charge, as pure integer arithmetic.

A `FeePolicy` is basis points of the amount plus a fixed amount per currency, held between an optional
minimum and maximum per currency. A seller may have a `FeeOverride`; `effective_policy` combines the two.
`application_fee` turns a policy into the `application_fee_amount` of one charge (docs/fees.md).

Every amount is an integer in the currency's minor unit (`connect.currencies`); no float is ever used.
Currency keys are lowercase codes of `SUPPORTED_CURRENCIES`. For three-decimal currencies (KWD, …) every
amount Stripe takes must be a multiple of 10 (`amount_step`): the fixed, minimum and maximum amounts of
such a currency must be multiples of it, and so is every fee computed.

Nothing here does I/O; `marketplace.sellers.fees` stores overrides and reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeGuard

from connect.currencies import MAXIMUM_AMOUNT, SUPPORTED_CURRENCIES, amount_step, normalize

MAX_BASIS_POINTS = 10_000  # 100 %
FIELDS = ("basis_points", "fixed", "minimum", "maximum")

_AMOUNT = re.compile(r"[0-9]+")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _per_currency_problems(key: str, values: object) -> list[tuple[str, str]]:
    if not isinstance(values, Mapping):
        return [(key, "must be a mapping of currency code to an amount in minor units")]
    problems: list[tuple[str, str]] = []
    for currency, amount in values.items():
        if not isinstance(currency, str) or currency not in SUPPORTED_CURRENCIES:
            lowercase = isinstance(currency, str) and currency.lower() in SUPPORTED_CURRENCIES
            hint = " (currency codes are lowercase, e.g. 'usd')" if lowercase else ""
            problems.append((key, f"{currency!r} is not a supported currency{hint}"))
            continue
        if not _is_int(amount):
            problems.append((key, f"{currency}: must be an integer amount in minor units, got {amount!r}"))
            continue
        if amount < 0:
            problems.append((key, f"{currency}: must not be negative, got {amount}"))
        elif amount > MAXIMUM_AMOUNT:
            problems.append((key, f"{currency}: must be at most {MAXIMUM_AMOUNT} (Stripe's limit), got {amount}"))
        elif amount % amount_step(currency):
            problems.append(
                (
                    key,
                    f"{currency}: {amount} is not a multiple of {amount_step(currency)} "
                    f"({currency.upper()} amounts must end in 0)",
                )
            )
    return problems


def fee_problems(
    *,
    basis_points: object = None,
    fixed: object = None,
    minimum: object = None,
    maximum: object = None,
) -> list[tuple[str, str]]:
    """Everything wrong with these policy fields, as (field name, message) pairs; empty when valid.

    A field given as None is not checked (an override that leaves it to the platform). `minimum` must
    not exceed `maximum` for a currency where both are given.
    """
    problems: list[tuple[str, str]] = []
    if basis_points is not None:
        if not _is_int(basis_points):
            problems.append(("basis_points", f"must be an integer, got {basis_points!r}"))
        elif not 0 <= basis_points <= MAX_BASIS_POINTS:
            problems.append(("basis_points", f"must be between 0 and {MAX_BASIS_POINTS} (100%), got {basis_points}"))
    for name, values in (("fixed", fixed), ("minimum", minimum), ("maximum", maximum)):
        if values is not None:
            problems += _per_currency_problems(name, values)
    if isinstance(minimum, Mapping) and isinstance(maximum, Mapping):
        for currency, low in minimum.items():
            high = maximum.get(currency)
            if _is_int(low) and _is_int(high) and low > high:
                problems.append(("minimum", f"{currency}: the minimum {low} is above the maximum {high}"))
    return problems


def _raise_for(problems: list[tuple[str, str]], what: str) -> None:
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(f"{key}: {message}" for key, message in problems))


def _frozen(values: Mapping[str, int] | None) -> Mapping[str, int] | None:
    return None if values is None else MappingProxyType(dict(values))


def _hashable(values: Mapping[str, int] | None) -> tuple[tuple[str, int], ...] | None:
    return None if values is None else tuple(sorted(values.items()))


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """The platform fee: `basis_points` of the amount (0..10000) plus `fixed[currency]`, at least
    `minimum[currency]`, at most `maximum[currency]` (a currency absent from `maximum` has no cap; absent
    from `fixed` or `minimum`: 0). Amounts in minor units; the mappings are copied and read-only."""

    basis_points: int
    fixed: Mapping[str, int] = field(default_factory=dict)
    minimum: Mapping[str, int] = field(default_factory=dict)
    maximum: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _raise_for(
            fee_problems(basis_points=self.basis_points, fixed=self.fixed, minimum=self.minimum, maximum=self.maximum),
            "fee policy",
        )
        for name in ("fixed", "minimum", "maximum"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def __hash__(self) -> int:
        return hash((self.basis_points, _hashable(self.fixed), _hashable(self.minimum), _hashable(self.maximum)))


@dataclass(frozen=True, slots=True)
class FeeOverride:
    """A seller's exceptions to the platform policy; None leaves a field to the platform.

    A field that is set replaces the platform's whole field (see `effective_policy`): `fixed={"usd": 0}`
    means no fixed fee in USD *and* none in any other currency; `maximum={}` removes every cap.
    """

    basis_points: int | None = None
    fixed: Mapping[str, int] | None = None
    minimum: Mapping[str, int] | None = None
    maximum: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        _raise_for(
            fee_problems(basis_points=self.basis_points, fixed=self.fixed, minimum=self.minimum, maximum=self.maximum),
            "fee override",
        )
        for name in ("fixed", "minimum", "maximum"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def __hash__(self) -> int:
        return hash((self.basis_points, _hashable(self.fixed), _hashable(self.minimum), _hashable(self.maximum)))

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in FIELDS)


def effective_policy(platform: FeePolicy, override: FeeOverride | None) -> FeePolicy:
    """The policy that applies to a seller: the platform's, with each field the override sets replacing
    the platform's whole field (not merged per currency). Precedence, field by field: override if set
    (not None), else platform. `basis_points`, `fixed`, `minimum` and `maximum` are independent fields.

    Raises ValueError when the combination is not a valid policy (an override minimum above the
    platform's maximum for a currency, or the reverse): callers check this before storing an override.
    """
    if override is None:
        return platform
    return FeePolicy(
        basis_points=platform.basis_points if override.basis_points is None else override.basis_points,
        fixed=platform.fixed if override.fixed is None else override.fixed,
        minimum=platform.minimum if override.minimum is None else override.minimum,
        maximum=platform.maximum if override.maximum is None else override.maximum,
    )


def application_fee(amount: int, currency: str, policy: FeePolicy) -> int:
    """The application fee, in minor units of `currency`, for a charge of `amount` minor units.

    The rules, in the order applied:

    1. A zero amount has a zero fee (a zero-total session has no PaymentIntent, so no fee).
    2. percentage = (amount * basis_points + 5000) // 10000: the exact share rounded half up, to the
       nearest minor unit, with integers only (1000 bps of 5 cents = 0.5 cent → 1; of 4 cents → 0).
    3. fee = percentage + fixed[currency] (0 for a currency `fixed` does not name).
    4. fee = max(fee, minimum[currency]) (0 when not named).
    5. fee = min(fee, maximum[currency]) when `maximum` names the currency (else no cap).
    6. fee = min(fee, amount): never more than the charge, even when the minimum is above it
       (a charge smaller than the minimum fee is kept whole by the platform).
    7. fee = max(fee, 0): never negative.
    8. Last, rounded DOWN to a multiple of `amount_step(currency)` (10 for three-decimal currencies,
       whose amounts Stripe requires to end in 0; 1 otherwise, a no-op). Rounding down, and last, keeps
       steps 5 and 6: the result is never above the maximum nor the amount. The policy's own amounts
       for such a currency are multiples of the step, so a minimum survives the rounding whenever the
       amount reaches it.

    Monotonic: for a <= b, fee(a) <= fee(b). Each step is a non-decreasing function of the previous
    value (and, for step 6, of the amount, which also grows), and a composition of non-decreasing
    functions is non-decreasing; step 1 gives 0, the least value. This is why the amount cap (6) comes
    after the minimum (4) and the step rounding comes after every bound and rounds down: raising a
    capped or rounded value back up to the minimum afterwards could exceed the amount, and rounding to
    the nearest step after the cap could push the fee above the amount or the maximum.
    """
    if currency not in SUPPORTED_CURRENCIES:
        raise ValueError(f"{currency!r} is not a supported currency")
    if not _is_int(amount) or amount < 0:
        raise ValueError(f"amount must be a non-negative integer in minor units, got {amount!r}")
    if amount == 0:
        return 0
    fee = (amount * policy.basis_points + 5_000) // 10_000
    fee += policy.fixed.get(currency, 0)
    fee = max(fee, policy.minimum.get(currency, 0))
    cap = policy.maximum.get(currency)
    if cap is not None:
        fee = min(fee, cap)
    fee = max(min(fee, amount), 0)
    step = amount_step(currency)
    return fee - fee % step


def parse_per_currency(raw: str, name: str) -> dict[str, int]:
    """Parse `"usd:30,eur:25,jpy:40"` into `{"usd": 30, "eur": 25, "jpy": 40}` (minor units).

    An empty (or blank) string is `{}`. Spaces around entries and codes are ignored and codes are
    lowercased. Raises ValueError naming `name` for an entry that is not `code:digits`, a negative or
    non-integer amount, an unknown currency or a currency given twice.
    """
    result: dict[str, int] = {}
    if not raw.strip():
        return result
    for entry in raw.split(","):
        code, sep, value = entry.partition(":")
        code, value = normalize(code), value.strip()
        if not sep or not code:
            raise ValueError(f"{name}: {entry.strip()!r} is not a currency:amount entry (e.g. usd:30)")
        if code not in SUPPORTED_CURRENCIES:
            raise ValueError(f"{name}: {code!r} is not a supported currency")
        if code in result:
            raise ValueError(f"{name}: {code} is given twice")
        if value.startswith("-") and _AMOUNT.fullmatch(value[1:]):
            raise ValueError(f"{name}: {code}: the amount must not be negative, got {value}")
        if not _AMOUNT.fullmatch(value):
            raise ValueError(f"{name}: {code}: {value!r} is not a whole number of minor units")
        result[code] = int(value)
    return result
