"""Shared request/response building blocks (msgspec).

Text in a request is one of two shapes, each a pattern that the decoder checks (a 400
`validation-error` naming the field) and the OpenAPI document shows:

- `SINGLE_LINE`: no control character at all (Unicode Cc: C0, DEL, C1; NUL among them);
- `MULTI_LINE`: the same, except tab, line feed and carriage return.

Every string field of a request body uses one of the types below (or a stricter pattern of its own);
`marketplace.bodies` refuses a NUL escape anywhere in a JSON body (keys included) before decoding, so a
field declared as a bare `str` still never reaches PostgreSQL with a NUL. The patterns spell out their
character classes (no `\\s`, no `\\w`): Python's `re` and the ECMA regexes of JSON Schema tools agree.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.params import PathParameter, QueryParameter

from connect.accounts import SUPPORTED_COUNTRIES

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

Email = Annotated[str, msgspec.Meta(pattern=rf"^[^@ {_CONTROL}]+@[^@ {_CONTROL}]+\.[^@ {_CONTROL}]+$", max_length=320)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NOT_BLANK_LINE)]
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
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"
"""A page cursor as the API hands them out: unpadded URL-safe base64, at most 200 characters."""
Cursor = Annotated[
    str | None,
    QueryParameter(
        max_length=200,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page; omit for the first page.",
    ),
]
STRIPE_TOKEN = r"^[A-Za-z0-9_.~-]+$"
"""What Stripe's ids, event types and API versions are made of (letters, digits, `_ . ~ -`): no NUL, no
space, nothing a URL path or query has to escape."""
STRIPE_ID_PATTERN = r"^[A-Za-z0-9_.~-]{1,255}$"
"""A Stripe object id as we store it: 1..255 of those characters (Stripe's are shorter)."""
StripeEventId = Annotated[
    str, PathParameter(min_length=1, max_length=255, pattern=STRIPE_ID_PATTERN, description="A Stripe event id.")
]
