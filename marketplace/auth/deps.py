"""The caller's principal as a route handler names it (`principal`, provided by the app factory)."""

from __future__ import annotations

from typing import TypeAlias

from litestar.di import NamedDependency

from marketplace.auth.service import AuthenticatedPrincipal

PrincipalDep: TypeAlias = NamedDependency[AuthenticatedPrincipal]
