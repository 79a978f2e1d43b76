"""Every exception, as a problem document: ours (`Problem`), Litestar's HTTP errors (validation,
malformed bodies, 404, 405, 401), and anything unexpected.

A PostgreSQL, Redis or Stripe connection failure that escapes a handler is a 503 `unavailable` with
`Retry-After` (`dependency_outage` decides); anything else unexpected is a 500 that never leaks
internals: the body carries only the request id to quote to support.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import asyncpg
import redis.exceptions
import stripe
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from marketplace.lib.problems import (
    HTTP_SLUGS,
    PROBLEM_JSON,
    RETRY_AFTER_SECONDS,
    TITLES,
    TYPE_BASE,
    Problem,
    Unavailable,
    body_of,
    problem_body,
)

log = logging.getLogger("marketplace.errors")


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    type_: str,
    title: str,
    detail: str | None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body = problem_body(status=status, type_=type_, title=title, detail=detail, instance=request.url.path, extra=extra)
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def handle_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, Problem)
    return Response(
        content=body_of(exc, request.url.path), status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers
    )


def _http_detail(exc: HTTPException, status: int, request: Request[Any, Any, Any]) -> str:
    """Litestar's detail when it says more than the status phrase; otherwise one that does."""
    detail = exc.detail or ""
    if detail and detail.casefold() not in (HTTPStatus(status).phrase.casefold(), TITLES.get(status, "").casefold()):
        return detail
    if status == 404:
        return f"Nothing is served at {request.url.path}."
    if status == 405:
        allowed = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow")
        suffix = f"; it accepts {allowed}" if allowed else ""
        return f"{request.method} is not allowed on {request.url.path}{suffix}."
    return ""


def handle_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    extra: dict[str, Any] = {}
    title = TITLES.get(status, "Error")
    if isinstance(exc, ValidationException):
        slug = "validation-error"
        extra["errors"] = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
        detail = "The request did not validate; see errors."
    elif status == 400 and isinstance(exc.__cause__, SerializationException):
        # Litestar's wrapper for a body that does not decode (broken JSON); its detail says where.
        slug, title = "malformed-body", "Malformed request body"
        detail = exc.detail
    else:
        slug = HTTP_SLUGS.get(status, "http-error")
        detail = _http_detail(exc, status, request)
    if status >= 500:
        log.error("http error %s: %s", status, exc.detail)
    return problem_response(
        request,
        status=status,
        type_=TYPE_BASE + slug,
        title=title,
        detail=detail,
        headers=dict(exc.headers or {}),
        extra=extra,
    )


_POSTGRES_ERRORS = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, out of memory or disk
)
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_LIBRARIES = {"asyncpg": "PostgreSQL", "piccolo": "PostgreSQL", "redis": "Redis", "arq": "Redis", "stripe": "Stripe"}


def _library_of(exc: BaseException) -> str:
    """The dependency whose client code raised `exc` (the innermost frame of a known library)."""
    found = "a dependency"
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", "")).split(".", 1)[0]
        found = _LIBRARIES.get(module, found)
        tb = tb.tb_next
    return found


def dependency_outage(exc: BaseException) -> str | None:
    """Which dependency `exc` says did not answer (`PostgreSQL`, `Redis`, `Stripe`, ...), or None.

    Connection-level failures only: refused or lost connections, connect and pool-acquire timeouts
    (`TimeoutError` is an `OSError`), a server shutting down or out of connections. A query error
    or a bug is not an outage. Explicit causes (`raise ... from exc`) are followed.
    """
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return None
        if isinstance(current, _POSTGRES_ERRORS):
            return "PostgreSQL"
        if isinstance(current, _REDIS_ERRORS):
            return "Redis"
        if isinstance(current, stripe.APIConnectionError):
            return "Stripe"
        if isinstance(current, OSError):  # no handler does file I/O: an OSError is a socket to a dependency
            return _library_of(current)
        current = current.__cause__
    return None


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    dependency = dependency_outage(exc)
    if dependency is not None:
        # Expected during an outage: one warning line, no traceback (and nothing from the message).
        log.warning(
            "%s unavailable on %s %s (%s); answered 503",
            dependency,
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return problem_response(
            request,
            status=503,
            type_=TYPE_BASE + Unavailable.slug,
            title=Unavailable.title,
            detail="A service this API depends on did not answer; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=HTTP_500_INTERNAL_SERVER_ERROR,
        type_=TYPE_BASE + "internal-error",
        title="Internal server error",
        detail="Something went wrong on our side; quote the request_id when reporting it.",
    )


exception_handlers: dict[type[Exception] | int, Any] = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
