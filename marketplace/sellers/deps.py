"""The current seller: one injected dependency instead of each route looking the seller up by its principal."""

from __future__ import annotations

from typing import TypeAlias

from litestar.di import NamedDependency, Provide

from marketplace.auth.deps import PrincipalDep
from marketplace.sellers.accounts import SellerRow, seller_for_principal


async def current_seller(principal: PrincipalDep) -> SellerRow:
    """Dependency (behind a seller guard): the seller profile of the authenticated seller principal."""
    return await seller_for_principal(principal.id)


CurrentSellerDep: TypeAlias = NamedDependency[SellerRow]
# For a controller's `dependencies`: its handlers take `seller: CurrentSellerDep`.
CURRENT_SELLER = {"seller": Provide(current_seller)}
