"""Per-seller fee overrides: admins set, read and clear them; the checkout's fee policy follows them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from connect.fees import FeeOverride, FeePolicy, application_fee
from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.lib.problems import NotFound, Problem
from marketplace.lib.settings import Settings
from marketplace.sellers import fees
from marketplace.sellers.controllers import fee_policy_out
from marketplace.sellers.tables import Seller
from tests.conftest import with_settings
from tests.support.factories import SellerSignupFactory, payload

pytestmark = pytest.mark.integration

Client = httpx.AsyncClient


@pytest.fixture(scope="session")
async def admin(client: Client) -> dict[str, str]:
    _, token = await create_principal(Role.admin, "fee admin")
    return {"Authorization": f"Bearer {token}"}


async def sign_up_seller(client: Client) -> tuple[uuid.UUID, dict[str, str]]:
    response = await client.post("/sellers", json=payload(SellerSignupFactory))
    assert response.status_code == 201, response.text
    body = response.json()
    return uuid.UUID(body["seller"]["id"]), {"Authorization": f"Bearer {body['token']}"}


def policy_json(policy: FeePolicy) -> dict[str, Any]:
    return {
        "basis_points": policy.basis_points,
        "fixed": dict(policy.fixed),
        "minimum": dict(policy.minimum),
        "maximum": dict(policy.maximum),
    }


async def stored_override(seller_id: uuid.UUID) -> Any:
    """The raw column: SQL NULL reads as None (a JSON `null` would read as the string 'null')."""
    rows = await Seller.raw("SELECT fee_override::text AS raw FROM sellers WHERE id = {}", seller_id)
    return rows[0]["raw"]


async def test_admin_sets_reads_and_clears_an_override(
    client: Client, admin: dict[str, str], settings: Settings
) -> None:
    seller_id, _ = await sign_up_seller(client)
    url = f"/admin/sellers/{seller_id}"

    fresh = await client.get(f"{url}/fee-policy", headers=admin)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json() == {
        "seller_id": str(seller_id),
        "override": None,
        "effective": policy_json(settings.fees),
        "conflict": None,
    }
    assert await fees.fee_policy_for(settings, seller_id) == settings.fees

    body = {"basis_points": 500, "fixed": {"usd": 30, "kwd": 20}, "maximum": {"usd": 400}}
    put = await client.put(f"{url}/fee-override", json=body, headers=admin)
    assert put.status_code == 200, put.text
    expected = FeePolicy(
        basis_points=500, fixed={"usd": 30, "kwd": 20}, minimum=settings.fees.minimum, maximum={"usd": 400}
    )
    assert put.json()["override"] == {**body, "minimum": None}
    assert put.json()["effective"] == policy_json(expected)
    assert (await client.get(f"{url}/fee-policy", headers=admin)).json() == put.json()

    policy = await fees.fee_policy_for(settings, seller_id)
    assert policy == expected
    assert application_fee(2_000, "usd", policy) == 130  # 5 % + 30 cents
    assert application_fee(100_000, "usd", policy) == 400  # capped
    assert application_fee(2_000, "eur", policy) == 100  # no EUR fixed part: the whole field was replaced

    # A second PUT replaces the whole override: basis points go back to the platform's.
    again = await client.put(f"{url}/fee-override", json={"minimum": {"eur": 70}}, headers=admin)
    assert again.status_code == 200, again.text
    assert again.json()["override"] == {"basis_points": None, "fixed": None, "minimum": {"eur": 70}, "maximum": None}
    policy = await fees.fee_policy_for(settings, seller_id)
    assert policy.basis_points == settings.fees.basis_points
    assert application_fee(100, "eur", policy) == 70

    cleared = await client.delete(f"{url}/fee-override", headers=admin)
    assert cleared.status_code == 204
    assert await stored_override(seller_id) is None
    assert (await client.get(f"{url}/fee-policy", headers=admin)).json()["override"] is None
    assert await fees.fee_policy_for(settings, seller_id) == settings.fees
    assert (await client.delete(f"{url}/fee-override", headers=admin)).status_code == 204  # idempotent


async def test_an_empty_maximum_removes_every_cap(client: Client, admin: dict[str, str], settings: Settings) -> None:
    seller_id, _ = await sign_up_seller(client)
    response = await client.put(f"/admin/sellers/{seller_id}/fee-override", json={"maximum": {}}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["override"]["maximum"] == {}
    assert (await fees.fee_override_for(seller_id)) == FeeOverride(maximum={})


async def test_fee_routes_are_for_admins_only(client: Client) -> None:
    seller_id, seller = await sign_up_seller(client)
    url = f"/admin/sellers/{seller_id}"
    calls = [
        ("GET", f"{url}/fee-policy", None),
        ("PUT", f"{url}/fee-override", {"basis_points": 0}),
        ("DELETE", f"{url}/fee-override", None),
    ]
    for method, path, body in calls:
        assert (await client.request(method, path, json=body, headers=seller)).status_code == 403, method
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, method
        assert anonymous.headers["content-type"].startswith("application/problem+json")
    assert await stored_override(seller_id) is None


async def test_unknown_seller_is_404(client: Client, admin: dict[str, str]) -> None:
    url = f"/admin/sellers/{uuid.uuid4()}"
    for method, path, body in [
        ("GET", f"{url}/fee-policy", None),
        ("PUT", f"{url}/fee-override", {"basis_points": 100}),
        ("DELETE", f"{url}/fee-override", None),
    ]:
        response = await client.request(method, path, json=body, headers=admin)
        assert response.status_code == 404, (method, response.text)
        assert response.json()["type"].endswith("not-found")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"basis_points": 100, "surprise": 1}, "surprise"),
        ({"basis_points": -1}, "basis_points"),
        ({"basis_points": 10_001}, "basis_points"),
        ({"basis_points": "ten"}, "basis_points"),
        ({"fixed": {"usd": -5}}, "fixed"),
        ({"fixed": {"xyz": 5}}, "fixed"),
        ({"fixed": {"USD": 5}}, "fixed"),
        ({"minimum": {"usd": 500}, "maximum": {"usd": 100}}, "minimum"),
        ({"minimum": {"kwd": 15}}, "minimum"),
        ({"maximum": {"usd": 100_000_000}}, "maximum"),
    ],
)
async def test_bad_bodies_are_400_problems_and_nothing_is_stored(
    client: Client, admin: dict[str, str], body: dict[str, Any], key: str
) -> None:
    seller_id, _ = await sign_up_seller(client)
    url = f"/admin/sellers/{seller_id}/fee-override"
    earlier = {"basis_points": 250}
    assert (await client.put(url, json=earlier, headers=admin)).status_code == 200
    before = await stored_override(seller_id)

    response = await client.put(url, json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "urn:marketplace:problem:validation-error"
    assert problem["errors"], problem
    assert any(key in str(error) for error in problem["errors"]), problem["errors"]
    assert await stored_override(seller_id) == before
    assert await fees.fee_override_for(seller_id) == FeeOverride(basis_points=250)


def test_an_override_is_checked_against_the_platform_policy(settings: Settings) -> None:
    capped = with_settings(settings, fees=FeePolicy(basis_points=1000, maximum={"usd": 500}))
    with pytest.raises(Problem) as info:
        fees.validated_override(capped, basis_points=None, fixed=None, minimum={"usd": 600}, maximum=None)
    assert info.value.status == 400
    assert info.value.slug == "validation-error"
    assert "platform fee policy" in info.value.extra["errors"][0]["message"]
    # With its own maximum the same minimum is fine.
    override = fees.validated_override(capped, basis_points=None, fixed=None, minimum={"usd": 600}, maximum={})
    assert override == FeeOverride(minimum={"usd": 600}, maximum={})


async def test_an_override_the_platform_policy_outgrew_is_refused_not_guessed(
    client: Client, admin: dict[str, str], settings: Settings
) -> None:
    seller_id, _ = await sign_up_seller(client)
    await fees.set_fee_override(seller_id, FeeOverride(minimum={"usd": 600}))
    assert (await fees.fee_policy_for(settings, seller_id)).minimum == {"usd": 600}
    later = with_settings(settings, fees=FeePolicy(basis_points=1000, maximum={"usd": 500}))  # a new cap
    with pytest.raises(fees.FeePolicyConflict):
        await fees.fee_policy_for(later, seller_id)
    shown = fee_policy_out(later, seller_id, FeeOverride(minimum={"usd": 600}))
    assert shown.effective is None
    assert shown.conflict is not None
    assert "conflicts" in shown.conflict


async def test_store_functions_refuse_an_unknown_seller(settings: Settings, client: Client) -> None:
    with pytest.raises(NotFound):
        await fees.set_fee_override(uuid.uuid4(), FeeOverride(basis_points=1))
    with pytest.raises(NotFound):
        await fees.fee_policy_for(settings, uuid.uuid4())
