"""Shared request/response building blocks (msgspec).

Text in a request is one of two shapes, each a pattern that the decoder checks (a 400
`validation-error` naming the field) and the OpenAPI document shows:

- `SINGLE_LINE`: no control character at all (Unicode Cc: C0, DEL, C1; NUL among them);
- `MULTI_LINE`: the same, except tab, line feed and carriage return.

Every string field of a request body uses one of the types below (or a stricter pattern of its own);
`marketplace.lib.bodies` refuses a NUL escape anywhere in a JSON body (keys included) before decoding, so a
field declared as a bare `str` still never reaches PostgreSQL with a NUL. The patterns spell out their
character classes (no `\\s`, no `\\w`): Python's `re` and the ECMA regexes of JSON Schema tools agree.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Generic, Literal, TypeVar

import msgspec
from litestar.params import PathParameter, QueryParameter

from connect.accounts import SUPPORTED_COUNTRIES
from connect.currencies import SUPPORTED_CURRENCIES
from marketplace.lib.problems import InvalidCursor
from marketplace.lib.text import EMAIL_MAX_LENGTH, EMAIL_PATTERN

_CONTROL = r"\x00-\x1f\x7f-\x9f"
_CONTROL_BUT_LINES = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# What `str.strip()` removes that is not a control character already.
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

SINGLE_LINE = rf"^[^{_CONTROL}]*$"
MULTI_LINE = rf"^[^{_CONTROL_BUT_LINES}]*$"
NOT_BLANK_LINE = rf"^[^{_CONTROL}]*[^{_CONTROL}{_SPACE}][^{_CONTROL}]*$"
"""One line with at least one character that is not a space (so it is not blank once stripped)."""

Line = Annotated[str, msgspec.Meta(pattern=SINGLE_LINE)]
Text = Annotated[str, msgspec.Meta(pattern=MULTI_LINE)]

SHOWN = (
    "Shown to other people: no bidirectional controls (U+202A to U+202E, U+2066 to U+2069, U+200E, U+200F, U+061C) "
    "and at least one visible character (400 `validation-error` otherwise)."
)
"""What the OpenAPI document says of a field `marketplace.lib.text.require_shown` checks."""
Email = Annotated[
    str,
    msgspec.Meta(
        pattern=EMAIL_PATTERN,
        max_length=EMAIL_MAX_LENGTH,
        description=(
            "An email address as a mail system takes it: ASCII, no quoted local part, no IP-literal domain "
            "(an international domain in its `xn--` form). Stored with its domain in lowercase."
        ),
    ),
]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NOT_BLANK_LINE, description=SHOWN)]
CountryCode = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^({'|'.join(sorted(SUPPORTED_COUNTRIES))})$",
        description="ISO 3166-1 alpha-2, a country Stripe Connect onboards sellers in.",
    ),
]

# Parameters. Every integer parameter has both bounds where it is declared (an unbounded one reaches
# PostgreSQL as an out-of-range bigint); every free-form string parameter has a length and a pattern.
MAX_OFFSET = 1_000_000
Offset = Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description=f"Rows to skip (at most {MAX_OFFSET}).")]
STRIPE_TOKEN = r"^[A-Za-z0-9_.~-]+$"
"""What Stripe's ids, event types and API versions are made of (letters, digits, `_ . ~ -`): no NUL, no
space, nothing a URL path or query has to escape."""
_STRIPE_ID = r"[A-Za-z0-9_.~-]{1,255}"
STRIPE_ID_PATTERN = rf"^{_STRIPE_ID}$"
"""A Stripe object id as we store it: 1..255 of those characters (Stripe's are shorter)."""
StripeEventId = Annotated[
    str, PathParameter(min_length=1, max_length=255, pattern=STRIPE_ID_PATTERN, description="A Stripe event id.")
]


# Currencies. A currency in a request is one we sell in (connect.currencies), as an `enum` the decoder
# checks and the OpenAPI document lists. Stripe's form is lowercase; ISO 4217's (uppercase) is taken too,
# and stored lowercase. Fee policies name currencies in Stripe's form only.
_CURRENCIES = sorted(SUPPORTED_CURRENCIES)
if TYPE_CHECKING:  # a Literal built from the set: mypy sees the `str` it decodes to
    CurrencyCode = str
    LowercaseCurrencyCode = str
else:
    CurrencyCode = Literal[(*_CURRENCIES, *(code.upper() for code in _CURRENCIES))]
    LowercaseCurrencyCode = Literal[tuple(_CURRENCIES)]


# Page cursors. A cursor names the last row of a page by its keyset position: the row's time, in
# microseconds since the Unix epoch (UTC; PostgreSQL's own precision, so the position is exact), a dot,
# and the row's key. Its format is a pattern the OpenAPI document states and the decoder checks, with
# nothing left over: any string the pattern matches decodes to a position, so a client (or a fuzzer)
# that sends a schema-valid cursor gets a page, never an error. Clients still treat cursors as opaque.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MICROS_DIGITS = 16  # 16 digits of microseconds reach the year 2286; Python's datetime goes to 9999
Key = TypeVar("Key")


@dataclass(frozen=True)
class CursorFormat(Generic[Key]):
    """`<microseconds>.<key>`: the one definition of a cursor, for the schema and for the codec."""

    key_pattern: str  # the key's own pattern, unanchored, with its length bounds
    key_length: tuple[int, int]
    parse_key: Callable[[str], Key]
    format_key: Callable[[Key], str]

    @property
    def pattern(self) -> str:
        return rf"^[0-9]{{1,{_MICROS_DIGITS}}}\.{self.key_pattern}$"

    @property
    def min_length(self) -> int:
        return 1 + 1 + self.key_length[0]

    @property
    def max_length(self) -> int:
        return _MICROS_DIGITS + 1 + self.key_length[1]

    def encode(self, at: datetime, key: Key) -> str:
        """The cursor of a row at `at` (time-zone aware) with `key`."""
        return f"{(at - _EPOCH) // _MICROSECOND}.{self.format_key(key)}"

    def decode(self, cursor: str) -> tuple[datetime, Key] | None:
        """(time, key) of a cursor, or None when `cursor` does not have the format (the routes' 400)."""
        # `fullmatch`, not the parameter's `re.search`, whose `$` also matches before a final line feed.
        if not re.fullmatch(self.pattern, cursor):
            return None
        micros, _, key = cursor.partition(".")
        return _EPOCH + int(micros) * _MICROSECOND, self.parse_key(key)

    def position(self, cursor: str) -> tuple[datetime, Key]:
        """(time, key) of a cursor a page route was given; `InvalidCursor` (400) when it has not the format."""
        if (position := self.decode(cursor)) is None:
            raise InvalidCursor("The cursor is not one this API returned.")
        return position

    def parameter(self) -> QueryParameter:
        """The `cursor` query parameter of a page route, declared with this format."""
        return QueryParameter(
            min_length=self.min_length,
            max_length=self.max_length,
            pattern=self.pattern,
            description=(
                "`next_cursor` of the previous page; omit for the first page. Its format: microseconds "
                "since the Unix epoch, a dot, and the last row's key."
            ),
        )


ROW_CURSOR: CursorFormat[uuid.UUID] = CursorFormat(
    key_pattern="[0-9a-f]{32}",
    key_length=(32, 32),
    parse_key=lambda key: uuid.UUID(hex=key),
    format_key=lambda key: key.hex,
)
"""The cursor of a page of rows keyed by (time, UUID): listings, orders, outbox messages."""
EVENT_CURSOR: CursorFormat[str] = CursorFormat(
    key_pattern=_STRIPE_ID, key_length=(1, 255), parse_key=str, format_key=str
)
"""The cursor of a page of stored Stripe events, keyed by (received_at, Stripe event id)."""
Cursor = Annotated[str | None, ROW_CURSOR.parameter()]
EventCursor = Annotated[str | None, EVENT_CURSOR.parameter()]
