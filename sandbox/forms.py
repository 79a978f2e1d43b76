"""Stripe's form encoding: decoding `a[b][0][c]=v` into nested params, and typed parameter readers."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qsl

from sandbox.errors import bad_param

Params = dict[str, Any]
_PART = re.compile(r"\[([^\[\]]*)\]")


def _split(key: str) -> list[str]:
    head, sep, rest = key.partition("[")
    if not sep:
        return [key]
    return [head, *_PART.findall("[" + rest)]


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def decode(body: str) -> Params:
    """Decode a form body or query string the way Stripe reads it (all leaves stay strings)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _split(key)
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `a[]=x` appends
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def req(params: Params, key: str, param: str | None = None) -> Any:
    if key not in params or params[key] == "":
        name = param or key
        raise bad_param(f"Missing required param: {name}.", param=name)
    return params[key]


def get_str(params: Params, key: str, param: str | None = None) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        name = param or key
        raise bad_param(f"Invalid string: {value!r}", param=name)
    return value


def get_int(params: Params, key: str, param: str | None = None, minimum: int | None = None) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    name = param or key
    try:
        number = int(str(value))
    except ValueError:
        raise bad_param(f"Invalid integer: {value}", param=name) from None
    if minimum is not None and number < minimum:
        raise bad_param(f"This value must be greater than or equal to {minimum}.", param=name)
    return number


def get_float(params: Params, key: str, param: str | None = None) -> float | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(str(value))
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise bad_param(f"Invalid decimal: {value}", param=param or key)
    return number


def get_bool(params: Params, key: str, param: str | None = None) -> bool | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise bad_param(f"Invalid boolean: {value}", param=param or key)


def get_enum(params: Params, key: str, choices: tuple[str, ...], param: str | None = None) -> str | None:
    value = get_str(params, key, param)
    if value is not None and value not in choices:
        name = param or key
        raise bad_param(f"Invalid {name}: must be one of {', '.join(choices)}", param=name)
    return value


def get_dict(params: Params, key: str, param: str | None = None) -> Params:
    value = params.get(key)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise bad_param("Invalid hash", param=param or key)
    return value


def get_list(params: Params, key: str, param: str | None = None) -> list[Any]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        raise bad_param("Invalid array", param=param or key)
    return value


def metadata(params: Params, current: dict[str, str] | None = None, key: str = "metadata") -> dict[str, str]:
    """Apply Stripe's metadata rules: merge keys, empty value unsets a key, empty string clears all."""
    result = dict(current or {})
    if key not in params:
        return result
    raw = params[key]
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise bad_param("Invalid hash", param=key)
    for k, v in raw.items():
        if not isinstance(v, str):
            raise bad_param(f"Invalid value for metadata key {k}", param=f"{key}[{k}]")
        if len(k) > 40:
            raise bad_param("Metadata keys can have up to 40 characters.", param=f"{key}[{k}]")
        if len(v) > 500:
            raise bad_param("Metadata values can have up to 500 characters.", param=f"{key}[{k}]")
        if v == "":
            result.pop(k, None)
        else:
            result[k] = v
    if len(result) > 50:
        raise bad_param("You can specify up to 50 metadata keys.", param=key)
    return result
