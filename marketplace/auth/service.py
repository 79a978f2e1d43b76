"""Issuing tokens, resolving a bearer token to a principal, and the ownership rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from piccolo.columns import Column
from piccolo.table import Table

from marketplace.auth.tables import ApiToken, Principal, Role
from marketplace.auth.tokens import hash_token, looks_like_token, mint_token
from marketplace.lib.problems import NotFound


@dataclass(frozen=True, slots=True)
class AuthenticatedPrincipal:
    id: uuid.UUID
    role: Role
    display_name: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


async def create_principal(role: Role, display_name: str, email: str | None = None) -> tuple[uuid.UUID, str]:
    """Insert a principal and its first token in one transaction; return (id, plaintext token)."""
    principal_id = uuid.uuid4()
    token = mint_token()
    now = datetime.now(UTC)
    async with Principal._meta.db.transaction():
        await Principal.insert(
            Principal(id=principal_id, role=role.value, display_name=display_name, email=email, created_at=now)
        )
        await ApiToken.insert(
            ApiToken(id=uuid.uuid4(), principal=principal_id, token_hash=hash_token(token), created_at=now)
        )
    return principal_id, token


async def issue_token(principal_id: uuid.UUID, label: str = "") -> str:
    token = mint_token()
    await ApiToken.insert(
        ApiToken(
            id=uuid.uuid4(),
            principal=principal_id,
            token_hash=hash_token(token),
            label=label,
            created_at=datetime.now(UTC),
        )
    )
    return token


async def authenticate(token: str) -> AuthenticatedPrincipal | None:
    """The principal a live token belongs to, or None."""
    if not looks_like_token(token):
        return None
    row = (
        await ApiToken.select(ApiToken.principal.id, ApiToken.principal.role, ApiToken.principal.display_name)
        .where((ApiToken.token_hash == hash_token(token)) & ApiToken.revoked_at.is_null())
        .first()
    )
    if row is None:
        return None
    return AuthenticatedPrincipal(
        id=row["principal.id"], role=Role(row["principal.role"]), display_name=row["principal.display_name"]
    )


T = TypeVar("T", bound=Table)


async def get_owned_or_404(
    table: type[T],
    object_id: Any,
    principal: AuthenticatedPrincipal,
    owner: Column,
    *,
    what: str | None = None,
) -> dict[str, Any]:
    """Fetch `table` row `object_id` if `principal` owns it (admins own everything), else 404.

    Another principal's object answers exactly like a missing one, so ids cannot be probed.
    """
    query = table.select().where(table._meta.primary_key == object_id)
    if not principal.is_admin:
        query = query.where(owner == principal.id)
    row = await query.first()
    if row is None:
        raise NotFound(f"No {what or table._meta.tablename.rstrip('s')} with id {object_id}.")
    return dict(row)
