"""Receiving one delivery: size limit, signature (any of the endpoint's secrets), parse, store.

Pure of HTTP: the routes pass the raw body and the header and map the outcome (or the exception) to
a response. Nothing is stored unless the signature verified and the body is an event; a body or a
signature never reaches a log line.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import stripe

from marketplace.lib.observability import METRICS
from marketplace.lib.problems import RETRY_AFTER_SECONDS, Problem, Unavailable
from marketplace.lib.schemas import STRIPE_TOKEN
from marketplace.lib.settings import Secret, Settings
from webhooks import store
from webhooks.registry import Endpoint
from webhooks.tables import EventStatus

log = logging.getLogger("webhooks.ingest")

STORE_TIMEOUT_SECONDS = 5.0

METRICS.describe(
    "webhook_deliveries_total",
    "counter",
    "Webhook deliveries by endpoint and outcome (stored, duplicate, ignored, bad_signature, malformed, "
    "too_large, store_unavailable).",
)
METRICS.describe("webhook_misrouted_total", "counter", "Events that reached the endpoint not matching their account.")


class InvalidDelivery(Problem):
    """The delivery is not a validly signed Stripe event; nothing was stored."""

    status = 400
    slug = "invalid-webhook"
    title = "Invalid webhook delivery"
    outcome = "malformed"


class BadSignature(InvalidDelivery):
    slug = "webhook-signature-invalid"
    title = "Webhook signature invalid"
    outcome = "bad_signature"


class DeliveryTooLarge(InvalidDelivery):
    slug = "webhook-too-large"
    title = "Webhook body too large"
    outcome = "too_large"


class EventStoreUnavailable(Unavailable):
    """The event could not be stored; Stripe retries the delivery later."""

    slug = "event-store-unavailable"
    title = "Event store unavailable"


Outcome = Literal["stored", "duplicate", "ignored"]


@dataclass(frozen=True, slots=True)
class Received:
    event_id: str
    outcome: Outcome


# What the event store's columns take (an id beyond them is a permanent refusal, not an outage).
_EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=STRIPE_TOKEN)]
_EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=STRIPE_TOKEN)]
_ApiVersion = Annotated[str, msgspec.Meta(max_length=64, pattern=STRIPE_TOKEN)]
MAX_CREATED = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a `datetime` holds
_Created = Annotated[int, msgspec.Meta(ge=0, le=MAX_CREATED)]


class _EventEnvelope(msgspec.Struct):
    """The fields of a Stripe event the pipeline needs; the rest is kept verbatim in `payload`.

    Bounded by what the store holds: ids of 1..255 and types of 1..128 of the characters Stripe uses
    (`STRIPE_TOKEN`: no NUL, no space), `created` from the epoch to the end of year 9999. Out of bounds
    is a 400 `invalid-webhook`: a permanent refusal, not an outage.
    """

    id: _EventId
    type: _EventType
    created: _Created
    livemode: bool
    data: dict[str, Any]
    kind: str = msgspec.field(default="event", name="object")
    account: _EventId | None = None
    api_version: _ApiVersion | None = None


_decoder = msgspec.json.Decoder(_EventEnvelope)

# A `\u0000` escape (not an escaped backslash followed by "u0000"): valid JSON, refused by jsonb.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def jsonb_safe(body: str) -> tuple[str, str | None]:
    """(what jsonb can store, the exact body when that differs): each NUL escape becomes U+FFFD."""
    if "\\u0000" not in body:
        return body, None
    safe = _NUL_ESCAPE.sub(r"\1\\ufffd", body)
    return (body, None) if safe == body else (safe, body)


def verify_signature(body: str, header: str | None, secrets: tuple[Secret, ...], tolerance: int) -> None:
    """Raise `InvalidDelivery` unless `header` signs `body` with one of `secrets` within `tolerance` s."""
    if not header:
        raise BadSignature("The Stripe-Signature header is missing.")
    if not secrets:
        raise BadSignature("This endpoint has no signing secret configured.")
    if not header.isascii():
        # Stripe's header is ASCII; the SDK's constant-time comparison raises TypeError on anything else.
        raise BadSignature("The Stripe-Signature header is not a Stripe signature.")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret.reveal(), tolerance)
        except stripe.SignatureVerificationError:
            continue
        return
    raise BadSignature("The Stripe-Signature header does not verify (wrong secret, tampered body or stale timestamp).")


def check_size(content_length: str | None, limit: int) -> None:
    """Refuse early from Content-Length (the actual length is checked again after reading)."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError as exc:
        raise InvalidDelivery("The Content-Length header is not a number.") from exc
    if declared > limit:
        raise DeliveryTooLarge(f"The body is larger than {limit} bytes.")


async def receive(endpoint: Endpoint, raw: bytes, signature: str | None, settings: Settings) -> Received:
    """Verify and store one delivery; raise `InvalidDelivery` (400) or `EventStoreUnavailable` (503)."""
    try:
        return await _receive(endpoint, raw, signature, settings)
    except InvalidDelivery as exc:
        METRICS.inc("webhook_deliveries_total", endpoint=endpoint, outcome=exc.outcome)
        raise
    except EventStoreUnavailable:
        METRICS.inc("webhook_deliveries_total", endpoint=endpoint, outcome="store_unavailable")
        raise


async def _receive(endpoint: Endpoint, raw: bytes, signature: str | None, settings: Settings) -> Received:
    if len(raw) > settings.webhook_max_body_bytes:
        raise DeliveryTooLarge(f"The body is larger than {settings.webhook_max_body_bytes} bytes.")
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidDelivery("The body is not UTF-8 JSON.") from exc
    secrets = settings.webhook_secrets_platform if endpoint == "platform" else settings.webhook_secrets_connect
    verify_signature(body, signature, secrets, settings.webhook_tolerance_seconds)
    try:
        envelope = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidDelivery(f"The body is not a Stripe event we can store: {exc}.") from exc
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested ~1000 deep
        raise InvalidDelivery("The body is not a Stripe event (JSON with id, type, created, livemode, data).") from exc
    if envelope.kind != "event" or not envelope.id or not envelope.type:
        raise InvalidDelivery("The body is not a Stripe event.")

    misrouted = (endpoint == "platform") == (envelope.account is not None)
    if misrouted:
        METRICS.inc("webhook_misrouted_total", endpoint=endpoint)
        log.warning(
            "event reached the %s endpoint but %s; handling it by its account field",
            endpoint,
            "carries an account" if envelope.account else "carries no account",
            extra={"event_id": envelope.id, "event_type": envelope.type, "account": envelope.account},
        )
    mode_matches = envelope.livemode == settings.livemode
    payload_json, payload_raw = jsonb_safe(body)
    event = store.NewEvent(
        id=envelope.id,
        type=envelope.type,
        account=envelope.account,
        endpoint=endpoint,
        misrouted=misrouted,
        livemode=envelope.livemode,
        api_version=envelope.api_version,
        created=datetime.fromtimestamp(envelope.created, UTC),
        payload_json=payload_json,
        status=EventStatus.pending if mode_matches else EventStatus.ignored,
        payload_raw=payload_raw,
    )
    note = None if mode_matches else f"livemode={envelope.livemode} does not match the configured key's mode"
    try:
        async with asyncio.timeout(STORE_TIMEOUT_SECONDS):
            inserted = await store.insert_event(event, note=note)
    except Exception as exc:  # any failure to store must make Stripe retry, never lose the event
        log.error(
            "could not store event (%s); answering 503 so Stripe retries",
            type(exc).__name__,
            extra={"event_id": envelope.id, "event_type": envelope.type},
        )
        raise EventStoreUnavailable(
            "The event could not be stored; retry later.", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        ) from exc
    outcome: Outcome = "duplicate" if not inserted else ("stored" if mode_matches else "ignored")
    METRICS.inc("webhook_deliveries_total", endpoint=endpoint, outcome=outcome)
    if not mode_matches and inserted:
        log.warning(
            "stored event as ignored: livemode mismatch", extra={"event_id": envelope.id, "event_type": envelope.type}
        )
    return Received(envelope.id, outcome)
