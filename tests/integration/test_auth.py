"""Sign-up, bearer tokens (hashed at rest), roles, and 404 for another principal's objects."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from marketplace.auth.service import AuthenticatedPrincipal, HeldBy, OwnedBy, create_principal, get_owned_or_404
from marketplace.auth.tables import ApiToken, Role
from marketplace.auth.tokens import hash_token
from marketplace.lib.problems import NotFound
from marketplace.lib.settings import Settings
from marketplace.sellers.tables import Seller
from tests.support.factories import BuyerSignupFactory, SellerSignupFactory, payload

Client = httpx.AsyncClient


async def sign_up_seller(client: Client, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/sellers", json=payload(SellerSignupFactory, **overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_seller_signup_returns_token_once_and_stores_only_its_hash(client: Client) -> None:
    body = await sign_up_seller(client)
    token = body["token"]
    assert token.startswith("mkt_")
    rows = await ApiToken.select(ApiToken.token_hash).where(ApiToken.token_hash == hash_token(token))
    assert len(rows) == 1
    assert not await ApiToken.exists().where(ApiToken.token_hash == token)
    me = await client.get("/buyers/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 403  # a seller token is not a buyer token
    assert me.headers["content-type"].startswith("application/problem+json")


async def test_buyer_signup_and_profile(client: Client) -> None:
    response = await client.post("/buyers", json=payload(BuyerSignupFactory, display_name="Ada"))
    assert response.status_code == 201
    token = response.json()["token"]
    me = await client.get("/buyers/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["display_name"] == "Ada"
    assert "token" not in me.json()


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer mkt_not-a-real-token-000000000000", "Basic dXNlcjpwYXNz", "mkt_raw-token"],
)
async def test_missing_or_bad_token_is_401_problem(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.get("/buyers/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401
    assert body["type"].endswith("unauthorized")


async def test_revoked_token_is_refused(client: Client) -> None:
    response = await client.post("/buyers", json=payload(BuyerSignupFactory))
    token = response.json()["token"]
    await ApiToken.update({ApiToken.revoked_at: ApiToken.created_at}).where(ApiToken.token_hash == hash_token(token))
    assert (await client.get("/buyers/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_ownership_helper_hides_other_principals_objects(client: Client) -> None:
    alice = await sign_up_seller(client)
    bob = await sign_up_seller(client)
    alice_row = await Seller.select().where(Seller.id == alice["seller"]["id"]).first()
    assert alice_row is not None
    alice_principal = AuthenticatedPrincipal(id=alice_row["principal"], role=Role.seller, display_name="a")
    bob_row = await Seller.select().where(Seller.id == bob["seller"]["id"]).first()
    assert bob_row is not None
    bob_principal = AuthenticatedPrincipal(id=bob_row["principal"], role=Role.seller, display_name="b")

    found = await get_owned_or_404(Seller, alice_row["id"], alice_principal, Seller.principal)
    assert found["id"] == alice_row["id"]
    with pytest.raises(NotFound) as info:
        await get_owned_or_404(Seller, alice_row["id"], bob_principal, Seller.principal, what="seller")
    # Exactly the message a missing id gets: nothing tells the caller the object exists.
    nobody = uuid.UUID(int=0)
    with pytest.raises(NotFound) as missing:
        await get_owned_or_404(Seller, nobody, bob_principal, Seller.principal, what="seller")
    assert str(info.value).replace(str(alice_row["id"]), "X") == str(missing.value).replace(str(nobody), "X")

    admin_id, _ = await create_principal(Role.admin, "root")
    admin = AuthenticatedPrincipal(id=admin_id, role=Role.admin, display_name="root")
    assert (await get_owned_or_404(Seller, alice_row["id"], admin, Seller.principal))["id"] == alice_row["id"]


async def test_ownership_helper_takes_several_owner_relations_a_held_secret_and_owner_only_routes(
    client: Client,
) -> None:
    """An order's shape of ownership, on sellers: a role-bound owner, a secret's holder without a principal,
    and a route only owners use (admins answered 404 there like anyone else)."""
    alice = await sign_up_seller(client)
    row = await Seller.select().where(Seller.id == alice["seller"]["id"]).first()
    assert row is not None
    seller_id = row["id"]
    as_seller = AuthenticatedPrincipal(id=row["principal"], role=Role.seller, display_name="a")
    as_buyer = AuthenticatedPrincipal(id=row["principal"], role=Role.buyer, display_name="a")  # same id, other role
    admin_id, _ = await create_principal(Role.admin, "root")
    admin = AuthenticatedPrincipal(id=admin_id, role=Role.admin, display_name="root")
    owners = (OwnedBy(Seller.principal, Role.seller),)

    def holding(secret: str | None) -> HeldBy:
        # Stands in for a guest's order token: the row's email is the "secret" here.
        return HeldBy(None if secret is None else Seller.email == secret)

    async def reads(principal: AuthenticatedPrincipal | None, *extra: HeldBy, admins: bool = True) -> bool:
        try:
            await get_owned_or_404(Seller, seller_id, principal, *owners, *extra, admins=admins, what="seller")
        except NotFound:
            return False
        return True

    assert await reads(as_seller)
    assert not await reads(as_buyer)  # the relation names its role
    assert not await reads(None)  # a guest showing nothing
    assert not await reads(None, holding("wrong@example.com"))
    assert await reads(None, holding(row["email"]))
    assert await reads(as_buyer, holding(row["email"]))  # the secret proves ownership whoever shows it
    assert await reads(admin)
    assert not await reads(admin, admins=False)
    assert await reads(as_seller, admins=False)


async def test_signup_validation_is_a_problem_and_stores_nothing(client: Client) -> None:
    email = "not-an-email"
    response = await client.post("/sellers", json={"display_name": "", "email": email, "country": "usa"})
    assert response.status_code == 400
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["type"].endswith("validation-error")
    assert body["errors"]
    assert not await Seller.exists().where(Seller.email == email)


async def test_unsupported_seller_country_is_refused(client: Client) -> None:
    response = await client.post("/sellers", json=payload(SellerSignupFactory, country="KP"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["key"] == "country"


async def test_admin_token_from_the_cli_opens_admin_routes(client: Client, settings: Settings) -> None:
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url.reveal(),
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_cli",
    }
    done = subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "admin", "create-token", "--name", "ops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = done.stdout.strip()
    assert token.startswith("mkt_")
    assert "not shown again" in done.stderr
    admin = await client.get("/admin/sellers", headers={"Authorization": f"Bearer {token}"})
    assert admin.status_code == 200
    seller = await client.post("/sellers", json=payload(SellerSignupFactory))
    as_seller = await client.get("/admin/sellers", headers={"Authorization": f"Bearer {seller.json()['token']}"})
    assert as_seller.status_code == 403


async def test_unknown_fields_are_rejected(client: Client) -> None:
    response = await client.post("/buyers", json={**payload(BuyerSignupFactory), "is_admin": True})
    assert response.status_code == 400


async def test_the_migration_forgets_onboarding_states_older_code_kept_in_synced_from(client: Client) -> None:
    """Older code stored `return:<state>` (a capability) in a field the API shows; the migration
    rewrites it to `return` and leaves every other value alone."""
    import importlib
    from datetime import UTC, datetime

    from marketplace.sellers.tables import ConnectedAccount

    seller = await sign_up_seller(client)
    state = uuid.uuid4()
    leaked, other = uuid.uuid4(), uuid.uuid4()
    for row_id, generation, synced_from in ((leaked, 1, f"return:{state}"), (other, 2, "event:evt_1")):
        await ConnectedAccount.insert(
            ConnectedAccount(
                id=row_id,
                seller=seller["seller"]["id"],
                generation=generation,
                profile="platform_managed",
                synced_from=synced_from,
                created_at=datetime.now(UTC),
            )
        )
    migration = importlib.import_module("migrations.marketplace_2026_11_25t23_00_00_000000")
    await (await migration.forwards()).run()
    rows = await ConnectedAccount.select(ConnectedAccount.id, ConnectedAccount.synced_from).where(
        ConnectedAccount.seller == seller["seller"]["id"]
    )
    assert {row["id"]: row["synced_from"] for row in rows} == {leaked: "return", other: "event:evt_1"}
