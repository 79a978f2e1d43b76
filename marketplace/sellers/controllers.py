"""Seller sign-up and profile routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, post
from litestar.params import JSONBody

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.deps import SettingsDep
from marketplace.sellers.schemas import SellerOut, SellerSignup, SellerSignupResult
from marketplace.sellers.tables import Seller


def seller_out(row: dict[str, Any]) -> SellerOut:
    return SellerOut(
        id=row["id"],
        display_name=row["display_name"],
        email=row["email"],
        country=row["country"],
        business_type=row["business_type"],
        account_profile=row["account_profile"],
        created_at=row["created_at"],
    )


class SellerSignupController(Controller):
    path = "/sellers"
    tags = ["sellers"]

    @post(
        "/",
        operation_id="signUpSeller",
        status_code=201,
        summary="Sign up as a seller; returns the token once",
    )
    async def sign_up(self, data: JSONBody[SellerSignup], settings: SettingsDep) -> SellerSignupResult:
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "display_name": data.display_name,
            "email": data.email,
            "country": data.country,
            "business_type": data.business_type,
            "account_profile": data.account_profile if settings.allow_seller_account_profile else None,
            "created_at": datetime.now(UTC),
        }
        async with Seller._meta.db.transaction():
            principal_id, token = await create_principal(Role.seller, data.display_name, data.email)
            await Seller.insert(Seller(principal=principal_id, **row))
        return SellerSignupResult(seller=seller_out(row), token=token)
