"""HTTP: the two Stripe webhook endpoints and the admin routes to list and replay stored events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from arq.connections import ArqRedis
from litestar import Request, post
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema
from litestar.params import QueryParameter
from litestar.types import (
    ASGIApp,
    ControllerRouterHandler,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

import webhooks.metrics  # noqa: F401  # describes the worker's counters, which /metrics renders from Redis
from marketplace.auth.guards import admin_only
from marketplace.lib.bodies import read_body_chunk
from marketplace.lib.durable.operator import AdminSurface, RouteDoc
from marketplace.lib.observability import METRICS
from marketplace.lib.problems import PROBLEM_JSON, Conflict, Problem, body_of
from marketplace.lib.schemas import (
    EVENT_CURSOR,
    SINGLE_LINE,
    STRIPE_ID_PATTERN,
    STRIPE_TOKEN,
    StripeEventId,
)
from marketplace.lib.settings import Settings
from webhooks import store
from webhooks.ingest import (
    MAX_CREATED,
    BadSignature,
    DeliveryTooLarge,
    EventStoreUnavailable,
    InvalidDelivery,
    check_size,
    receive,
)
from webhooks.queueing import enqueue_event, enqueuer_for
from webhooks.registry import ENDPOINT_PATHS, Endpoint

log = logging.getLogger("webhooks.routes")

StatusName = Literal["pending", "processing", "processed", "ignored", "unhandled", "not_ours", "failed", "dead"]
ReplayableStatus = Literal["failed", "dead", "ignored", "unhandled", "not_ours", "processed"]


class DeliveryAck(msgspec.Struct):
    """The answer Stripe gets: 200 once the event is stored (or was already)."""

    received: bool
    event_id: str
    outcome: Literal["stored", "duplicate", "ignored"]


class EventSummary(msgspec.Struct):
    id: str
    type: str
    account: str | None
    endpoint: Endpoint
    misrouted: bool
    livemode: bool
    api_version: str | None
    created: datetime
    received_at: datetime
    status: StatusName
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    processed_at: datetime | None


class EventDetail(EventSummary):
    payload: dict[str, Any]


class EventPage(msgspec.Struct):
    items: list[EventSummary]
    next_cursor: str | None


class ReplayFilter(msgspec.Struct, forbid_unknown_fields=True):
    """Which stored events to replay: by status (and optionally type), oldest first, at most `limit`."""

    status: ReplayableStatus
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=STRIPE_TOKEN)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class ReplayResult(msgspec.Struct):
    replayed: list[str]
    queued: int  # how many were put on the queue now; the rest the sweeper queues (Redis unavailable)


async def accept_delivery(
    endpoint: Endpoint,
    headers: Iterable[tuple[bytes, bytes]],
    body: AsyncIterator[bytes],
    settings: Settings,
    arq: ArqRedis,
) -> DeliveryAck:
    """One delivery, whoever serves the HTTP: size limit, read, verify, store, then queue in the background.

    Raises `InvalidDelivery` (400) or `EventStoreUnavailable` (503); both are problems.
    """
    content_length = signature = None
    for name, value in headers:
        if name == b"content-length":
            content_length = value.decode("latin-1")
        elif name == b"stripe-signature":
            signature = value.decode("latin-1")
    try:
        check_size(content_length, settings.webhook_max_body_bytes)
    except InvalidDelivery as exc:
        METRICS.inc("webhook_deliveries_total", endpoint=endpoint, outcome=exc.outcome)
        raise
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > settings.webhook_max_body_bytes:
            METRICS.inc("webhook_deliveries_total", endpoint=endpoint, outcome="too_large")
            raise DeliveryTooLarge(f"The body is larger than {settings.webhook_max_body_bytes} bytes.")
        chunks.append(chunk)
    received = await receive(endpoint, b"".join(chunks), signature, settings)
    if received.outcome == "stored":
        enqueuer_for(arq).submit(received.event_id)
    return DeliveryAck(received=True, event_id=received.event_id, outcome=received.outcome)


async def _deliver(endpoint: Endpoint, request: Request[Any, Any, Any]) -> DeliveryAck:
    settings: Settings = request.app.state.settings
    arq: ArqRedis = request.app.state.arq
    return await accept_delivery(endpoint, request.scope["headers"], request.stream(), settings, arq)


WEBHOOK_PATHS: dict[str, Endpoint] = {path: endpoint for endpoint, path in ENDPOINT_PATHS.items()}
_ACK_ENCODER = msgspec.json.Encoder()


class WebhookIngress:
    """ASGI: serves `POST` on the two webhook paths directly, in front of the framework.

    Stripe's deliveries are the API's hot path, and a store-before-ack receiver is judged against a
    bare verify-and-insert one (docs/performance.md). Routing, dependency injection and response
    building cost more per delivery than storing it, so these two requests skip them and run the
    same `accept_delivery` the framework routes run. Every other request goes to the app. Errors keep
    the problem-details shape; the request id and access log wrap this like any route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = WEBHOOK_PATHS.get(scope["path"]) if scope["type"] == "http" else None  # type: ignore[comparison-overlap]
        if endpoint is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        app = scope["litestar_app"]

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await read_body_chunk(receive)  # a body that stops arriving: 408, closed
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
                yield chunk
                if not message.get("more_body", False):
                    return

        status, headers = 200, [(b"content-type", b"application/json")]
        try:
            ack = await accept_delivery(endpoint, scope["headers"], body(), app.state.settings, app.state.arq)
            payload = _ACK_ENCODER.encode(ack)
        except ClientDisconnected:
            return
        except Problem as problem:
            status, headers = problem.status, [(b"content-type", PROBLEM_JSON.encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
            payload = _ACK_ENCODER.encode(body_of(problem, scope["path"]))
        except Exception:
            log.exception("unhandled error while receiving a webhook")
            status, headers = 500, [(b"content-type", PROBLEM_JSON.encode())]
            payload = _ACK_ENCODER.encode(body_of(InternalError("Something went wrong on our side."), scope["path"]))
        headers.append((b"content-length", str(len(payload)).encode()))
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": payload, "more_body": False}
        await send(end)


class ClientDisconnected(Exception):
    """The sender went away before the body arrived; there is nobody to answer."""


class InternalError(Problem):
    status = 500
    slug = "internal-error"
    title = "Internal server error"


_WEBHOOK_PROBLEMS = [InvalidDelivery, BadSignature, DeliveryTooLarge, EventStoreUnavailable]
_WEBHOOK_DESCRIPTION = (
    "Verifies `Stripe-Signature` over the raw body against this endpoint's secrets (any may match, for "
    "rotation), stores the event, then answers 200; processing is asynchronous. 400: bad signature or "
    "body (nothing stored). 503: the event store is unavailable (Stripe retries)."
)


_EVENT_STRING = {"type": OpenAPIType.STRING, "min_length": 1, "max_length": 255, "pattern": STRIPE_ID_PATTERN}
_EVENT_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="A Stripe event as Stripe sends it; fields beyond these are stored verbatim.",
    required=["id", "type", "created", "livemode", "data"],
    properties={
        "id": Schema(**_EVENT_STRING),  # type: ignore[arg-type]
        "object": Schema(type=OpenAPIType.STRING, enum=["event"]),
        "type": Schema(**{**_EVENT_STRING, "max_length": 128, "pattern": STRIPE_TOKEN}),  # type: ignore[arg-type]
        "created": Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=MAX_CREATED, description="Unix time (s)."),
        "livemode": Schema(type=OpenAPIType.BOOLEAN),
        "data": Schema(type=OpenAPIType.OBJECT),
        "account": Schema(**_EVENT_STRING, description="Connect endpoint: the connected account."),  # type: ignore[arg-type]
        "api_version": Schema(type=OpenAPIType.STRING, max_length=64, pattern=STRIPE_TOKEN),
    },
)


@dataclass
class _WebhookOperation(Operation):
    """What a delivery must carry, in the document (the handler reads the raw body itself)."""

    def __post_init__(self) -> None:
        signature = Parameter(
            name="Stripe-Signature",
            param_in=ParamType.HEADER,
            required=True,
            description="`t=<unix time>,v1=<HMAC-SHA256 hex>[,v1=…]`, as Stripe signs the raw body.",
            schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=4096, pattern=SINGLE_LINE),
        )
        self.parameters = [*(self.parameters or []), signature]
        self.request_body = RequestBody(
            required=True,
            description="The event, byte for byte as Stripe signed it (any JSON media type, e.g. "
            "`application/json; charset=utf-8`).",
            content={"application/json": OpenAPIMediaType(schema=_EVENT_SCHEMA)},
        )


@post(
    ENDPOINT_PATHS["platform"],
    operation_id="receivePlatformWebhook",
    operation_class=_WebhookOperation,
    tags=["webhooks"],
    raises=_WEBHOOK_PROBLEMS,
    summary="Stripe events of the platform account",
    description=_WEBHOOK_DESCRIPTION,
    status_code=200,
)
async def platform_webhook(request: Request[Any, Any, Any]) -> DeliveryAck:
    return await _deliver("platform", request)


@post(
    ENDPOINT_PATHS["connect"],
    operation_id="receiveConnectWebhook",
    operation_class=_WebhookOperation,
    tags=["webhooks"],
    raises=_WEBHOOK_PROBLEMS,
    summary="Stripe events of connected accounts",
    description=_WEBHOOK_DESCRIPTION,
    status_code=200,
)
async def connect_webhook(request: Request[Any, Any, Any]) -> DeliveryAck:
    return await _deliver("connect", request)


def _summary(row: asyncpg.Record) -> EventSummary:
    return EventSummary(**{f: row[f] for f in EventSummary.__struct_fields__})


def _detail(row: asyncpg.Record) -> EventDetail:
    fields = {f: row[f] for f in EventSummary.__struct_fields__}
    return EventDetail(**fields, payload=store.event_payload(row))


async def queue_replayed(arq: ArqRedis, replayed: list[asyncpg.Record]) -> int:
    """Queue the first attempt of each replayed event; stops at the first Redis failure (the rest are
    pending: the sweeper queues them once Redis answers). Returns how many were queued now."""
    queued = 0
    for row in replayed:
        try:
            queued += await enqueue_event(arq, row["id"], attempts=row["attempts"])
        except Exception as exc:
            log.warning("replay could not reach Redis (%s); the sweeper will queue the rest", type(exc).__name__)
            break
    return queued


async def _replay_result(replayed: list[asyncpg.Record], arq: ArqRedis) -> ReplayResult:
    return ReplayResult(replayed=[row["id"] for row in replayed], queued=await queue_replayed(arq, replayed))


def _refusal(event_id: str, current: asyncpg.Record, settings: Settings) -> Problem:
    if current["livemode"] != settings.livemode:
        return Conflict(
            f"Event {event_id} has livemode={str(not settings.livemode).lower()}, unlike the configured "
            "Stripe key; it is never processed."
        )
    return Conflict(f"Event {event_id} is being processed right now; replay it once that finishes.")


EVENT_ADMIN = AdminSurface(
    queue=store.EVENTS,
    path="/admin/events",
    key_path="{event_id:str}",
    key_param="event_id",
    key_type=StripeEventId,
    cursor=EVENT_CURSOR,
    status_type=StatusName,
    filter_column="type",
    filter_type=Annotated[str | None, QueryParameter(name="type", min_length=1, max_length=128, pattern=STRIPE_TOKEN)],
    summary_type=EventSummary,
    summary=_summary,
    page_type=EventPage,
    detail_type=EventDetail,
    detail=_detail,
    detail_columns="*",
    bulk_filter_type=ReplayFilter,
    replay_answer_type=ReplayResult,
    replay_answer=_replay_result,
    refusal=_refusal,
    noun="stored event",
    guards=[admin_only],
    # Events of the other livemode (stored as ignored) are never replayed, by id or in bulk.
    scope=lambda settings: store.replay_scope(settings.livemode),
    list_doc=RouteDoc(
        "listStripeEvents",
        "Stored Stripe events, newest first, by status and type",
        "Stored events without their payloads, optionally only one `status` and one event `type`; pass "
        "`next_cursor` as `cursor` for the next page. 400 `invalid-cursor` for a cursor this API did not "
        "return.",
    ),
    show_doc=RouteDoc(
        "getStripeEvent",
        "One stored event with its payload",
        "The stored event (`evt_…`), its processing state and the payload Stripe sent. 404 if not stored.",
    ),
    replay_doc=RouteDoc(
        "replayStripeEvent",
        "Process one stored event again (fresh attempt budget)",
        "202 once the event is due again (`queued` is 0 when Redis is down: the sweeper queues it). "
        "404 if not stored; 409 when it is being processed right now, or its livemode differs from the "
        "configured Stripe key's (never processed).",
    ),
    replay_all_doc=RouteDoc(
        "replayStripeEvents",
        "Process again every stored event matching a filter (e.g. all dead ones)",
        "Makes due again, oldest first, at most `limit` stored events with this `status` (and `type`), "
        "each with a fresh attempt budget; `replayed` lists them. Events of the other livemode are never "
        "replayed. 202 even when none matched.",
    ),
)
"""Stored events as operators see them (mounted by the assembly: `event_admin_routes`)."""


METRICS.describe("webhook_queue_lag_seconds", "gauge", "Age of the oldest stored event due for processing.")
METRICS.describe("webhook_events_due", "gauge", "Stored events due for processing (pending or failed).")
METRICS.describe("webhook_events_dead", "gauge", "Events parked as dead (need an operator: replay).")
METRICS.describe("webhook_events_failed", "gauge", "Events waiting for a retry.")
METRICS.describe(
    "webhook_events_unhandled",
    "gauge",
    "Events no worker that took them had a handler for (kept; a worker with the handler re-offers them).",
)


async def collect_backlog() -> None:
    """Metrics collector: event-store gauges, refreshed at each scrape."""
    figures = await store.backlog()
    METRICS.set("webhook_queue_lag_seconds", figures.queue_lag_seconds)
    METRICS.set("webhook_events_due", figures.due)
    METRICS.set("webhook_events_dead", figures.dead)
    METRICS.set("webhook_events_failed", figures.failed)
    METRICS.set("webhook_events_unhandled", figures.unhandled)


def route_handlers() -> list[ControllerRouterHandler]:
    """The two webhook endpoints (also registers the backlog gauges); the assembly mounts `EVENT_ADMIN`."""
    METRICS.add_collector(collect_backlog)
    return [platform_webhook, connect_webhook]
