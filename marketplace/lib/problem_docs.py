"""The OpenAPI side of problem details: `document_problems` gives every operation of the built
document a `ProblemDetails` schema component, `application/problem+json` responses for the statuses it
can answer (derived from its guards, parameters, body and `raises=`), and a `default` problem response.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler

from marketplace.lib.problems import PROBLEM_JSON, TITLES, TYPE_BASE, Problem

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
    if status in (429, 503):  # every 429 and 503 we answer carries it
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
            slugs.append((slug, title or TITLES.get(status, "Error")))

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
    elif any("BearerToken" in requirement for requirement in operation.security or []):
        want(401)  # a token is optional here (a guest may call it), but a bad one is refused
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
