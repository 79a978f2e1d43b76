"""The outbox: messages to principals written in the same transaction as the change they announce."""

from __future__ import annotations

from piccolo.columns import JSONB, UUID, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.db import DB


class OutboxMessage(Table, tablename="outbox_messages", db=DB):
    id = UUID(primary_key=True)
    kind = Varchar(length=64, index=True)
    # Unique per fact announced (e.g. "account-status:acct_1:3", the account's third status change), so a
    # retried writer adds nothing.
    dedupe_key = Varchar(length=255, unique=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, null=True, index=True)
    payload = JSONB()
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True, default=None, index=True)
    attempts = Integer(default=0)
    last_error = Text(null=True, default=None)
