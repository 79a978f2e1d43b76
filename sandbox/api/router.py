"""The `/v1` front door: faults, auth, Stripe-Account scoping, idempotency, routing, expand, error envelope."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response

from sandbox import objects
from sandbox.errors import StripeError, account_invalid, bad_api_key, bad_param, no_api_key
from sandbox.forms import Params, decode, get_str, metadata
from sandbox.runtime import RequestContext, Sandbox
from sandbox.schema import Schema, check
from sandbox.store import IdempotencyEntry, Obj, changes, new_id, now, snapshot

Handler = Callable[["Ctx"], Obj]
log = logging.getLogger(__name__)


@dataclass
class Ctx:
    sb: Sandbox
    account: str
    params: Params
    path: dict[str, str]
    method: str
    url: str

    @property
    def store(self) -> Any:
        return self.sb.store

    @property
    def platform(self) -> str:
        return self.sb.store.platform_id

    @property
    def is_platform(self) -> bool:
        return self.account == self.sb.store.platform_id


@dataclass
class Route:
    method: str
    regex: re.Pattern[str]
    handler: Handler
    schema: Schema | None
    emulated: tuple[str, ...]


ROUTES: list[Route] = []
LIST = ("limit", "starting_after", "ending_before", "created")


def route(
    method: str, pattern: str, params: Schema | None = None, emulated: Iterable[str] = ()
) -> Callable[[Handler], Handler]:
    """Register a handler. `params` is the pinned SDK's TypedDict for the endpoint, `emulated` the parameter
    paths the handler reads; any other parameter is refused before it runs (see `sandbox.schema.check`)."""
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def deco(fn: Handler) -> Handler:
        ROUTES.append(Route(method, regex, fn, params, tuple(emulated)))
        return fn

    return deco


# ---- expand ------------------------------------------------------------------------------------
INCLUDABLE: dict[tuple[str, str], Callable[[Sandbox, Obj], Obj]] = {}


def _expand_one(sb: Sandbox, account: str, obj: Obj, parts: list[str], full: str) -> None:
    """Expand `parts` in place; an id of an object `account` cannot retrieve stays an id, as on Stripe."""
    field = parts[0]
    if field not in obj:
        if (obj.get("object", ""), field) in INCLUDABLE:
            obj[field] = INCLUDABLE[(obj["object"], field)](sb, obj)
        else:
            raise bad_param(f"This property cannot be expanded ({full}).", "expand")
    value = obj[field]
    if isinstance(value, str):
        rec = sb.store.record(value)
        if rec is None:
            raise bad_param(f"This property cannot be expanded ({full}).", "expand")
        if rec["owner"] != account and value != account:
            return
        value = copy.deepcopy(rec["obj"])
        obj[field] = value
    if len(parts) > 1 and value is not None:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _expand_one(sb, account, item, parts[1:], full)
        elif isinstance(value, dict) and value.get("object") == "list" and parts[1] == "data":
            for item in value["data"]:
                if len(parts) > 2:
                    _expand_one(sb, account, item, parts[2:], full)
        elif isinstance(value, dict):
            _expand_one(sb, account, value, parts[1:], full)


def apply_expand(sb: Sandbox, account: str, body: Obj, params: Params) -> Obj:
    raw = params.get("expand")
    if not raw:
        return body
    paths = raw if isinstance(raw, list) else [raw]
    result = copy.deepcopy(body)
    for path in paths:
        if not isinstance(path, str):
            raise bad_param("Invalid array", "expand")
        parts = path.split(".")
        if len(parts) > 4:
            raise bad_param(f"You cannot expand more than 4 levels of a property. Property: {path}", "expand")
        _expand_one(sb, account, result, parts, path)
    return result


# ---- dispatch ----------------------------------------------------------------------------------
def _json(status: int, body: Obj, headers: dict[str, str]) -> Response[bytes]:
    return Response(
        content=json.dumps(body, indent=2).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _api_key(request: Request[Any, Any, Any]) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().split(":", 1)[0]
        except ValueError:
            return ""
    return ""


def _fingerprint(method: str, path: str, params: Params) -> str:
    return json.dumps([method, path, params], sort_keys=True)


async def dispatch(sb: Sandbox, request: Request[Any, Any, Any]) -> Response[bytes]:
    request_id = new_id("req_", 14)
    headers = {"Request-Id": request_id, "Stripe-Version": request.headers.get("stripe-version", objects.API_VERSION)}
    answer_after = sb.response_latency_ms  # as set when the request arrived
    if sb.latency_ms > 0:
        await asyncio.sleep(sb.latency_ms / 1000)
    if sb.api_faults:
        fault = sb.api_faults.pop(0)
        return await _fault_response(fault, request_id, headers)
    body_bytes = await request.body()
    try:
        response = _handle(sb, request, body_bytes.decode(), request_id, headers)
    except StripeError as exc:
        response = _json(exc.status, exc.body(request_id), {**headers, **exc.headers})
    except Exception:  # a sandbox bug: still answer with Stripe's envelope, and say so in the log
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        err = StripeError("An unknown error occurred", type="api_error", status=500)
        response = _json(err.status, err.body(request_id), headers)
    if answer_after > 0:
        await sb.hold_answer(f"{request.method} {request.url.path}", answer_after / 1000)
    return response


async def _fault_response(fault: Any, request_id: str, headers: dict[str, str]) -> Response[bytes]:
    if fault.status == "timeout":
        await asyncio.sleep(fault.hang)
        err = StripeError("An unknown error occurred", type="api_error", status=500)
    elif fault.status == 429:
        err = StripeError(
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            type="invalid_request_error",
            status=429,
            code="rate_limit",
        )
        if fault.retry_after is not None:
            err.headers["Retry-After"] = str(fault.retry_after)
    else:
        err = StripeError("An unknown error occurred", type="api_error", status=int(fault.status))
    if fault.should_retry is not None:
        err.headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
    return _json(err.status, err.body(request_id), {**headers, **err.headers})


def _handle(
    sb: Sandbox, request: Request[Any, Any, Any], body: str, request_id: str, headers: dict[str, str]
) -> Response[bytes]:
    key = _api_key(request)
    if key is None:
        raise no_api_key()
    if not (key.startswith("sk_test_") or key.startswith("rk_test_")) or len(key) < 12:
        raise bad_api_key(key)
    method = request.method.upper()
    path = request.url.path
    query = request.url.query or ""
    params = decode(query) if method in ("GET", "DELETE") else decode(body)
    if method == "POST" and query:
        params = {**decode(query), **params}

    account = sb.store.platform_id
    header_account = request.headers.get("stripe-account")
    if header_account and header_account != sb.store.platform_id:
        rec = sb.store.record(header_account)
        if (
            rec is None
            or rec["kind"] != "account"
            or rec["owner"] != sb.store.platform_id
            or rec["x"].get("deauthorized")
        ):
            raise account_invalid(key, header_account)
        account = header_account

    for r in ROUTES:
        if r.method != method:
            continue
        m = r.regex.match(path)
        if m is None:
            continue
        idem_key = request.headers.get("idempotency-key") if method == "POST" else None
        if idem_key is not None:
            headers["Idempotency-Key"] = idem_key
            if len(idem_key) > 255:
                raise bad_param("Idempotency keys can only be up to 255 characters long.", "idempotency_key")
            store_key = sb.store.idem_key(account, idem_key)
            fp = _fingerprint(method, path, params)
            entry = sb.store.idempotency.get(store_key)
            if entry is not None:
                if entry.fingerprint != fp:
                    raise StripeError(
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{idem_key}' if you meant to execute a "
                        "different request.",
                        type="idempotency_error",
                        status=400,
                        saved=False,
                    )
                return _json(entry.status, entry.body, {**headers, "Idempotent-Replayed": "true"})
        ctx = Ctx(sb, account, params, m.groupdict(), method, path)
        sb.current = RequestContext(request_id, idem_key)
        try:
            check(params, r.schema, r.emulated)
            result = r.handler(ctx)
            status, out = 200, copy.deepcopy(apply_expand(sb, account, result, params))
        except StripeError as exc:
            if idem_key is None or not exc.saved:
                raise
            status, out = exc.status, exc.body(request_id)
        finally:
            sb.current = RequestContext()
        if idem_key is not None:
            sb.store.idempotency[sb.store.idem_key(account, idem_key)] = IdempotencyEntry(
                _fingerprint(method, path, params), status, out, now()
            )
        return _json(status, out, headers)
    raise StripeError(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at "
        "https://support.stripe.com/.",
        status=404,
    )


def update_editable(ctx: Ctx, obj: Obj, *event_types: str) -> Obj:
    """POST /v1/<resource>/{id} for the editable fields (`metadata`, and `description` where allowed):
    apply them, and emit each of `event_types` with `previous_attributes` when something changed."""
    before = snapshot(obj)
    obj["metadata"] = metadata(ctx.params, obj["metadata"])
    if "description" in ctx.params:
        obj["description"] = get_str(ctx.params, "description")
    previous = changes(before, obj)
    if previous:
        for event_type in event_types:
            ctx.sb.emit(ctx.account, event_type, obj, previous)
    return obj
