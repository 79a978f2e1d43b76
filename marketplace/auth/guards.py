"""Role guards: authenticate the bearer token once per request and check the role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from marketplace.auth.service import AuthenticatedPrincipal, authenticate
from marketplace.auth.tables import Role

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]
_SCOPE_KEY = "marketplace.principal"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="marketplace"'}


async def _principal_from(connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticatedPrincipal:
    cached = connection.scope.get(_SCOPE_KEY)
    if isinstance(cached, AuthenticatedPrincipal):
        return cached
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("A bearer token is required.", headers=_CHALLENGE)
    principal = await authenticate(token.strip())
    if principal is None:
        raise NotAuthorizedException("The bearer token is not valid.", headers=_CHALLENGE)
    connection.scope[_SCOPE_KEY] = principal  # type: ignore[literal-required]
    return principal


def require_role(*roles: Role) -> Guard:
    """A guard admitting authenticated principals whose role is one of `roles`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await _principal_from(connection)
        if principal.role not in roles:
            raise PermissionDeniedException(f"This route is for {', '.join(r.value for r in roles)} accounts.")

    return guard


async def current_principal(request: ASGIConnection[Any, Any, Any, Any]) -> AuthenticatedPrincipal:
    """Dependency: the principal a guard already authenticated."""
    return await _principal_from(request)


seller_only = require_role(Role.seller)
buyer_only = require_role(Role.buyer)
admin_only = require_role(Role.admin)


async def optional_principal(request: ASGIConnection[Any, Any, Any, Any]) -> AuthenticatedPrincipal | None:
    """Dependency for routes open to guests: None without an `Authorization` header, the principal with
    a valid bearer token, and 401 for a header that is not one (never silently a guest)."""
    if not request.headers.get("authorization"):
        return None
    return await _principal_from(request)
