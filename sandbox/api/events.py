"""Events (retrieve, list with filters) and webhook endpoints (create returns the secret once)."""

from __future__ import annotations

import re
import secrets as pysecrets

from stripe.params import (
    EventListParams,
    EventRetrieveParams,
    WebhookEndpointCreateParams,
    WebhookEndpointDeleteParams,
    WebhookEndpointListParams,
    WebhookEndpointRetrieveParams,
    WebhookEndpointUpdateParams,
)

from sandbox import objects
from sandbox.api.router import LIST, Ctx, route
from sandbox.errors import bad_param, invalid
from sandbox.forms import get_bool, get_list, get_str, metadata, req
from sandbox.store import Obj, created_filter, paginate

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.\w+)?$")


@route("GET", "/v1/events/{id}", EventRetrieveParams)
def retrieve_event(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("event", ctx.path["id"], ctx.account, "event", "id")


def _type_matcher(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$")


@route("GET", "/v1/events", EventListParams, (*LIST, "type", "types", "delivery_success"))
def list_events(ctx: Ctx) -> Obj:
    p = ctx.params
    items = created_filter(ctx.sb.store.all("event", ctx.account), p)
    event_type = get_str(p, "type")
    types = [str(t) for t in get_list(p, "types")]
    if event_type and types:
        raise bad_param("You may only specify one of these parameters: type, types.", "types")
    if len(types) > 20:
        raise bad_param("You may only specify up to 20 event types.", "types")
    patterns = [_type_matcher(t) for t in ([event_type] if event_type else types)]
    if patterns:
        items = [e for e in items if any(m.match(e["type"]) for m in patterns)]
    success = get_bool(p, "delivery_success")
    if success is not None:
        items = [e for e in items if (e["pending_webhooks"] == 0) == success]
    return paginate(items, p, "/v1/events")


# ---- webhook endpoints -------------------------------------------------------------------------
def _platform_only(ctx: Ctx) -> None:
    if not ctx.is_platform:
        raise invalid("The sandbox manages webhook endpoints on the platform only (no Stripe-Account).")


def _url(value: str, param: str = "url") -> str:
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value):
        raise bad_param("Invalid URL: An explicit scheme (such as https) must be provided.", param, code="url_invalid")
    return value


def _enabled_events(ctx: Ctx) -> list[str]:
    events = [str(e) for e in get_list(ctx.params, "enabled_events")]
    for i, e in enumerate(events):
        if e != "*" and not re.match(r"^[a-z_]+(\.[a-z_]+)+$", e):
            raise bad_param(f"Invalid enabled_events[{i}]: {e!r} is not a valid event type.", f"enabled_events[{i}]")
    return events


@route(
    "POST",
    "/v1/webhook_endpoints",
    WebhookEndpointCreateParams,
    ("url", "enabled_events", "connect", "api_version", "description", "metadata"),
)
def create_endpoint(ctx: Ctx) -> Obj:
    _platform_only(ctx)
    p = ctx.params
    url = _url(str(req(p, "url")))
    events = _enabled_events(ctx)
    if not events:
        req(p, "enabled_events")
    version = get_str(p, "api_version")
    if version is not None and not _VERSION.match(version):
        raise bad_param(f"Invalid API version: {version}", "api_version")
    connect = bool(get_bool(p, "connect"))
    ep = objects.webhook_endpoint(url, events, version, get_str(p, "description"), metadata(p), connect)
    secret = "whsec_" + pysecrets.token_hex(16)
    ctx.sb.store.add(
        "webhook_endpoint", ctx.platform, ep, {"connect": connect, "secrets": [{"secret": secret, "expires_at": None}]}
    )
    return {**ep, "secret": secret}


def _endpoint(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("webhook_endpoint", ctx.path["id"], ctx.account, "webhook_endpoint", "webhook_endpoint")


@route("GET", "/v1/webhook_endpoints/{id}", WebhookEndpointRetrieveParams)
def retrieve_endpoint(ctx: Ctx) -> Obj:
    return _endpoint(ctx)


@route(
    "POST",
    "/v1/webhook_endpoints/{id}",
    WebhookEndpointUpdateParams,
    ("url", "enabled_events", "disabled", "description", "metadata"),
)
def update_endpoint(ctx: Ctx) -> Obj:
    ep = _endpoint(ctx)
    p = ctx.params
    if "url" in p:
        ep["url"] = _url(str(req(p, "url")))
    if "enabled_events" in p:
        ep["enabled_events"] = _enabled_events(ctx)
    disabled = get_bool(p, "disabled")
    if disabled is not None:
        ep["status"] = "disabled" if disabled else "enabled"
    if "description" in p:
        ep["description"] = get_str(p, "description")
    ep["metadata"] = metadata(p, ep["metadata"])
    return ep


@route("DELETE", "/v1/webhook_endpoints/{id}", WebhookEndpointDeleteParams)
def delete_endpoint(ctx: Ctx) -> Obj:
    ep = _endpoint(ctx)
    ctx.sb.store.remove(ep["id"])
    return {"id": ep["id"], "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints", WebhookEndpointListParams, ("limit", "starting_after", "ending_before"))
def list_endpoints(ctx: Ctx) -> Obj:
    return paginate(ctx.sb.store.all("webhook_endpoint", ctx.account), ctx.params, "/v1/webhook_endpoints")
