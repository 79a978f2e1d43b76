"""The handler registry: the one place that says which Stripe event types we handle, and where.

Every later feature (onboarding, checkout, confirmation, refunds) plugs in here with `@handles(...)`
in a module listed in `webhooks.handlers.HANDLER_MODULES`. The registry is also what
`register-webhooks` subscribes each endpoint to (`enabled_events`), so adding a handler is the only
change needed for Stripe to start sending that type.

Rules every handler follows (the pipeline delivers at least once, in any order):

* **Idempotent on the event.** The same event can be processed more than once (a worker dies after
  the side effect and before recording success; an operator replays it).
* **Idempotent on the object.** Stripe occasionally sends one change as two events with *different*
  ids; both are stored and both are processed. De-duplicating on the event id is therefore not
  enough: key side effects on the object (`session.id`, `account.id`, …) with unique constraints or
  conditional updates (`UPDATE … WHERE status IN (…)`), never on "this event is new".
* **Order-independent.** Events arrive in any order. Where state matters, re-read the object from
  Stripe where it lives instead of trusting the snapshot, or only ever move state forward. Objects
  that live on a connected account (a direct charge's session, payment intent, refund, …) are read
  as that account (`stripe_account=event.account`); an Account itself is a platform object, read
  by the platform with its id (`accounts.retrieve(event.account)`, no `Stripe-Account` header).
* **Raise to retry.** An exception marks the event failed; it is retried with exponential backoff
  and parked as dead after `EVENT_MAX_ATTEMPTS`. Return normally when there is nothing to do.
  Raise `NotOurs(note)` when the event is about something that is not this platform's (an account
  connected to no seller that Stripe will not show us, an object Stripe does not know): recorded as
  `not_ours` with the note, final. `Malformed(note)` (raised by `data_object` and `metadata_of`) when
  the event's body is not what its type promises: recorded at once as `dead` with the note, no retry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import stripe
from arq.connections import ArqRedis

from marketplace.lib.settings import Settings

Endpoint = Literal["platform", "connect"]
ENDPOINTS: tuple[Endpoint, ...] = ("platform", "connect")
# Each endpoint's route: the routes are declared with these, and the URLs registered with Stripe are built
# from them (`webhooks.registration.endpoint_url`), so the two cannot drift apart.
ENDPOINT_PATHS: Mapping[Endpoint, str] = {"platform": "/webhooks/stripe", "connect": "/webhooks/stripe/connect"}


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use: the Stripe client, settings, and the arq pool (None outside a worker)."""

    stripe: stripe.StripeClient
    settings: Settings
    arq: ArqRedis | None


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored by the pipeline (the verified payload, plus where it came from)."""

    id: str
    type: str
    account: str | None
    endpoint: Endpoint
    livemode: bool
    api_version: str | None
    created: datetime
    payload: dict[str, Any]
    # The endpoint the delivery came to; `endpoint` is the one its account says (they differ when misrouted).
    received_on: Endpoint | None = None

    @property
    def data_object(self) -> dict[str, Any]:
        """The object snapshot in `data.object` (re-read it from Stripe where state matters); `Malformed`
        when it is not an object (a string, null): no retry can make one of it."""
        data = self.payload.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise Malformed(f"{self.type} carries no object in data.object (found {type(obj).__name__})")
        return obj

    def metadata_of(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """`obj`'s `metadata` (empty when absent); `Malformed` when it is not an object."""
        metadata = obj.get("metadata")
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise Malformed(f"{self.type} carries metadata that is not an object ({type(metadata).__name__})")
        return metadata

    @property
    def previous_attributes(self) -> dict[str, Any]:
        """`data.previous_attributes` of an `*.updated` event; empty when absent."""
        previous: dict[str, Any] | None = self.payload.get("data", {}).get("previous_attributes")
        return previous or {}

    @property
    def stripe_account(self) -> str | None:
        """The connected account to act as when re-reading an object that lives on it
        (`options={"stripe_account": …}`); not for the Account itself, which the platform reads by id."""
        return self.account


Handler = Callable[[HandlerContext, StoredEvent], Awaitable[None]]


@dataclass(frozen=True)
class Registration:
    event_type: str
    endpoints: frozenset[Endpoint]
    handler: Handler


class NotOurs(Exception):
    """Raised by a handler: the event concerns an object that is not this platform's; nothing to retry."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


class Malformed(Exception):
    """Raised by a handler: the event does not have the shape its type promises (`data.object` a string or
    null, metadata that is not an object). Signed, so it came from Stripe or someone with the secret, but
    no retry can change its body: recorded at once as `dead` with the note, for an operator to look at."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


def require_home(event: StoredEvent, lives_on: str | None, what: str) -> None:
    """Raise `NotOurs` (after a security log line) unless `event` came from where its object lives: the
    connected account `lives_on` (a direct charge's objects, on the Connect endpoint), or the platform
    when None. `what` names the object in the log line and note (e.g. "order …'s session")."""
    if event.account == lives_on:
        return
    logging.getLogger("marketplace.security").warning(
        "security: %s %s for %s arrived as account %r on the %s endpoint; it lives on %r",
        event.type,
        event.id,
        what,
        event.account,
        event.received_on or event.endpoint,
        lives_on or "the platform",
    )
    raise NotOurs(f"{what} does not live on {event.account or 'the platform'}")


class DuplicateHandlerError(RuntimeError):
    """Two handlers claimed one event type; exactly one handler owns each type."""


_REGISTRY: dict[str, Registration] = {}
_loaded = False

# Types we know and deliberately do nothing with: finished as `ignored` (terminal, pruned by retention).
# Every other type without a handler is `unhandled` instead: kept and re-offered to a worker that has a
# handler (a rolling deploy's new code). A type belongs here only with the reason nothing is to be done;
# `stripe listen` forwards every type, so these are what a development setup sees most.
DELIBERATELY_IGNORED: Mapping[str, str] = {
    "payment_intent.created": "an order waits for its Checkout Session's events, not its PaymentIntent's creation",
    "customer.created": "the marketplace keeps no Stripe Customer objects",
    "customer.updated": "the marketplace keeps no Stripe Customer objects",
    "balance.available": "balances are read from Stripe when needed, not mirrored from events",
}


def handles(*event_types: str, endpoints: frozenset[Endpoint] | set[Endpoint]) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of `event_types`, expected on `endpoints`."""
    expected = frozenset(endpoints)
    if not event_types:
        raise ValueError("handles() needs at least one event type")
    if not expected or not expected <= set(ENDPOINTS):
        raise ValueError(f"endpoints must be a non-empty subset of {ENDPOINTS}, got {sorted(expected)}")

    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            existing = _REGISTRY.get(event_type)
            if existing is not None and existing.handler is not handler:
                raise DuplicateHandlerError(
                    f"{event_type} is already handled by {existing.handler.__module__}.{existing.handler.__qualname__}"
                )
            _REGISTRY[event_type] = Registration(event_type, expected, handler)
        return handler

    return register


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        from webhooks.handlers import load_handlers

        load_handlers()
        _loaded = True


def registrations() -> Mapping[str, Registration]:
    """Every registered event type and its registration (handler modules imported on first use)."""
    _ensure_loaded()
    return dict(_REGISTRY)


def ignored_because(event_type: str) -> str | None:
    """Why `event_type` is deliberately ignored, or None when it is not one of those types."""
    return DELIBERATELY_IGNORED.get(event_type)


def handler_for(event_type: str) -> Registration | None:
    """The registration for `event_type`, or None when no handler here takes it (parked as unhandled)."""
    _ensure_loaded()
    return _REGISTRY.get(event_type)


def handled_event_types() -> list[str]:
    """Every handled event type, sorted (the `enabled_events` of both endpoints)."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def event_types_for(endpoint: Endpoint) -> list[str]:
    """The handled types expected on `endpoint`, sorted (that endpoint's `enabled_events`)."""
    _ensure_loaded()
    return sorted(t for t, r in _REGISTRY.items() if endpoint in r.endpoints)


def unregister(*event_types: str) -> None:
    """Remove registrations (tests register throwaway handlers and clean up after themselves)."""
    for event_type in event_types:
        _REGISTRY.pop(event_type, None)
