"""Rules applied to the built OpenAPI document so it says what the server enforces.

`forbid_unknown_fields(app)`: a request body Struct declared `forbid_unknown_fields=True` answers 400
for a field it does not know, so its schema component says `additionalProperties: false` (Litestar
leaves it open). Every Struct reachable from a route's `data` parameter is visited, nested ones too
(e.g. the lines of a checkout). Call it once, after the app is built (like `document_problems`).

`bodies_as_decoded(app)`: each field of those Structs is described by msgspec's own JSON Schema of it,
the decoder that answers the 400, instead of Litestar's rendering, which loses constraints: a bound of 0
on an optional field (`ge=0` is falsy to it) and every constraint on a dict's keys and values. A field
naming another Struct keeps Litestar's `$ref`; a Struct's docstring becomes its description. A Struct
may add rules across its fields that msgspec cannot check, as a JSON Schema in a `json_schema_extra`
class variable (the handler's service checks them); they are merged into its component.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIType, Reference, Schema


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


def _request_structs(app: Litestar) -> dict[str, type[msgspec.Struct]]:
    structs: dict[str, type[msgspec.Struct]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.parsed_data_field is not None:
                _structs_in(handler.parsed_data_field.annotation, structs)
    return structs


def forbid_unknown_fields(app: Litestar) -> None:
    """Mark `additionalProperties: false` on the component of every strict request body Struct."""
    schemas = app.openapi_schema.components.schemas
    for name, struct in _request_structs(app).items():
        component = schemas.get(name)
        if component is not None and struct.__struct_config__.forbid_unknown_fields:
            component.additional_properties = False


# JSON Schema keyword -> field of Litestar's `Schema` (its aliases: `anyOf` is `any_of`, and so on).
_FIELDS = {field.metadata.get("alias", field.name): field.name for field in dataclasses.fields(Schema)}
_SCHEMA_MAPS = {"properties", "patternProperties", "dependentSchemas"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_SCHEMAS = {"items", "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains"}


def _schema(value: Mapping[str, Any]) -> Schema | Reference:
    """A JSON Schema (a dict, as msgspec writes it) as Litestar's OpenAPI objects."""
    if "$ref" in value:
        return Reference(ref=value["$ref"])
    fields: dict[str, Any] = {}
    for keyword, item in value.items():
        if keyword not in _FIELDS:
            raise ValueError(f"JSON Schema keyword {keyword!r} has no OpenAPI Schema field")
        if keyword in _SCHEMA_MAPS:
            item = {key: _schema(sub) for key, sub in item.items()}
        elif keyword in _SCHEMA_LISTS:
            item = [_schema(sub) for sub in item]
        elif keyword in _SCHEMAS and isinstance(item, Mapping):
            item = _schema(item)
        elif keyword == "type":
            item = OpenAPIType(item) if isinstance(item, str) else [OpenAPIType(kind) for kind in item]
        fields[_FIELDS[keyword]] = item
    return Schema(**fields)


def bodies_as_decoded(app: Litestar) -> None:
    """Describe every request body Struct's fields as msgspec decodes them (see the module's docstring)."""
    schemas = app.openapi_schema.components.schemas
    for name, struct in _request_structs(app).items():
        component = schemas.get(name)
        if component is None:
            continue
        _, definitions = msgspec.json.schema_components([struct], ref_template="#/components/schemas/{name}")
        decoded = definitions[name]
        if component.description is None:  # the Struct's docstring: Litestar leaves it out
            component.description = decoded.get("description")
        for field, field_schema in decoded.get("properties", {}).items():
            if (
                component.properties is not None
                and field in component.properties
                and '"$ref"' not in json.dumps(field_schema)
            ):
                component.properties[field] = _schema(field_schema)
        if extra := getattr(struct, "json_schema_extra", None):
            rules = _schema(extra)
            if not isinstance(rules, Schema):
                raise TypeError(f"{name}.json_schema_extra must be a schema, not a reference")
            for field in dataclasses.fields(rules):
                if (rule := getattr(rules, field.name)) is not None:
                    setattr(component, field.name, rule)
