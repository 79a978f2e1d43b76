"""Piccolo configuration: the engine and the one app whose migrations live in `migrations/`."""

from piccolo.conf.apps import AppRegistry

from marketplace.db import DB

__all__ = ["APP_REGISTRY", "DB"]

APP_REGISTRY = AppRegistry(apps=["marketplace.piccolo_app"])
