"""Handler modules: each registers its event types with `webhooks.registry.handles`.

Add a module here and its handlers are dispatched by the worker and subscribed to by
`marketplace stripe register-webhooks`. The registry imports them on first use (`load_handlers`).
"""

from __future__ import annotations

import importlib

HANDLER_MODULES: list[str] = [
    "webhooks.handlers.accounts",
    "webhooks.handlers.checkout",
    "webhooks.handlers.refunds",
]


def load_handlers() -> None:
    """Import every handler module so its `@handles` decorators run."""
    for module in HANDLER_MODULES:
        importlib.import_module(module)
