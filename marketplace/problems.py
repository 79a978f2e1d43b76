"""RFC 9457 problem details: the one shape every error of the API takes.

Domain code raises `Problem` (or a subclass); Litestar's own HTTP errors (validation, 404, 405, 401)
and anything unexpected are turned into the same shape by `exception_handlers`. Unexpected errors
never leak internals: the body carries only the request id to quote to support.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from marketplace.observability import current_request_id

log = logging.getLogger("marketplace.errors")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:marketplace:problem:"


class Problem(Exception):
    """An error a client can act on; `slug` becomes the problem `type`."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extra = extra


class NotFound(Problem):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    slug = "conflict"
    title = "Conflict"


class Unavailable(Problem):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class UpstreamError(Problem):
    status = 502
    slug = "stripe-error"
    title = "Payment provider error"


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_body(
    *, status: int, type_: str, title: str, detail: str | None, instance: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The RFC 9457 document every error of the API carries."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return body


def body_of(problem: Problem, instance: str) -> dict[str, Any]:
    return problem_body(
        status=problem.status,
        type_=TYPE_BASE + problem.slug,
        title=problem.title,
        detail=problem.detail,
        instance=instance,
        extra=problem.extra,
    )


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


def handle_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException):
        slug = "validation-error"
        extra["errors"] = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
        detail = "The request did not validate; see errors."
        status = 400 if status == 400 else status
    else:
        slug = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed"}.get(
            status, "http-error"
        )
        detail = exc.detail if exc.detail and exc.detail != _TITLES.get(status) else ""
    if status >= 500:
        log.error("http error %s: %s", status, exc.detail)
    return problem_response(
        request,
        status=status,
        type_=TYPE_BASE + slug,
        title=_TITLES.get(status, "Error"),
        detail=detail,
        headers=dict(exc.headers or {}),
        extra=extra,
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
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
