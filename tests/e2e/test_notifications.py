"""What a paid order tells whom, and what the logs keep of it: the fulfilment request is the seller's, and
no email address of a buyer or a guest reaches a log line on the way (sign-up, checkout, notifications)."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from marketplace.lib.db import connection
from marketplace.lib.observability import json_handler
from tests.e2e.conftest import Stack
from tests.e2e.test_checkout import active_seller, checkout, listing
from tests.e2e.test_confirm import eventually_status, guest_order

pytestmark = pytest.mark.integration


async def notification(dedupe_key: str) -> dict[str, Any] | None:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT principal, email, kind FROM notifications WHERE dedupe_key = $1", dedupe_key)
    return dict(row) if row else None


async def principal_of_seller(seller_id: str) -> uuid.UUID:
    async with connection() as conn:
        principal: uuid.UUID = await conn.fetchval("SELECT principal FROM sellers WHERE id = $1", uuid.UUID(seller_id))
    return principal


class CapturedLog:
    """Every record at INFO and above, through the process's own handler (JSON, redacting), into a buffer."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = json_handler()
        self.handler.setStream(self.stream)

    async def text(self) -> str:
        self.handler.flush()  # what is still batched
        return self.stream.getvalue()


@contextmanager
def captured_log() -> Iterator[CapturedLog]:
    log = CapturedLog()
    root = logging.getLogger()
    level = root.level
    root.addHandler(log.handler)
    root.setLevel(logging.INFO)
    try:
        yield log
    finally:
        root.setLevel(level)
        root.removeHandler(log.handler)
        log.handler.close()


async def test_a_paid_orders_fulfilment_request_is_addressed_to_the_seller(stack: Stack) -> None:
    auth, seller, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=5)
    guest_email = f"fulfil-{uuid.uuid4().hex[:8]}@example.com"
    body = await guest_order(stack, item, email=guest_email)
    await stack.control.complete_checkout(body["session_id"])
    await eventually_status(stack, body, "paid")
    order_id = body["order"]["id"]
    listed = await stack.eventually(
        lambda: stack.api.get("/me/notifications", headers=auth, params={"limit": 100}),
        lambda r: any(
            n["kind"] == "order.fulfil" and n["payload"].get("order_id") == order_id for n in r.json()["items"]
        ),
    )
    kinds = sorted(n["kind"] for n in listed.json()["items"] if n["payload"].get("order_id") == order_id)
    assert kinds == ["order.fulfil", "order.sale"]
    fulfil = await notification(f"order:{order_id}:fulfil")
    assert fulfil is not None
    assert (fulfil["principal"], fulfil["email"]) == (await principal_of_seller(seller["id"]), None)
    # The guest's own message is the receipt, filed under their email (they have no principal).
    receipt = await notification(f"order:{order_id}:receipt")
    assert receipt is not None
    assert (receipt["principal"], receipt["email"]) == (None, guest_email)


async def test_sign_up_guest_checkout_and_notifications_log_no_email_address(stack: Stack) -> None:
    auth, _, _ = await active_seller(stack)
    item = await listing(stack, auth, stock=5)
    tag = uuid.uuid4().hex[:10]
    guest_email, buyer_email = f"guest-{tag}@example.com", f"buyer-{tag}@example.com"
    with captured_log() as log:
        signup = await stack.api.post("/buyers", json={"display_name": f"Buyer {tag}", "email": buyer_email})
        assert signup.status_code == 201, signup.text
        bearer = {"Authorization": f"Bearer {signup.json()['token']}"}
        mine = await checkout(stack, [(item["id"], 1)], headers=bearer)
        assert mine.status_code == 201, mine.text
        body = await guest_order(stack, item, email=guest_email)
        await stack.control.complete_checkout(body["session_id"])
        await eventually_status(stack, body, "paid")
        receipt = f"order:{body['order']['id']}:receipt"
        # The receipt's notify line is logged (so the check below bites), its address masked.
        await stack.eventually(log.text, lambda text: f"dedupe_key={receipt}" in text)
        text = await log.text()
    assert "g***@example.com" in text
    for personal in (guest_email, buyer_email, f"guest-{tag}", f"buyer-{tag}", f"Buyer {tag}"):
        assert personal not in text
