"""Rules applied to the built OpenAPI document so it says what the server enforces.

`forbid_unknown_fields(app)`: a request body Struct declared `forbid_unknown_fields=True` answers 400
for a field it does not know, so its schema component says `additionalProperties: false` (Litestar
leaves it open). Every Struct reachable from a route's `data` parameter is visited, nested ones too
(e.g. the lines of a checkout). Call it once, after the app is built (like `document_problems`).
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler


def _structs_in(annotation: Any, found: dict[str, type[msgspec.Struct]]) -> None:
    """Every Struct class in `annotation` (through Optional, unions, lists, dicts, Annotated), recursively."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        if annotation.__name__ in found:
            return
        found[annotation.__name__] = annotation
        for hint in typing.get_type_hints(annotation, include_extras=True).values():
            _structs_in(hint, found)
        return
    for arg in typing.get_args(annotation):
        _structs_in(arg, found)


def forbid_unknown_fields(app: Litestar) -> None:
    """Mark `additionalProperties: false` on the component of every strict request body Struct."""
    structs: dict[str, type[msgspec.Struct]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.parsed_data_field is not None:
                _structs_in(handler.parsed_data_field.annotation, structs)
    schemas = app.openapi_schema.components.schemas
    for name, struct in structs.items():
        component = schemas.get(name)
        if component is not None and struct.__struct_config__.forbid_unknown_fields:
            component.additional_properties = False
