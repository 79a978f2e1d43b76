"""An `Idempotency-Key` is bound to the body it first came with: the same key with another body is a 422
`idempotency-key-reused` that writes nothing (docs/orders.md, "Idempotency-Key")."""

from __future__ import annotations

import uuid

import pytest

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from tests.e2e.conftest import Stack
from tests.e2e.test_checkout import active_seller, bearer, checkout, listing, order_count

pytestmark = pytest.mark.integration


async def test_a_key_reused_with_another_body_is_refused_and_writes_nothing(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    mug, print_ = await listing(stack, auth, stock=None), await listing(stack, auth, title="Print", stock=None)
    key = {"Idempotency-Key": f"attempt-{uuid.uuid4()}"}
    first = await checkout(stack, [(mug["id"], 1), (print_["id"], 2)], email="key@example.com", headers=key)
    assert first.status_code == 201, first.text
    # The same request, lines in another order and the address in other case: the same order.
    again = await checkout(stack, [(print_["id"], 2), (mug["id"], 1)], email="KEY@example.com", headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["order"]["id"] == first.json()["order"]["id"]
    before = await order_count()
    for lines, email in [
        ([(mug["id"], 2), (print_["id"], 2)], "key@example.com"),  # another quantity
        ([(mug["id"], 1)], "key@example.com"),  # a line fewer
        ([(mug["id"], 1), (print_["id"], 2)], "other@example.com"),  # another buyer
    ]:
        response = await checkout(stack, lines, email=email, headers=key)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["type"] == "urn:marketplace:problem:idempotency-key-reused", problem
        assert "new key" in problem["detail"]
    assert await order_count() == before
    # A new key is a new checkout.
    fresh = await checkout(
        stack, [(mug["id"], 2)], email="key@example.com", headers={"Idempotency-Key": "k2" + key["Idempotency-Key"]}
    )
    assert fresh.status_code == 201, fresh.text


async def test_a_buyers_keys_are_their_own(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    mug = await listing(stack, auth, stock=None)
    key = {"Idempotency-Key": f"buyer-attempt-{uuid.uuid4()}"}
    tokens = [(await create_principal(Role.buyer, f"key buyer {n}", f"key-buyer-{n}@example.com"))[1] for n in (1, 2)]
    first = await checkout(stack, [(mug["id"], 1)], headers=key | bearer(tokens[0]))
    assert first.status_code == 201, first.text
    refused = await checkout(stack, [(mug["id"], 3)], headers=key | bearer(tokens[0]))
    assert refused.status_code == 422, refused.text
    # Another buyer (or a guest) using the same key string is another scope: no collision.
    assert (await checkout(stack, [(mug["id"], 3)], headers=key | bearer(tokens[1]))).status_code == 201
    assert (await checkout(stack, [(mug["id"], 3)], email="g@example.com", headers=key)).status_code == 201


async def test_the_openapi_document_names_the_problem_on_checkout(stack: Stack) -> None:
    document = (await stack.api.get("/schema/openapi.json")).json()
    responses = document["paths"]["/checkout"]["post"]["responses"]
    assert "idempotency-key-reused" in str(responses["422"]), responses["422"]
