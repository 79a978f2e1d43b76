"""Buyer sign-up and profile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, get, post
from litestar.params import JSONBody

from marketplace.auth.deps import PrincipalDep
from marketplace.auth.guards import buyer_only
from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.buyers.schemas import BuyerOut, BuyerSignup, BuyerSignupResult
from marketplace.buyers.tables import Buyer
from marketplace.lib.deps import DatabaseDep
from marketplace.lib.problems import NotFound


def _out(row: dict[str, object]) -> BuyerOut:
    return BuyerOut(
        id=row["id"],  # type: ignore[arg-type]
        display_name=row["display_name"],  # type: ignore[arg-type]
        email=row["email"],  # type: ignore[arg-type]
        created_at=row["created_at"],  # type: ignore[arg-type]
    )


class BuyerController(Controller):
    path = "/buyers"
    tags = ["buyers"]

    @post(
        "/",
        operation_id="signUpBuyer",
        status_code=201,
        summary="Sign up as a buyer; returns the token once",
        description=(
            "Creates the buyer and a buyer bearer token, answered once in `token` (only its hash is stored): "
            "send it as `Authorization: Bearer …` to check out signed in and to list your orders."
        ),
    )
    async def sign_up(self, data: JSONBody[BuyerSignup], db: DatabaseDep) -> BuyerSignupResult:
        async with db.transaction():
            principal_id, token = await create_principal(Role.buyer, data.display_name, data.email)
            row: dict[str, Any] = {
                "id": uuid.uuid4(),
                "display_name": data.display_name,
                "email": data.email,
                "created_at": datetime.now(UTC),
            }
            await Buyer.insert(Buyer(principal=principal_id, **row))
        return BuyerSignupResult(buyer=_out(row), token=token)

    @get(
        "/me",
        operation_id="getMyBuyerProfile",
        summary="The buyer's profile",
        description="The profile of the buyer whose token this is; 403 for a seller's or an admin's token.",
        guards=[buyer_only],
        security=[{"BearerToken": []}],
    )
    async def me(self, principal: PrincipalDep) -> BuyerOut:
        row = await Buyer.select().where(Buyer.principal == principal.id).first()
        if row is None:
            raise NotFound("No buyer profile for this token.")
        return _out(row)
