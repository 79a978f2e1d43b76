"""Signed events that are not what their type promises, or about objects nobody made: a final outcome at
once, with its reason, never retried until dead (docs/webhooks.md, "Malformed and unknown objects")."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.orders.tables import Order
from marketplace.sellers.tables import ConnectedAccount, Seller
from tests.webhooks.conftest import make_event, post_event, stored
from webhooks.worker import process_event

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_events")]


async def destination_order() -> uuid.UUID:
    """A pending destination-charge order (its session would live on the platform), written directly."""
    now = datetime.now(UTC)
    principal_id, _ = await create_principal(Role.seller, "Malformed events shop", "shop@example.com")
    seller_id, account_id = uuid.uuid4(), uuid.uuid4()
    await Seller.insert(
        Seller(
            id=seller_id,
            principal=principal_id,
            display_name="Malformed events shop",
            email="shop@example.com",
            country="US",
            business_type="individual",
            created_at=now,
        )
    )
    await ConnectedAccount.insert(
        ConnectedAccount(
            id=account_id,
            seller=seller_id,
            stripe_account_id=f"acct_test{uuid.uuid4().hex[:12]}",
            profile="platform_managed",
            status="active",
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            created_at=now,
        )
    )
    order_id = uuid.uuid4()
    await Order.insert(
        Order(
            id=order_id,
            email="buyer@example.com",
            seller=seller_id,
            account=account_id,
            stripe_account_id="acct_unused",
            charge_type="destination",
            currency="usd",
            subtotal=2500,
            application_fee=250,
            total=2500,
            status="pending",
            cart_key=uuid.uuid4().hex,
            checkout_expires_at=now + timedelta(hours=1),
            created_at=now,
            updated_at=now,
        )
    )
    return order_id


async def outcome_of(wh_client: Any, worker_ctx: dict[str, Any], event: dict[str, Any], endpoint: str) -> str:
    response = await post_event(wh_client, event, endpoint=endpoint)
    assert response.status_code == 200, response.text
    return await process_event(worker_ctx, event["id"])


@pytest.mark.parametrize("obj", ["cs_test_a_string", None, 42, ["cs_test_x"]])
@pytest.mark.parametrize("event_type", ["checkout.session.completed", "refund.updated"])
async def test_an_event_whose_object_is_not_an_object_is_dead_at_once_with_its_reason(
    wh_client: Any, worker_ctx: dict[str, Any], obj: Any, event_type: str
) -> None:
    event = make_event(event_type)
    event["data"]["object"] = obj
    assert await outcome_of(wh_client, worker_ctx, event, "platform") == "dead"
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert "data.object" in row["last_error"], row
    assert await process_event(worker_ctx, event["id"]) == "skipped"  # not offered again


async def test_metadata_that_is_not_an_object_is_dead_at_once(wh_client: Any, worker_ctx: dict[str, Any]) -> None:
    event = make_event("checkout.session.completed", obj={"id": "cs_test_meta", "metadata": "order_id=1"})
    assert await outcome_of(wh_client, worker_ctx, event, "platform") == "dead"
    row = await stored(event["id"])
    assert row is not None
    assert "metadata" in row["last_error"], row


async def test_a_checkout_session_nobody_created_is_not_ours_at_once(
    wh_client: Any, worker_ctx: dict[str, Any], sandbox: Any
) -> None:
    """A real order's id in the metadata of a session id Stripe does not know: no retry will find it."""
    order_id = await destination_order()
    obj = {"id": f"cs_test_{uuid.uuid4().hex}", "object": "checkout.session", "metadata": {"order_id": str(order_id)}}
    event = make_event("checkout.session.completed", obj=obj)
    assert await outcome_of(wh_client, worker_ctx, event, "platform") == "not_ours"
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("not_ours", 1)
    assert "does not exist" in row["last_error"], row
    assert (await Order.select(Order.status).where(Order.id == order_id).first() or {})["status"] == "pending"


async def test_the_security_line_names_the_endpoint_the_event_came_to(
    wh_client: Any, worker_ctx: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """An event carrying a connected account, delivered to the platform endpoint, about a session that
    lives on the platform: the line says "platform endpoint", where it arrived."""
    order_id = await destination_order()
    obj = {"id": f"cs_test_{uuid.uuid4().hex}", "object": "checkout.session", "metadata": {"order_id": str(order_id)}}
    event = make_event("checkout.session.completed", obj=obj, account="acct_intruder")
    with caplog.at_level(logging.WARNING, logger="marketplace.security"):
        assert await outcome_of(wh_client, worker_ctx, event, "platform") == "not_ours"
    lines = [r.getMessage() for r in caplog.records if r.name == "marketplace.security"]
    assert len(lines) == 1, lines
    assert "'acct_intruder' on the platform endpoint" in lines[0], lines
