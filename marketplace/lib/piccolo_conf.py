"""Piccolo configuration: the engine and the one app whose migrations live in `migrations/`.

Our own processes point the engine at their settings' database before Piccolo reads this module
(`marketplace.lib.migrate`, `start_database`). Piccolo's own CLI
(`PICCOLO_CONF=marketplace.lib.piccolo_conf piccolo migrations …`) does not: there the database is the
configured one, DATABASE_URL or, in development, the running `make run` stack's (`.data/stack.json`),
and with neither the command stops with one line instead of guessing a server on localhost.
"""

import os
import sys

from piccolo.conf.apps import AppRegistry

from marketplace.lib.db import DB, configure_database

__all__ = ["APP_REGISTRY", "DB"]

APP_REGISTRY = AppRegistry(apps=["marketplace.lib.piccolo_app"])


def _configure_for_piccolo_cli() -> None:
    from marketplace.devtools.devstack import fill_from_stack, stack_hint

    env = dict(os.environ)
    fill_from_stack(env)
    url = env.get("DATABASE_URL")
    if not url:
        sys.exit(f"piccolo: no database configured: {stack_hint(env)}")
    configure_database(url)


if "piccolo.main" in sys.modules:  # run by the `piccolo` command, not imported by one of our processes
    _configure_for_piccolo_cli()
