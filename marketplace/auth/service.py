"""Issuing tokens, resolving a bearer token to a principal, and the ownership rule."""

from __future__ import annotations

import functools
import operator
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from piccolo.columns import Column
from piccolo.custom_types import Combinable
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


@dataclass(frozen=True, slots=True)
class OwnedBy:
    """One way to own a row: being the principal whose id `column` holds (it may follow foreign keys,
    `Listing.seller.principal`), with the role `role` when one is given."""

    column: Column
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class HeldBy:
    """One way to own a row without a principal: holding a secret the row grants (a guest's order token).
    `where` is the condition on the row that the secret shown matches; None when none was shown."""

    where: Combinable | None


Owner = Column | OwnedBy | HeldBy


def _owner_condition(owner: Owner, principal: AuthenticatedPrincipal | None) -> Combinable | None:
    if isinstance(owner, HeldBy):
        return owner.where
    if isinstance(owner, Column):
        owner = OwnedBy(owner)
    if principal is None or (owner.role is not None and principal.role is not owner.role):
        return None
    return owner.column == principal.id


async def get_owned_or_404(
    table: type[T],
    object_id: Any,
    principal: AuthenticatedPrincipal | None,
    *owners: Owner,
    admins: bool = True,
    what: str | None = None,
) -> dict[str, Any]:
    """Fetch `table` row `object_id` if the caller owns it in one of the ways `owners` declares, else 404.

    The one ownership rule of every route that takes an owned object's id: another principal's object
    answers exactly like a missing one (never 403), so ids cannot be probed; admins own everything unless
    `admins=False` (a route only an owner may use, e.g. paying an order). `principal` is None for a guest.
    """
    missing = NotFound(f"No {what or table._meta.tablename.rstrip('s')} with id {object_id}.")
    query = table.select().where(table._meta.primary_key == object_id)
    if not (admins and principal is not None and principal.is_admin):
        conditions = [c for c in (_owner_condition(o, principal) for o in owners) if c is not None]
        if not conditions:
            raise missing  # nothing the caller showed could own any row: no need to look
        query = query.where(functools.reduce(operator.or_, conditions))
    row = await query.first()
    if row is None:
        raise missing
    return dict(row)
