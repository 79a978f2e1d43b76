"""RFC 9457 problem details: the one shape every error of the API takes.

This module holds the problem types (`Problem` and the generic ones domain code raises) and the body
every error carries. `marketplace.lib.problem_handlers` turns every exception (ours, Litestar's own HTTP
errors, anything unexpected) into that body at run time; `marketplace.lib.problem_docs` makes the OpenAPI
document say the same thing, for every route, in one place.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar.exceptions import HTTPException

from marketplace.lib.observability import current_request_id

log = logging.getLogger("marketplace.errors")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:marketplace:problem:"
RETRY_AFTER_SECONDS = 5


class Problem(HTTPException):
    """An error a client can act on; `slug` becomes the problem `type`.

    A Litestar `HTTPException` only so that route handlers can list problems in `raises=[...]`, which
    `document_problems` turns into documented problem responses; `handle_problem` renders it.
    """

    status: int = 400
    status_code: int = 400  # always equal to `status` (Litestar reads it from the class for `raises=`)
    slug: str = "bad-request"
    title: str = "Bad request"
    headers: dict[str, str]
    extra: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status_code = cls.status

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
        Exception.__init__(self, detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.status_code = self.status
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extra = extra

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status} {self.slug}: {self.detail})"


class NotFound(Problem):
    status = 404
    slug = "not-found"
    title = "Not found"


class InvalidCursor(Problem):
    """A page cursor this API did not hand out: the one problem of every paged list."""

    slug = "invalid-cursor"
    title = "Invalid cursor"


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


class TooManyRequests(Problem):
    """Too many requests for this resource or from this address; nothing done. Retry after `Retry-After` seconds."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


TITLES = {
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
    502: "Payment provider error",
    503: "Service unavailable",
}
# Slugs for Litestar's own HTTP errors; any other status is `http-error` (status and title say which).
HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
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
