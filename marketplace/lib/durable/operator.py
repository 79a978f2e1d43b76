"""The operator surface of durable work, written once: list by status, show one, replay one or many.

Service functions (`list_page`, `replay_one`, `replay_all`) over a `Queue`, and `admin_controller`,
which builds the admin routes of one queue from its `AdminSurface`:

    GET  {path}?status=&{filter}=&limit=&cursor=   newest first, keyset pages (`next_cursor`)
    GET  {path}/{key}                              one row, with what the surface adds (a payload)
    POST {path}/{key}/replay                       fresh attempt budget; 404 unknown, 409 refused
    POST {path}/replay  {"status", filter, "limit"} every matching row, oldest first

The areas declare their surfaces (what a row looks like to an operator, which answers their routes
have always given) and the assembly mounts them; this module knows no area. A cursor that does not
decode is the one `invalid-cursor` problem of every paged list (`CursorFormat.position`).
"""

# No `from __future__ import annotations` here: the route handlers below are built per surface, and
# Litestar reads their parameter and return types from `__annotations__`, which they are given.

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from arq.connections import ArqRedis
from litestar import Controller, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter

from marketplace.lib.deps import ArqDep, SettingsDep
from marketplace.lib.durable import queue as durable
from marketplace.lib.durable.queue import Queue
from marketplace.lib.problems import Conflict, InvalidCursor, NotFound, Problem
from marketplace.lib.schemas import CursorFormat
from marketplace.lib.settings import Settings


class ReplayRefused(Exception):
    """`replay_one` replayed nothing: no such row (`current` None), or one that may not be replayed now."""

    def __init__(self, key: Any, current: asyncpg.Record | None) -> None:
        super().__init__(f"{key} was not replayed")
        self.key = key
        self.current = current


async def list_page(
    queue: Queue,
    cursor_format: CursorFormat[Any],
    *,
    status: str | None,
    where: Mapping[str, Any] | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[asyncpg.Record], str | None]:
    """One page of rows, newest first, and the cursor of the next page (None on the last one).

    Raises `InvalidCursor` for a cursor this API did not hand out.
    """
    before = cursor_format.position(cursor) if cursor else None
    rows = await durable.page(queue, status=status, where=where, limit=limit + 1, before=before)
    page = rows[:limit]
    last = page[-1] if page else None
    more = len(rows) > limit and last is not None
    next_cursor = cursor_format.encode(last[queue.time_column], last[queue.key_column]) if more and last else None
    return page, next_cursor


async def replay_one(queue: Queue, key: Any, *, where: Mapping[str, Any] | None = None) -> asyncpg.Record:
    """Replay one row (fresh attempt budget, due now) if the queue lets an operator replay it now.

    Raises `ReplayRefused` with the row as it is (None when there is none): under a live lease, not
    in a replayable status, or outside `where`.
    """
    rows = await durable.replay(queue, keys=[key], statuses=queue.replayable, where=where, limit=1)
    if rows:
        return rows[0]
    raise ReplayRefused(key, await durable.get(queue, key))


async def replay_all(
    queue: Queue, *, statuses: Sequence[str], where: Mapping[str, Any] | None = None, limit: int
) -> list[asyncpg.Record]:
    """Replay up to `limit` rows in `statuses` (and matching `where`), oldest first."""
    return await durable.replay(queue, statuses=statuses, where=where, limit=limit)


@dataclass(frozen=True)
class RouteDoc:
    """How one route of a surface is documented."""

    operation_id: str
    summary: str
    description: str


@dataclass(frozen=True)
class AdminSurface:
    """What one queue shows its operators, and how its routes answer (kept as they always were).

    Types are given as types (the routes' OpenAPI document is built from them); functions turn rows
    into answers. `replay_answer` is the body of both replays; `replay_one_shows_row` answers a
    replay of one row with the row itself (200) instead (the outbox's route has always done so).
    """

    queue: Queue
    path: str
    key_path: str  # the path parameter, e.g. "{event_id:str}"
    key_param: str  # its name, e.g. "event_id"
    key_type: Any  # its annotation (with its bounds)
    cursor: CursorFormat[Any]
    status_type: Any  # the `status` query parameter's type (an enum or a Literal)
    filter_column: str  # a second filter, an equality on this column …
    filter_type: Any  # … with this annotation (a QueryParameter naming it)
    summary_type: type
    summary: Callable[[asyncpg.Record], Any]
    page_type: type  # a Struct of `items: list[summary_type]` and `next_cursor`
    detail_type: type
    detail: Callable[[asyncpg.Record], Any]
    detail_columns: str
    bulk_filter_type: type  # the bulk replay's body: `status`, the filter's field, `limit`
    replay_answer_type: type
    replay_answer: Callable[[list[asyncpg.Record], ArqRedis], Awaitable[Any]]
    refusal: Callable[[Any, asyncpg.Record, Settings], Problem]  # why a row that exists was not replayed
    noun: str  # what a row is called in a 404: "stored event", "outbox message"
    list_doc: RouteDoc
    show_doc: RouteDoc
    replay_doc: RouteDoc
    replay_all_doc: RouteDoc
    guards: Sequence[Any] = ()  # who may use the routes (the areas pass the admin guard)
    scope: Callable[[Settings], Mapping[str, Any]] = lambda settings: {}  # what every replay is limited to
    replay_one_shows_row: bool = False


LIMIT = Annotated[int, QueryParameter(ge=1, le=200, description="At most this many rows (1 to 200).")]
_NO_DEFAULT = inspect.Parameter.empty
_ANNOTATED: Any = Annotated  # for annotations built from a surface's types at run time


def _declare(
    handler: Callable[..., Awaitable[Any]], parameters: Sequence[tuple[str, Any, Any]], returns: Any
) -> Callable[..., Awaitable[Any]]:
    """Give `handler` (which takes `self, **kwargs`) the signature Litestar reads: each parameter's
    name, type and default, and the return type (the OpenAPI document is built from them)."""
    signature = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    signature += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        for name, annotation, default in parameters
    ]
    handler.__signature__ = inspect.Signature(signature, return_annotation=returns)  # type: ignore[attr-defined]
    handler.__annotations__ = {name: annotation for name, annotation, _ in parameters} | {"return": returns}
    return handler


def admin_controller(surface: AdminSurface, name: str) -> type[Controller]:
    """The admin routes of one queue (guarded by the surface's guards), as a controller class named `name`."""
    queue = surface.queue
    key = surface.key_param

    async def list_rows(self: Controller, **query: Any) -> Any:
        filter_value = query["filter_value"]
        where = {surface.filter_column: filter_value} if filter_value is not None else {}
        rows, next_cursor = await list_page(
            queue, surface.cursor, status=query["status"], where=where, limit=query["limit"], cursor=query["cursor"]
        )
        return surface.page_type(items=[surface.summary(row) for row in rows], next_cursor=next_cursor)

    async def show_row(self: Controller, **path: Any) -> Any:
        row = await durable.get(queue, path[key], columns=surface.detail_columns)
        if row is None:
            raise NotFound(f"No {surface.noun} {path[key]}.")
        return surface.detail(row)

    async def replay_row(self: Controller, **given: Any) -> Any:
        settings: Settings = given["settings"]
        try:
            row = await replay_one(queue, given[key], where=surface.scope(settings))
        except ReplayRefused as refused:
            if refused.current is None:
                raise NotFound(f"No {surface.noun} {given[key]}.") from None
            raise surface.refusal(given[key], refused.current, settings) from None
        if surface.replay_one_shows_row:
            return surface.summary(row)
        return await surface.replay_answer([row], given["arq"])

    async def replay_rows(self: Controller, **given: Any) -> Any:
        data, settings = given["data"], given["settings"]
        filter_value = getattr(data, surface.filter_column, None)
        where = {**surface.scope(settings), **({surface.filter_column: filter_value} if filter_value else {})}
        rows = await replay_all(queue, statuses=[data.status], where=where, limit=data.limit)
        return await surface.replay_answer(rows, given["arq"])

    deps: list[tuple[str, Any, Any]] = [("arq", ArqDep, _NO_DEFAULT), ("settings", SettingsDep, _NO_DEFAULT)]
    list_handler = _declare(
        list_rows,
        [
            ("status", _ANNOTATED[surface.status_type | None, QueryParameter()], None),
            ("filter_value", surface.filter_type, None),
            ("limit", LIMIT, 50),
            ("cursor", Annotated[str | None, surface.cursor.parameter()], None),
        ],
        surface.page_type,
    )
    show_handler = _declare(show_row, [(key, surface.key_type, _NO_DEFAULT)], surface.detail_type)
    replay_handler = _declare(
        replay_row,
        [(key, surface.key_type, _NO_DEFAULT), *deps],
        surface.summary_type if surface.replay_one_shows_row else surface.replay_answer_type,
    )
    replay_all_handler = _declare(
        replay_rows,
        [("data", _ANNOTATED[surface.bulk_filter_type, Body(media_type=RequestEncodingType.JSON)], _NO_DEFAULT), *deps],
        surface.replay_answer_type,
    )
    attributes: dict[str, Any] = {
        "path": surface.path,
        "tags": ["admin"],
        "guards": list(surface.guards),
        "security": [{"BearerToken": []}],
        "list_rows": get("/", **_documented(surface.list_doc), raises=[InvalidCursor])(list_handler),
        "show_row": get(f"/{surface.key_path}", **_documented(surface.show_doc), raises=[NotFound])(show_handler),
        "replay_row": post(
            f"/{surface.key_path}/replay",
            **_documented(surface.replay_doc),
            status_code=200 if surface.replay_one_shows_row else 202,
            raises=[NotFound, Conflict],
        )(replay_handler),
        "replay_rows": post("/replay", **_documented(surface.replay_all_doc), status_code=202)(replay_all_handler),
    }
    return type(name, (Controller,), attributes)


def _documented(doc: RouteDoc) -> dict[str, Any]:
    return {"operation_id": doc.operation_id, "summary": doc.summary, "description": doc.description}
