"""Notifications: what the default notifier delivered, for the principal (or guest email) it was for.

One row per outbox message, unique on its `dedupe_key`: the outbox delivers at least once, and a second
delivery of one message adds nothing. A buyer and a seller list theirs (`GET /me/notifications`).
"""

from __future__ import annotations

from piccolo.columns import JSONB, UUID, ForeignKey, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.lib.db import DB


class Notification(Table, tablename="notifications", db=DB):
    id = UUID(primary_key=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, null=True, index=True)
    email = Varchar(length=320, null=True, default=None)  # a guest's address (no principal)
    kind = Varchar(length=64)
    dedupe_key = Varchar(length=255, unique=True)
    subject = Text()
    payload = JSONB()
    created_at = Timestamptz()
