"""`GET /me/notifications`: what the platform told the signed-in buyer or seller, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import QueryParameter

from marketplace.auth.deps import PrincipalDep
from marketplace.auth.guards import require_role
from marketplace.auth.tables import Role
from marketplace.lib.problems import InvalidCursor
from marketplace.lib.schemas import Cursor
from marketplace.notifications.service import notifications_page


class NotificationOut(msgspec.Struct):
    id: uuid.UUID
    kind: str  # order.receipt, order.sale, order.fulfil, order.oversold, order.oversold_seller
    subject: str
    payload: dict[str, Any]
    created_at: datetime


class NotificationPage(msgspec.Struct):
    items: list[NotificationOut]
    next_cursor: str | None


class NotificationController(Controller):
    path = "/me/notifications"
    tags = ["notifications"]
    guards = [require_role(Role.buyer, Role.seller)]
    security = [{"BearerToken": []}]

    @get(
        "/",
        operation_id="listMyNotifications",
        summary="The signed-in buyer's or seller's notifications, newest first",
        description=(
            "Receipts, sale notices and oversell notices, one per fact (the outbox delivers at least once; "
            "a repeated delivery adds nothing). Pass `next_cursor` as `cursor` for the next page."
        ),
        raises=[InvalidCursor],
    )
    async def list_notifications(
        self,
        principal: PrincipalDep,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: Cursor = None,
    ) -> NotificationPage:
        rows, next_cursor = await notifications_page(principal.id, limit=limit, cursor=cursor)
        return NotificationPage(
            items=[NotificationOut(r.id, r.kind, r.subject, r.payload, r.created_at) for r in rows],
            next_cursor=next_cursor,
        )
