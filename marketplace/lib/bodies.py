"""Request bodies: what every route that takes a JSON body refuses before it is decoded.

`JsonBodyGuard` (a Litestar middleware, so it runs after routing and knows whether the route takes a
`data` body) applies, in order:

1. the media type: `application/json` or `application/*+json` (parameters such as `charset` allowed),
   else 415 `unsupported-media-type`; a missing `Content-Type` is not JSON either;
2. the read: each chunk of the body must arrive within `BODY_IDLE_TIMEOUT_SECONDS` of the previous
   one, else 408 `request-timeout` with `Connection: close` (a client that promised more bytes than it
   sends would otherwise hold a connection and a task forever; uvicorn has no body timeout). The
   timeout applies to every route's body, and `webhooks.routes.WebhookIngress` uses `read_body_chunk`
   for Stripe's deliveries;
3. the nesting depth: at most `MAX_JSON_DEPTH` levels of arrays/objects, else 400 `malformed-body`
   (no body of ours nests deeper than 4; msgspec would recurse into a deep document, then raise
   `RecursionError` at about 1000 levels, a 500);
4. a NUL: a `\\u0000` escape anywhere in the document, keys included, is a 400 `validation-error`
   (PostgreSQL stores no NUL in `text` or `jsonb`; the per-field text patterns of
   `marketplace.lib.schemas` refuse every other control character, field by field);
5. the types, strictly: the body is decoded once more as the route's declared type with msgspec's
   `strict=True`, so `"unit_amount": "2000"` or `"active": 0` is a 400 `validation-error`, as the
   OpenAPI document says (Litestar converts a decoded body leniently, which would take both).

The body is read once; Litestar's request then reads it from the connection state, not the socket.
Both scans run at C speed (regular expressions and `bytes` methods), linear in the body's length.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import ValidationException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from marketplace.lib.problems import Problem

BODY_IDLE_TIMEOUT_SECONDS = 5.0
MAX_JSON_DEPTH = 32


class UnsupportedMediaType(Problem):
    """The body is not JSON (`Content-Type` is missing or not `application/json`); nothing was done."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class RequestTimeout(Problem):
    """The body stopped arriving before its announced end; the connection is closed, nothing was done."""

    status = 408
    slug = "request-timeout"
    title = "Request timeout"


class MalformedBody(Problem):
    slug = "malformed-body"
    title = "Malformed request body"


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` or `application/<anything>+json`, with any parameters (`; charset=utf-8`)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5))


async def read_body_chunk(receive: Receive, timeout: float = BODY_IDLE_TIMEOUT_SECONDS) -> ReceiveMessage:
    """The next ASGI message of a request, or `RequestTimeout` when none arrives within `timeout` s."""
    try:
        async with asyncio.timeout(timeout):
            return await receive()
    except TimeoutError:
        raise RequestTimeout(
            f"The body stopped arriving: no bytes for {timeout:g} s before its announced end.",
            headers={"Connection": "close"},
        ) from None


def _timed(receive: Receive) -> Receive:
    done = False

    async def timed_receive() -> ReceiveMessage:
        nonlocal done
        if done:  # after the body: only a disconnect is left to wait for, as long as the response takes
            return await receive()
        message = await read_body_chunk(receive)
        if message["type"] != "http.request" or not message.get("more_body", False):
            done = True
        return message

    return timed_receive


# A JSON string (escapes included) or a bracket; everything else is irrelevant to the depth.
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")
# A `\u0000` escape, not an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `body` nests arrays/objects more than `limit` deep (a malformed body answers False:
    the decoder reports it). Each pass removes the innermost empty pairs; `limit` passes suffice."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not removed or not brackets:
            return False
    return _INNERMOST.search(brackets) is not None


def nul_position(body: bytes) -> int | None:
    """The byte offset of the first `\\u0000` escape in `body`, or None."""
    if b"\\u0000" not in body:
        return None
    found = _NUL_ESCAPE.search(body)
    return None if found is None else found.end() - 6


_strict_decoders: dict[int, msgspec.json.Decoder[Any]] = {}


def check_types(handler: Any, body: bytes) -> None:
    """Decode `body` as the handler's declared `data` type, strictly; the 400 problem if it does not fit.

    Strict, as JSON Schema reads the OpenAPI document: a string is not a number and 0 is not `false`;
    but `2.0` *is* an integer in JSON Schema, so integral floats are taken as integers."""
    decoder = _strict_decoders.get(id(handler))
    if decoder is None:
        decoder = msgspec.json.Decoder(handler.parsed_data_field.annotation, strict=True)
        _strict_decoders[id(handler)] = decoder
    try:
        decoder.decode(body)
    except msgspec.ValidationError as exc:
        try:
            decoder.decode(msgspec.json.encode(_integral_floats_as_ints(msgspec.json.decode(body))))
            return
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError:
            return  # not JSON after all (`6Z`: a number, then garbage): Litestar's own decode answers it
        message, _, path = str(exc).partition(" - at `")
        error = {"message": message, "source": "body"}
        key = ".".join(re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+", path.rstrip("`").removeprefix("$")))
        if key:
            error["key"] = key  # as Litestar names a field: `lines.0.quantity`
        raise ValidationException(detail="The request did not validate; see errors.", extra=[error]) from exc
    except msgspec.DecodeError:
        return  # not JSON at all: Litestar's own decode answers it, as for every other route


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


def check_json_body(body: bytes) -> None:
    """Raise the problem for a body no JSON route takes (too deep, or a NUL); see the module doc."""
    if json_depth_exceeds(body):
        raise MalformedBody(f"The body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep.")
    at = nul_position(body)
    if at is not None:
        message = f"a string holds a NUL character (\\u0000) at byte {at}; no field takes one"
        raise ValidationException(
            detail="The request did not validate; see errors.", extra=[{"message": message, "source": "body"}]
        )


class JsonBodyGuard(ASGIMiddleware):
    """Media type, read timeout, depth and NUL, for every route with a `data` body (module doc)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        receive = _timed(receive)
        handler: Any = scope["route_handler"]
        if handler.parsed_data_field is not None:
            request: Request[Any, Any, Any] = Request(scope, receive)
            headers = request.headers
            no_body = headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
            if not no_body:  # an absent body is the handler's to refuse (400) or accept (optional `data`)
                if not is_json_media_type(headers.get("content-type")):
                    raise UnsupportedMediaType(
                        "This route takes a JSON body: send it as Content-Type: application/json."
                    )
                body = await request.body()  # cached in the connection state for the handler
                check_json_body(body)
                check_types(handler, body)
        await next_app(scope, receive, send)
