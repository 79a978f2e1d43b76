"""Typed names for the dependencies the app factory provides, for route handler signatures.

The caller's principal is the auth area's (`marketplace.auth.deps.PrincipalDep`): the plumbing knows no area."""

from __future__ import annotations

from typing import TypeAlias

import stripe
from arq.connections import ArqRedis
from litestar.di import NamedDependency
from piccolo.engine.postgres import PostgresEngine

from marketplace.lib.settings import Settings

SettingsDep: TypeAlias = NamedDependency[Settings]
DatabaseDep: TypeAlias = NamedDependency[PostgresEngine]  # the Piccolo engine (`db`): transactions, raw queries
StripeDep: TypeAlias = NamedDependency[stripe.StripeClient]
ArqDep: TypeAlias = NamedDependency[ArqRedis]
