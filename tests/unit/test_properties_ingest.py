"""Properties of the pure rules of webhook ingest: the signature, the declared size, what jsonb can store.

Signatures are computed here from Stripe's documented scheme (HMAC-SHA256 over "{t}.{body}", hex, in
`v1=` entries of `Stripe-Signature`), not with the SDK's helper, so the SDK is checked too. Headers
reach `verify_signature` decoded as latin-1 (webhooks.routes), so "one byte" is one latin-1 character.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketplace.lib.settings import Secret
from webhooks.ingest import (
    BadSignature,
    DeliveryTooLarge,
    InvalidDelivery,
    check_size,
    jsonb_safe,
    verify_signature,
)

PROPERTY = settings(max_examples=100, deadline=None, database=None)

# How much a "fresh" timestamp may age while a test runs; tolerances in the fresh tests exceed it.
SLACK_SECONDS = 60
MAX_TOLERANCE = 7 * 86400

# ---- signatures ------------------------------------------------------------------------------------------


def sign(body: str, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def header(timestamp: int | str, *signatures: str, scheme: str = "v1") -> str:
    return ",".join([f"t={timestamp}", *(f"{scheme}={s}" for s in signatures)])


def secrets_of(values: list[str]) -> tuple[Secret, ...]:
    return tuple(Secret(v) for v in values)


bodies = st.text(max_size=120)
# Settings only accept secrets starting with whsec_; what follows is anything.
secret_values = st.text(max_size=12).map(lambda s: "whsec_" + s)
secret_lists = st.lists(secret_values, min_size=1, max_size=4, unique=True)
fresh_tolerances = st.integers(min_value=SLACK_SECONDS + 1, max_value=MAX_TOLERANCE)
tolerances = st.integers(min_value=1, max_value=MAX_TOLERANCE)  # settings: WEBHOOK_TOLERANCE_SECONDS >= 1
hex_signatures = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
latin1 = st.characters(min_codepoint=0, max_codepoint=255)
ascii_chars = st.characters(min_codepoint=0, max_codepoint=127)


def fresh_timestamp(data: st.DataObject, tolerance: int) -> int:
    """A timestamp inside the tolerance, with room for the test's own run time."""
    age = data.draw(st.integers(min_value=0, max_value=tolerance - SLACK_SECONDS), label="age")
    return int(time.time()) - age


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=fresh_tolerances, data=st.data())
def test_a_header_signed_with_any_configured_secret_verifies(
    body: str, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    secret = data.draw(st.sampled_from(secrets), label="signing secret")
    timestamp = fresh_timestamp(data, tolerance)
    verify_signature(body, header(timestamp, sign(body, secret, timestamp)), secrets_of(secrets), tolerance)


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=fresh_tolerances, data=st.data())
def test_rotation_any_one_matching_v1_entry_among_several_is_enough(
    body: str, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    timestamp = fresh_timestamp(data, tolerance)
    others = data.draw(st.lists(secret_values.filter(lambda s: s not in secrets), max_size=3), label="old secrets")
    decoys = [sign(body, other, timestamp) for other in others]
    decoys += data.draw(st.lists(hex_signatures, max_size=3), label="random signatures")
    valid = sign(body, data.draw(st.sampled_from(secrets), label="signing secret"), timestamp)
    entries = data.draw(st.permutations([*decoys, valid]), label="entry order")
    verify_signature(body, header(timestamp, *entries), secrets_of(secrets), tolerance)
    # The same entries without the matching one do not verify.
    with pytest.raises(BadSignature):
        verify_signature(body, header(timestamp, *decoys), secrets_of(secrets), tolerance)


@PROPERTY
@given(
    body=st.text(min_size=1, max_size=120).map(str.encode),
    secrets=secret_lists,
    tolerance=fresh_tolerances,
    data=st.data(),
)
def test_changing_one_byte_of_the_body_refuses(
    body: bytes, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    timestamp = fresh_timestamp(data, tolerance)
    signed = header(timestamp, sign(body.decode(), secrets[0], timestamp))
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="byte index")
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[at]), label="new byte")
    changed = body[:at] + bytes([byte]) + body[at + 1 :]
    try:
        text = changed.decode()
    except UnicodeDecodeError:
        return  # refused before the signature is looked at (webhooks.ingest: "not UTF-8 JSON")
    with pytest.raises(BadSignature):
        verify_signature(text, signed, secrets_of(secrets), tolerance)


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=fresh_tolerances, data=st.data())
def test_changing_one_byte_of_the_timestamp_refuses(
    body: str, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    timestamp = fresh_timestamp(data, tolerance)
    signature = sign(body, secrets[0], timestamp)
    digits = str(timestamp)
    at = data.draw(st.integers(min_value=0, max_value=len(digits) - 1), label="index")
    char = data.draw(latin1.filter(lambda c: c != digits[at]), label="new char")
    changed = digits[:at] + char + digits[at + 1 :]
    with pytest.raises(BadSignature):
        verify_signature(body, header(changed, signature), secrets_of(secrets), tolerance)


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=fresh_tolerances, data=st.data())
def test_changing_one_ascii_byte_of_the_signature_refuses(
    body: str, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    timestamp = fresh_timestamp(data, tolerance)
    signature = sign(body, secrets[0], timestamp)
    at = data.draw(st.integers(min_value=0, max_value=len(signature) - 1), label="index")
    char = data.draw(ascii_chars.filter(lambda c: c != signature[at]), label="new char")
    changed = signature[:at] + char + signature[at + 1 :]
    with pytest.raises(BadSignature):
        verify_signature(body, header(timestamp, changed), secrets_of(secrets), tolerance)


@PROPERTY
@example(body="{}", entry="\xff", timestamp=1)
@given(
    body=bodies,
    entry=st.text(alphabet=latin1, max_size=70).filter(lambda s: not s.isascii()),
    timestamp=st.integers(min_value=0, max_value=2**40),
)
def test_a_non_ascii_byte_in_a_signature_entry_is_refused_like_any_bad_signature(
    body: str, entry: str, timestamp: int
) -> None:
    """An obs-text byte in the header (the route decodes it as latin-1) is a bad signature, not a crash.

    The route maps only `InvalidDelivery` to 400; anything else escaping is a 500 that anyone can cause.
    """
    with pytest.raises(BadSignature):
        verify_signature(body, header(timestamp, entry), secrets_of(["whsec_x"]), 300)


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=tolerances, data=st.data())
def test_a_timestamp_older_than_the_tolerance_refuses(
    body: str, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    late_by = data.draw(st.integers(min_value=1, max_value=10 * 365 * 86400), label="seconds beyond tolerance")
    timestamp = int(time.time()) - tolerance - late_by
    signed = header(timestamp, sign(body, secrets[0], timestamp))
    with pytest.raises(BadSignature):
        verify_signature(body, signed, secrets_of(secrets), tolerance)


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=fresh_tolerances, data=st.data())
def test_a_secret_that_is_not_configured_refuses(
    body: str, secrets: list[str], tolerance: int, data: st.DataObject
) -> None:
    unknown = data.draw(secret_values.filter(lambda s: s not in secrets), label="unknown secret")
    timestamp = fresh_timestamp(data, tolerance)
    with pytest.raises(BadSignature):
        verify_signature(body, header(timestamp, sign(body, unknown, timestamp)), secrets_of(secrets), tolerance)


@PROPERTY
@given(body=bodies, secret=secret_values, tolerance=fresh_tolerances, data=st.data())
def test_a_valid_signature_under_another_scheme_refuses(
    body: str, secret: str, tolerance: int, data: st.DataObject
) -> None:
    timestamp = fresh_timestamp(data, tolerance)
    scheme = data.draw(st.sampled_from(["v0", "V1", "v2", "v1 ", " v1", "s1"]), label="scheme")
    signed = header(timestamp, sign(body, secret, timestamp), scheme=scheme)
    with pytest.raises(BadSignature):
        verify_signature(body, signed, secrets_of([secret]), tolerance)


@PROPERTY
@given(body=bodies, secrets=secret_lists, tolerance=tolerances, missing=st.sampled_from([None, ""]))
def test_a_missing_header_refuses(body: str, secrets: list[str], tolerance: int, missing: str | None) -> None:
    with pytest.raises(BadSignature) as refused:
        verify_signature(body, missing, secrets_of(secrets), tolerance)
    assert refused.value.status_code == 400
    assert refused.value.outcome == "bad_signature"


@PROPERTY
@given(body=bodies, secret=secret_values, tolerance=fresh_tolerances, data=st.data())
def test_no_configured_secret_refuses_even_a_well_signed_header(
    body: str, secret: str, tolerance: int, data: st.DataObject
) -> None:
    timestamp = fresh_timestamp(data, tolerance)
    with pytest.raises(BadSignature):
        verify_signature(body, header(timestamp, sign(body, secret, timestamp)), (), tolerance)


printable = st.text(alphabet=string.printable, max_size=40)
garbled_entries = st.one_of(
    printable,
    st.builds("t={}".format, st.one_of(printable, st.integers())),
    st.builds("v1={}".format, st.one_of(printable, hex_signatures)),
    st.sampled_from(["t", "v1", "t=", "v1=", "=", ",", "t==", "v1==", "t=1=2"]),
)


@PROPERTY
@given(
    body=bodies, secrets=secret_lists, tolerance=tolerances, entries=st.lists(garbled_entries, min_size=1, max_size=4)
)
def test_a_garbled_header_refuses(body: str, secrets: list[str], tolerance: int, entries: list[str]) -> None:
    with pytest.raises(BadSignature):
        verify_signature(body, ",".join(entries), secrets_of(secrets), tolerance)


# ---- Content-Length --------------------------------------------------------------------------------------

limits = st.integers(min_value=0, max_value=2**40)


@PROPERTY
@given(limit=limits)
def test_no_content_length_is_left_to_the_check_after_reading(limit: int) -> None:
    check_size(None, limit)


@PROPERTY
@given(limit=limits, data=st.data(), zeros=st.integers(min_value=0, max_value=5))
def test_a_declared_length_up_to_the_limit_is_accepted(limit: int, data: st.DataObject, zeros: int) -> None:
    declared = data.draw(st.one_of(st.just(limit), st.integers(min_value=0, max_value=limit)), label="declared")
    check_size("0" * zeros + str(declared), limit)


@PROPERTY
@given(limit=limits, over=st.one_of(st.just(1), st.integers(min_value=1, max_value=10**40)))
def test_a_declared_length_above_the_limit_is_refused_as_too_large(limit: int, over: int) -> None:
    with pytest.raises(DeliveryTooLarge) as refused:
        check_size(str(limit + over), limit)
    assert refused.value.outcome == "too_large"


digit_runs = st.text(alphabet=string.digits, max_size=8)
not_numbers = st.one_of(
    st.sampled_from(["", " ", "\t", "abc", "twelve", "12.5", "1e3", "0x10", "1,000", "12;", "NaN", "Infinity"]),
    # A letter or punctuation that no integer literal has, anywhere among digits.
    st.builds(
        "{}{}{}".format, digit_runs, st.sampled_from([*string.ascii_letters, *".,;:/=*#%&!?\"'()[]"]), digit_runs
    ),
    # Two values joined by a proxy that merged duplicate Content-Length headers.
    st.builds("{}, {}".format, st.integers(min_value=0), st.integers(min_value=0)),
)


@PROPERTY
@given(content_length=not_numbers, limit=limits)
def test_a_content_length_that_is_not_a_number_is_refused_as_malformed(content_length: str, limit: int) -> None:
    with pytest.raises(InvalidDelivery) as refused:
        check_size(content_length, limit)
    assert type(refused.value) is InvalidDelivery  # malformed, not "too large"
    assert refused.value.outcome == "malformed"


# ---- what jsonb can store --------------------------------------------------------------------------------

# Strings biased towards what matters here: NUL, backslashes, "u0000", the replacement character.
tricky_text = st.one_of(st.text(max_size=10), st.text(alphabet="\x00\\u0a\ufffd\"'\xe9/", max_size=12))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | tricky_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4),
    max_leaves=8,
)


@st.composite
def dumped_json(draw: st.DrawFn) -> str:
    """JSON text as an encoder writes it (escaped or raw non-ASCII, compact or indented)."""
    value = draw(json_values)
    indent = draw(st.sampled_from([None, 2]))
    return json.dumps(value, ensure_ascii=draw(st.booleans()), indent=indent)


# Complete escapes and plain characters: any concatenation is a valid JSON string literal, and runs of
# backslashes of every parity end up right before "u0000".
literal_pieces = st.sampled_from(
    ["\\\\", "\\u0000", "\\\\u0000", "u0000", "\\u00000", '\\"', "\\n", "\\/", "\\u00e9", "\\ufffd", "a", "0"]
)


@st.composite
def handwritten_json(draw: st.DrawFn) -> str:
    """JSON text with string literals written escape by escape (keys too), as no encoder would."""

    def literal() -> str:
        return '"' + "".join(draw(st.lists(literal_pieces, max_size=8))) + '"'

    items = [literal() for _ in range(draw(st.integers(min_value=1, max_value=3)))]
    shape = draw(st.sampled_from(["string", "array", "object"]))
    if shape == "string":
        return items[0]
    if shape == "array":
        return "[" + ", ".join(items) + "]"
    return "{" + ", ".join(f"{literal()}: {item}" for item in items) + "}"


any_json = st.one_of(dumped_json(), handwritten_json())


def without_nul(value: Any) -> Any:
    """The decoded value with each NUL (in strings and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    return False


def has_nul_anywhere(body: str) -> bool:
    """Whether any string of `body` holds a NUL, the values of repeated keys included: `json.loads` keeps
    only a key's last value, but PostgreSQL's jsonb parser refuses `\\u0000` in any of them (found by
    hypothesis: `{"": "\\u0000", "": ""}`)."""
    return has_nul(json.loads(body, object_pairs_hook=lambda pairs: pairs))


@PROPERTY
@given(body=any_json)
def test_what_jsonb_gets_is_json_without_nul_and_only_the_nul_escapes_changed(body: str) -> None:
    safe, _ = jsonb_safe(body)
    stored = json.loads(safe)
    assert not has_nul(stored)  # jsonb refuses \u0000 (22P05)
    assert stored == without_nul(json.loads(body))


@PROPERTY
@given(body=any_json)
def test_a_body_without_nul_is_stored_as_is_and_the_original_is_kept_exactly_when_changed(body: str) -> None:
    safe, original = jsonb_safe(body)
    if not has_nul_anywhere(body):
        assert safe == body
        assert original is None
    else:
        assert safe != body
        assert original == body
    assert (original is None) == (safe == body)


@PROPERTY
@given(body=st.lists(st.sampled_from(["\\", "u0000", "u", "0", '"', "a"]), max_size=12).map("".join))
def test_in_any_text_exactly_the_nul_escapes_are_touched(body: str) -> None:
    """Also for text that is not JSON: "u0000" after an odd run of backslashes is an escape, after an even one not."""
    run_before_nul = [len(chunk) - len(chunk.rstrip("\\")) for chunk in body.split("u0000")[:-1]]
    if all(run % 2 == 0 for run in run_before_nul):
        assert jsonb_safe(body) == (body, None)
    else:
        safe, original = jsonb_safe(body)
        assert original == body
        assert "\\ufffd" in safe
