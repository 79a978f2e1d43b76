"""Which parameters Stripe knows, read from the pinned stripe-python's TypedDicts (`stripe.params`).

A name the SDK does not declare gets Stripe's "Received unknown parameter" error; a name it declares but
the endpoint does not emulate gets the sandbox's "does not emulate" error.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from functools import cache
from typing import Any

from stripe import _request_options
from stripe._stripe_context import StripeContext
from typing_extensions import is_typeddict

from sandbox.errors import StripeError, bad_param, not_emulated

Schema = type  # a TypedDict class from `stripe.params`
_OPTIONS = frozenset(_request_options.RequestOptions.__annotations__)
# Every *Params TypedDict inherits RequestOptions, whose annotations name things of its own module.
_LOCALS = {**vars(_request_options), "StripeContext": StripeContext}
_INDEX = re.compile(r"\[\d+\]")


@cache
def fields(schema: Schema) -> dict[str, Any]:
    """The parameters a TypedDict declares (request options excluded), with their resolved types."""
    hints = typing.get_type_hints(schema, localns=_LOCALS)
    return {k: v for k, v in hints.items() if k not in _OPTIONS}


def nested(hint: Any) -> Schema | None:
    """The TypedDict a hash parameter (or each item of an array parameter) must follow, if any."""
    if is_typeddict(hint):
        return typing.cast(Schema, hint)
    for arg in typing.get_args(hint):
        found = nested(arg)
        if found is not None:
            return found
    return None


def literals(hint: Any) -> tuple[str, ...]:
    """The enum values of a `Literal[...]` (possibly inside Optional/Union/List) type."""
    if typing.get_origin(hint) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(hint))
    return tuple(v for arg in typing.get_args(hint) for v in literals(arg))


def check(params: dict[str, Any], schema: Schema | None, emulated: Iterable[str]) -> None:
    """Refuse unknown and unemulated parameters. `emulated` lists paths (`a`, `a[b]`; array indexes left
    out): a listed path accepts everything the SDK declares below it; an unlisted path is accepted only
    where something below it is listed."""
    _check(params, schema, frozenset(emulated), "")


def _check(params: dict[str, Any], schema: Schema | None, emulated: frozenset[str] | None, prefix: str) -> None:
    known = fields(schema) if schema is not None else None
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key == "expand" and not prefix:
            continue  # handled by the router for every endpoint
        if known is not None and key not in known:
            raise _unknown(name)
        inner: frozenset[str] | None = None  # None: everything the SDK declares below is accepted
        if emulated is not None:
            path = _INDEX.sub("", name)
            if path not in emulated:
                inner = frozenset(e for e in emulated if e.startswith(path + "["))
                if not inner:
                    raise _unknown(name) if known is None else not_emulated(f"the parameter `{name}`", name)
        sub = nested(known[key]) if known is not None else None
        if sub is None and inner is None:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                _check(item, sub, inner, f"{name}[{i}]" if isinstance(value, list) else name)


def _unknown(name: str) -> StripeError:
    return bad_param(f"Received unknown parameter: {name}", name)
