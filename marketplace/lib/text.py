"""Text other people are shown, and email addresses: the one place that says what either may be.

**Shown text** — listing titles and descriptions, seller (shop) and buyer display names: whatever a
storefront, a seller's page or a receipt shows to someone other than its author — must show something,
and must show what it is:

- no bidirectional control: the embeddings and overrides U+202A to U+202E, the isolates U+2066 to U+2069 and the
  marks U+200E, U+200F and U+061C. They make text display in another order than it is written: the title
  `"Shop \\u202egnp.exe"` displays as "Shop exe.png";
- at least one visible character. Not visible: white space (Unicode Z*, and whatever `str.isspace`
  takes), format characters (Cf: zero-width spaces and joiners, the BOM, …), controls (Cc), surrogates,
  unassigned code points, combining marks with nothing to combine with (Mn, Me), and the default-ignorable
  letters that render as nothing (the Hangul fillers) or as a blank (U+2800). A name of three zero-width
  spaces would show as a blank card.

Such characters are fine *among* visible ones (a zero-width joiner inside an emoji sequence). A request
field is checked by `require_shown` (from the request body's `__post_init__`, so the decoder answers 400
`validation-error` naming the field) or, for listings, by `marketplace.listings.service.clean`; both
use `shown_text_problem`.

**Email addresses** are checked as a mail system would, by `email-validator` (no DNS lookups): no quoted
local part, no IP-literal domain, no special-use domain (`.local`, `.onion`, …; `.test` is taken, as a
domain that merely does not exist), ASCII only (Stripe Checkout's `customer_email` and most mail systems
expect it; an international domain is written in its `xn--` form). The stored form is the normalized
one (`normalize_email`: the domain in lowercase); the local part keeps its case, as mail systems may
distinguish it, and "the same guest" still compares addresses case-insensitively. `EMAIL_PATTERN` is
the shape the OpenAPI document states; the validator decides.
"""

from __future__ import annotations

import unicodedata

import email_validator

from marketplace.lib.problems import Problem

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Cn", "Mn", "Me"})
# Letters and symbols that Unicode makes default-ignorable or that every font draws as a blank.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _visible(char: str) -> bool:
    return not (char.isspace() or char in _BLANK_GLYPHS or unicodedata.category(char) in _INVISIBLE_CATEGORIES)


def shown_text_problem(text: str) -> str | None:
    """Why `text` may not be shown to other people (a bidirectional control, nothing visible), or None."""
    bidi = sorted({f"U+{ord(c):04X}" for c in text if c in BIDI_CONTROLS})
    if bidi:
        return f"must not contain bidirectional controls ({', '.join(bidi)}): they reorder what is displayed"
    if not any(_visible(c) for c in text):
        return "must contain a visible character (not only spaces, zero-width or other invisible characters)"
    return None


def _refuse(errors: list[dict[str, str]]) -> Problem:
    # A Problem, not Litestar's ValidationException: msgspec turns a ValueError raised in `__post_init__`
    # into its own error and loses the field's name.
    detail = "; ".join(f"{e['key']}: {e['message']}" for e in errors)
    return Problem(f"The request did not validate ({detail}).", slug="validation-error", errors=errors)


def require_shown(**fields: object) -> None:
    """Raise the 400 `validation-error` naming every field (by its keyword) whose text may not be shown;
    fields that are not strings (unset, None) are skipped."""
    errors = [
        {"key": key, "message": problem, "source": "body"}
        for key, value in fields.items()
        if isinstance(value, str) and (problem := shown_text_problem(value)) is not None
    ]
    if errors:
        raise _refuse(errors)


class InvalidEmail(ValueError):
    """The address is not one a mail system would take; the message says why, in plain words."""


def normalize_email(address: str) -> str:
    """`address` in the form to store (the domain in lowercase), or `InvalidEmail` (see the module doc)."""
    try:
        checked = email_validator.validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            test_environment=True,  # only lets `.test` domains through (no deliverability check is made anyway)
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    normalized: str = checked.normalized
    return normalized


def require_email(key: str, address: str) -> str:
    """The normalized `address`, or the 400 `validation-error` naming `key`."""
    try:
        return normalize_email(address)
    except InvalidEmail as exc:
        raise _refuse([{"key": key, "message": f"not a valid email address: {exc}", "source": "body"}]) from None


def _either_case(word: str) -> str:
    return "".join(f"[{c}{c.upper()}]" for c in word)


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# A DNS label: letters, digits and inner hyphens; two hyphens after two characters only as `xn--`.
_LABEL = r"(?!(?![Xx][Nn])[A-Za-z0-9]{2}--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SPECIAL_USE = "|".join(_either_case(name) for name in ("arpa", "invalid", "local", "localhost", "onion"))
EMAIL_MAX_LENGTH = 254
EMAIL_PATTERN = rf"^(?!.*\.(?:{_SPECIAL_USE})$){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$"
"""The shape of an address we take: an unquoted ASCII local part (dot-separated atoms), a DNS name with a
top-level domain of letters, no special-use domain. `normalize_email` checks the rest (lengths, IDNA)."""
