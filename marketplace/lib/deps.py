"""Typed names for the dependencies the app factory provides, for route handler signatures."""

from __future__ import annotations

from typing import TypeAlias

import stripe
from arq.connections import ArqRedis
from litestar.di import NamedDependency
from piccolo.engine.postgres import PostgresEngine

from marketplace.auth.service import AuthenticatedPrincipal
from marketplace.lib.settings import Settings

SettingsDep: TypeAlias = NamedDependency[Settings]
DatabaseDep: TypeAlias = NamedDependency[PostgresEngine]  # the Piccolo engine (`db`): transactions, raw queries
StripeDep: TypeAlias = NamedDependency[stripe.StripeClient]
ArqDep: TypeAlias = NamedDependency[ArqRedis]
PrincipalDep: TypeAlias = NamedDependency[AuthenticatedPrincipal]
