"""RFC 9457 problem details: the one shape every error of the API takes, at run time and in OpenAPI.

Domain code raises `Problem` (or a subclass); Litestar's own HTTP errors (validation, malformed
bodies, 404, 405, 401) and anything unexpected are turned into the same shape by
`exception_handlers`. A PostgreSQL, Redis or Stripe connection failure that escapes a handler is a
503 `unavailable` with `Retry-After` (`dependency_outage` decides); anything else unexpected is a 500
that never leaks internals: the body carries only the request id to quote to support.

`document_problems` makes the OpenAPI document say the same thing, in one place for every route: a
`ProblemDetails` schema component, `application/problem+json` responses for the statuses each
operation can answer (derived from its guards, parameters, body and `raises=`), and a `default`
problem response for everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.exceptions
import stripe
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from marketplace.observability import current_request_id

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler

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
    502: "Payment provider error",
    503: "Service unavailable",
}
# Slugs for Litestar's own HTTP errors; any other status is `http-error` (status and title say which).
_HTTP_SLUGS = {
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
    if detail and detail.casefold() not in (HTTPStatus(status).phrase.casefold(), _TITLES.get(status, "").casefold()):
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
    title = _TITLES.get(status, "Error")
    if isinstance(exc, ValidationException):
        slug = "validation-error"
        extra["errors"] = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
        detail = "The request did not validate; see errors."
    elif status == 400 and isinstance(exc.__cause__, SerializationException):
        # Litestar's wrapper for a body that does not decode (broken JSON); its detail says where.
        slug, title = "malformed-body", "Malformed request body"
        detail = exc.detail
    else:
        slug = _HTTP_SLUGS.get(status, "http-error")
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


# ---- OpenAPI ----------------------------------------------------------------------------------------

PROBLEM_SCHEMA = "ProblemDetails"
_STRING = Schema(type=OpenAPIType.STRING)

# What each documented status means, and the slug its example shows (docs/problems.md has the table).
_STANDARD_PROBLEMS: dict[int, tuple[str, str]] = {
    400: (
        "validation-error",
        "The body or parameters do not validate (`validation-error`, with `errors`), or the body is not "
        "JSON (`malformed-body`). Nothing was stored.",
    ),
    401: ("unauthorized", "No, malformed, unknown or revoked bearer token (`WWW-Authenticate: Bearer`)."),
    403: ("forbidden", "The token's role may not use this route."),
    404: ("not-found", "No such object, or it is not yours (answered exactly like a missing one)."),
    409: ("conflict", "The object is not in a state that allows this."),
    502: ("stripe-error", "Stripe refused the request or failed after retries."),
    503: ("unavailable", "A dependency (PostgreSQL, Redis, Stripe) is down; retry after `Retry-After` seconds."),
}


def problem_schema() -> Schema:
    """The `ProblemDetails` component: RFC 9457 members plus ours (`request_id`, `errors`, `checks`)."""
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status"],
        description="An RFC 9457 problem document (`application/problem+json`); docs/problems.md lists the types.",
        properties={
            "type": Schema(
                type=OpenAPIType.STRING,
                description="`urn:marketplace:problem:<slug>`, stable per kind of problem: branch on it.",
            ),
            "title": Schema(type=OpenAPIType.STRING, description="Short, human-readable summary of the type."),
            "status": Schema(type=OpenAPIType.INTEGER, description="The HTTP status code."),
            "detail": Schema(type=OpenAPIType.STRING, description="What happened in this occurrence."),
            "instance": Schema(type=OpenAPIType.STRING, description="The request path."),
            "request_id": Schema(
                type=OpenAPIType.STRING, description="Matches the `X-Request-ID` header and the server's log lines."
            ),
            "errors": Schema(
                type=OpenAPIType.ARRAY,
                description="`validation-error` only: each field that failed and why.",
                items=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={"key": _STRING, "message": _STRING, "source": _STRING},
                ),
            ),
            "checks": Schema(
                type=OpenAPIType.OBJECT,
                description="`not-ready` only: `ok` or `failed: <reason>` per dependency.",
                additional_properties=_STRING,
            ),
        },
    )


def _problem_doc(status: int | str, slugs: Iterable[tuple[str, str]], description: str) -> OpenAPIResponse:
    """One documented problem response: the schema reference, an example per slug, useful headers."""
    examples = list(dict.fromkeys(slugs))
    code = int(status) if str(status).isdigit() else HTTP_500_INTERNAL_SERVER_ERROR
    media = OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{PROBLEM_SCHEMA}"))
    if examples:
        slug, title = examples[0]
        media.example = {"type": TYPE_BASE + slug, "title": title, "status": code, "instance": "/…", "request_id": "…"}
    if len(examples) > 1:
        description += " Types: " + ", ".join(f"`{slug}`" for slug, _ in examples) + "."
    headers: dict[str, OpenAPIHeader | Reference] = {}
    if any(slug == "unauthorized" for slug, _ in examples):
        headers["WWW-Authenticate"] = OpenAPIHeader(schema=_STRING, description='`Bearer realm="marketplace"`')
    if any(slug == "unavailable" for slug, _ in examples):
        headers["Retry-After"] = OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER), description="Seconds.")
    return OpenAPIResponse(description=description, content={PROBLEM_JSON: media}, headers=headers or None)


def _handlers_by_operation(app: Litestar) -> dict[tuple[str, str], HTTPRouteHandler]:
    found: dict[tuple[str, str], HTTPRouteHandler] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    found[(route.path_format or "/", method.lower())] = handler
    return found


def _document_operation(path: str, operation: Operation, handler: HTTPRouteHandler | None) -> None:
    responses = operation.responses if operation.responses is not None else {}
    guarded = bool(handler and handler.resolve_guards())
    if guarded and not operation.security:
        operation.security = [{"BearerToken": []}]  # every guard here authenticates the bearer token
    params = [p for p in operation.parameters or [] if not isinstance(p, Reference)]
    wanted: dict[int, list[tuple[str, str]]] = {}
    explained: dict[str, str] = {}  # slug → the docstring of the `Problem` subclass that raises it

    def want(status: int, slug: str | None = None, title: str | None = None) -> None:
        slugs = wanted.setdefault(status, [])
        if slug is None and status in _STANDARD_PROBLEMS:
            slug = _STANDARD_PROBLEMS[status][0]
        if slug is not None:
            slugs.append((slug, title or _TITLES.get(status, "Error")))

    for exc in (handler.raises or []) if handler else []:
        if isinstance(exc, type) and issubclass(exc, Problem):
            want(exc.status, exc.slug, exc.title)
            if exc.__doc__ and exc.__doc__ is not Problem.__doc__:
                explained[exc.slug] = exc.__doc__.strip().split("\n\n")[0].replace("\n", " ")
        else:
            want(exc.status_code)
    for code in responses:  # Litestar's own error entries (validation), re-described below
        if code.isdigit() and int(code) >= 400 and int(code) not in wanted:
            want(int(code))
    if operation.request_body is not None or any(p.param_in != "path" for p in params):
        want(400)
    if guarded:
        want(401)
        want(403)
    if any(p.param_in == "path" for p in params) or "me" in path.split("/"):
        want(404)  # a path names an object (an id, or the caller's own `me`) that may be missing or not theirs
    if "health" not in (operation.tags or []):  # health routes report outages instead of failing on them
        want(503)
    for status, slugs in sorted(wanted.items()):
        standard = _STANDARD_PROBLEMS.get(status)
        if standard and any(slug == standard[0] for slug, _ in slugs):
            description = standard[1]
        else:
            description = " ".join(
                f"`{slug}`: {explained.get(slug, title + '.')}" for slug, title in dict.fromkeys(slugs)
            ) or (HTTPStatus(status).phrase + ".")
        responses[str(status)] = _problem_doc(status, slugs, description)
    responses["default"] = _problem_doc(
        "default", [("internal-error", "Internal server error")], "Any other error, as a problem document."
    )
    operation.responses = responses


def document_problems(app: Litestar) -> None:
    """Describe every error response of `app`'s OpenAPI document as `application/problem+json`.

    Runs once on the built document (which Litestar caches and serves from `/schema`), so every route,
    whoever wrote it, is documented by the same rules:
    400 when it has a body or query/header parameters; 401 and 403 when a guard protects it (and the
    bearer security requirement); 404 when its path names an object (a path parameter or `me`); 503
    for every route outside `health`; whatever its `raises=` lists (a `Problem` subclass brings its
    slug); and `default` for anything else (500 `internal-error`).
    """
    openapi = app.openapi_schema
    openapi.components.schemas[PROBLEM_SCHEMA] = problem_schema()
    handlers = _handlers_by_operation(app)
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(item, method)
            if operation is not None:
                _document_operation(path, operation, handlers.get((path, method)))


class TooManyRequests(Problem):
    """Too many requests for this resource or from this address; nothing done. Retry after `Retry-After` seconds."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"
