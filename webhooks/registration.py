"""Creating or updating our two webhook endpoints in whichever Stripe the client points at.

An endpoint is ours when its URL (`{base}/webhooks/stripe`, `{base}/webhooks/stripe/connect`) *and*
its kind match: a Connect endpoint (`connect=true`) is one with an `application`, the platform one
has none. For each of the two:

* **Missing**: a `webhook_endpoint_registrations` row is written first, then the endpoint is created
  with the idempotency key `webhook-endpoint-registration:{row id}` and the parameters stored in the
  row (`connect` flag, `enabled_events` from the registry, `api_version` = the SDK's pin, and
  `metadata.registration` = the row id). Its secret is returned once (Stripe reveals it only on create).
* **Crash after the create**: the row has no endpoint yet. The next run re-sends the same request
  with the same key, and Stripe answers with the same endpoint and secret (its keys last at least
  24 h; an older row whose endpoint exists is adopted without its secret).
* **Deleted since**: the recorded endpoint no longer exists, so a new row (a new key) is written and
  a new endpoint created, with a new secret; an idempotent replay of a deleted endpoint is detected
  and never reported as created.
* **Present**: updated only when its events or description differ, or re-enabled when Stripe (or
  someone) disabled it; the update's key is the endpoint id plus a hash of the change, so a retried
  update is idempotent and a later, different change is not mistaken for it. Re-running with
  nothing changed makes no write at all, to Stripe or to the table.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import asyncpg
import stripe
from stripe.params import WebhookEndpointCreateParams, WebhookEndpointListParams, WebhookEndpointUpdateParams

from marketplace.lib.db import DB
from webhooks.registry import ENDPOINT_PATHS, ENDPOINTS, Endpoint, event_types_for, handled_event_types

log = logging.getLogger("webhooks.registration")

DESCRIPTIONS: dict[Endpoint, str] = {
    "platform": "marketplace: platform events",
    "connect": "marketplace: connected accounts' events",
}
# Stripe keeps an idempotency key for at least 24 hours; after that a re-sent create makes a new endpoint.
IDEMPOTENCY_WINDOW = timedelta(hours=23)
_LOCK_KEY = 0x77686B72  # pg advisory lock: one registration run at a time per database

Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class EndpointResult:
    """What one run did to one of our endpoints."""

    endpoint: Endpoint
    url: str
    endpoint_id: str
    action: Action
    secret: str | None = None  # only when created by this run (or recovered after a crash)
    changes: tuple[str, ...] = ()  # for "updated": enabled_events, description, re-enabled
    notes: tuple[str, ...] = ()


def endpoint_url(base_url: str, endpoint: Endpoint) -> str:
    return base_url.rstrip("/") + ENDPOINT_PATHS[endpoint]


def enabled_events(endpoint: Endpoint) -> list[str]:
    """The registry's types for `endpoint`; every handled type when none is specific to it yet."""
    types = event_types_for(endpoint) or handled_event_types()
    if not types:
        raise RuntimeError("no webhook handlers are registered; nothing to subscribe to")
    return types


def creation_key(registration_id: int) -> str:
    """The idempotency key of the create that registration row `registration_id` stands for."""
    return f"webhook-endpoint-registration:{registration_id}"


def update_key(endpoint_id: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """The idempotency key of one update: the endpoint, and a hash of the state it changes from and to."""
    digest = hashlib.sha256(json.dumps([before, after], sort_keys=True).encode()).hexdigest()[:32]
    return f"webhook-endpoint-update:{endpoint_id}:{digest}"


def _is_connect(item: stripe.WebhookEndpoint) -> bool:
    # Stripe marks an endpoint created with connect=true by the platform's Connect application.
    return getattr(item, "application", None) is not None


def _registration_of(item: stripe.WebhookEndpoint) -> str | None:
    metadata = getattr(item, "metadata", None)
    if metadata is None or "registration" not in metadata:
        return None
    return str(metadata["registration"])


async def _existing(client: stripe.StripeClient) -> list[stripe.WebhookEndpoint]:
    params: WebhookEndpointListParams = {"limit": 100}
    page = await client.v1.webhook_endpoints.list_async(params=params)
    return [item async for item in page.auto_paging_iter()]


async def _exists(client: stripe.StripeClient, endpoint_id: str) -> bool:
    try:
        await client.v1.webhook_endpoints.retrieve_async(endpoint_id)
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


@dataclass(frozen=True)
class _Row:
    id: int
    params: dict[str, Any]
    created_at: datetime
    endpoint_id: str | None


def _row(record: asyncpg.Record) -> _Row:
    params = record["params"]
    if isinstance(params, str):
        params = json.loads(params)
    return _Row(record["id"], cast(dict[str, Any], params), record["created_at"], record["endpoint_id"])


class _Registrations:
    """The registration rows of one run, on the connection that holds the run's advisory lock."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def latest(self, url: str, connect: bool) -> _Row | None:
        record = await self.conn.fetchrow(
            """
            SELECT id, params, created_at, endpoint_id FROM webhook_endpoint_registrations
             WHERE url = $1 AND connect = $2 ORDER BY id DESC LIMIT 1
            """,
            url,
            connect,
        )
        return _row(record) if record is not None else None

    async def new(self, url: str, connect: bool, endpoint: Endpoint) -> _Row:
        """Write the intent first; its id names the create (idempotency key and metadata)."""
        registration_id: int = await self.conn.fetchval(
            "SELECT nextval(pg_get_serial_sequence('webhook_endpoint_registrations', 'id'))"
        )
        params: dict[str, Any] = {
            "url": url,
            "connect": connect,
            "enabled_events": enabled_events(endpoint),
            "api_version": stripe.api_version,
            "description": DESCRIPTIONS[endpoint],
            "metadata": {"managed_by": "marketplace", "registration": str(registration_id)},
        }
        record = await self.conn.fetchrow(
            """
            INSERT INTO webhook_endpoint_registrations (id, url, connect, params, created_at)
            VALUES ($1, $2, $3, $4::jsonb, now())
            RETURNING id, params, created_at, endpoint_id
            """,
            registration_id,
            url,
            connect,
            json.dumps(params),
        )
        assert record is not None
        return _row(record)

    async def complete(self, row: _Row, endpoint_id: str) -> None:
        await self.conn.execute(
            "UPDATE webhook_endpoint_registrations SET endpoint_id = $2, completed_at = now() WHERE id = $1",
            row.id,
            endpoint_id,
        )


async def _create(client: stripe.StripeClient, row: _Row) -> stripe.WebhookEndpoint:
    params = cast(WebhookEndpointCreateParams, row.params)  # exactly as stored: a retry must match
    return await client.v1.webhook_endpoints.create_async(
        params=params, options={"idempotency_key": creation_key(row.id)}
    )


async def _create_from(
    client: stripe.StripeClient, rows: _Registrations, endpoint: Endpoint, row: _Row, known_ids: set[str]
) -> EndpointResult:
    """Send the create `row` stands for; a replay of an endpoint deleted since gets a new row."""
    url, connect = row.params["url"], bool(row.params["connect"])
    for _ in range(2):
        created = await _create(client, row)
        await rows.complete(row, created.id)
        if created.id in known_ids or await _exists(client, created.id):
            log.info("created the %s webhook endpoint %s", endpoint, created.id)
            return EndpointResult(endpoint, url, created.id, "created", secret=created.secret)
        # Stripe replayed the answer to this key, but that endpoint was deleted since: a new intent.
        log.info("the %s endpoint %s of registration %d no longer exists", endpoint, created.id, row.id)
        row = await rows.new(url, connect, endpoint)
    raise RuntimeError(f"Stripe keeps answering with deleted endpoints for {url}")


def _pick(candidates: list[stripe.WebhookEndpoint], recorded: str | None) -> stripe.WebhookEndpoint | None:
    """Among endpoints with our URL and kind: the recorded one, else an enabled one, else any."""
    if not candidates:
        return None
    return sorted(
        candidates, key=lambda e: (e.id != recorded, getattr(e, "status", "enabled") != "enabled", e.created)
    )[0]


async def _bring_up_to_date(
    client: stripe.StripeClient, endpoint: Endpoint, current: stripe.WebhookEndpoint
) -> EndpointResult:
    url = current.url
    if current.api_version and current.api_version != stripe.api_version:
        log.warning(
            "the %s endpoint %s uses API version %s, not the SDK's %s; Stripe cannot change it: "
            "create a new endpoint and delete the old one",
            endpoint,
            current.id,
            current.api_version,
            stripe.api_version,
        )
    events = enabled_events(endpoint)
    before: dict[str, Any] = {
        "enabled_events": sorted(current.enabled_events),
        "description": current.description,
        "disabled": getattr(current, "status", "enabled") == "disabled",
    }
    after: dict[str, Any] = {"enabled_events": events, "description": DESCRIPTIONS[endpoint], "disabled": False}
    changes = tuple("re-enabled" if name == "disabled" else name for name in before if before[name] != after[name])
    if not changes:
        return EndpointResult(endpoint, url, current.id, "unchanged")
    update: WebhookEndpointUpdateParams = {
        "enabled_events": events,  # type: ignore[typeddict-item]  # Literal list in the SDK's stubs
        "description": DESCRIPTIONS[endpoint],
    }
    if before["disabled"]:
        update["disabled"] = False
    await client.v1.webhook_endpoints.update_async(
        current.id, params=update, options={"idempotency_key": update_key(current.id, before, after)}
    )
    log.info("updated the %s webhook endpoint %s: %s", endpoint, current.id, ", ".join(changes))
    return EndpointResult(endpoint, url, current.id, "updated", changes=changes)


async def _ensure(
    client: stripe.StripeClient,
    rows: _Registrations,
    endpoint: Endpoint,
    url: str,
    existing: list[stripe.WebhookEndpoint],
) -> EndpointResult:
    connect = endpoint == "connect"
    candidates = [e for e in existing if e.url == url and _is_connect(e) == connect]
    known_ids = {e.id for e in existing}
    if len(candidates) > 1:
        log.warning(
            "%d %s endpoints point at %s (%s); keeping one up to date, delete the others",
            len(candidates),
            endpoint,
            url,
            ", ".join(e.id for e in candidates),
        )
    row = await rows.latest(url, connect)
    if row is not None and row.endpoint_id is None:
        # An unfinished intent: its create may have reached Stripe before the run that wrote it stopped.
        ours = next((e for e in candidates if _registration_of(e) == str(row.id)), None)
        if ours is None and candidates:
            current = _pick(candidates, None)
            assert current is not None
            await rows.complete(row, current.id)  # someone else's endpoint serves the URL: use it
            return await _bring_up_to_date(client, endpoint, current)
        if ours is not None and datetime.now(UTC) - row.created_at > IDEMPOTENCY_WINDOW:
            await rows.complete(row, ours.id)
            result = await _bring_up_to_date(client, endpoint, ours)
            note = "its secret cannot be shown again (created more than a day ago): roll it in the Dashboard"
            return replace(result, notes=(note,))
        return await _create_from(client, rows, endpoint, row, known_ids)
    current = _pick(candidates, row.endpoint_id if row is not None else None)
    if current is None:
        # Never registered, or the recorded endpoint was deleted: a new intent, a new key.
        return await _create_from(client, rows, endpoint, await rows.new(url, connect, endpoint), known_ids)
    return await _bring_up_to_date(client, endpoint, current)


@asynccontextmanager
async def _database(database_url: str | None) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the run's own, never one of the pool's: it holds the run's advisory lock while
    Stripe is called, and a pooled connection must never wait on Stripe (connect.calls)."""
    conn = await asyncpg.connect(database_url or DB.config["dsn"])
    try:
        yield conn
    finally:
        await conn.close()


async def ensure_endpoints(
    client: stripe.StripeClient, base_url: str, *, database_url: str | None = None
) -> list[EndpointResult]:
    """Make both endpoints exist, enabled and subscribed as the registry says; what was done to each.

    Needs the (migrated) database: `database_url`, else the configured one (a connection of its own).
    """
    results: list[EndpointResult] = []
    async with _database(database_url) as conn:
        # Two runs at once would both find an endpoint missing and both create it.
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            existing = await _existing(client)
            rows = _Registrations(conn)
            for endpoint in ENDPOINTS:
                url = endpoint_url(base_url, endpoint)
                results.append(await _ensure(client, rows, endpoint, url, existing))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return results


async def register_webhooks(
    client: stripe.StripeClient, base_url: str, *, database_url: str | None = None
) -> dict[Endpoint, str | None]:
    """Ensure both endpoints exist as configured; the new secret per endpoint, None if it existed."""
    results = await ensure_endpoints(client, base_url, database_url=database_url)
    return {result.endpoint: result.secret for result in results}
