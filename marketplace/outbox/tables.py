"""The outbox: messages to principals written in the same transaction as the change they announce.

`status` is the delivery state (see `marketplace.outbox.service` for the machine): the row is the
truth, and every transition is a compare-and-set on it.
"""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import JSONB, UUID, ForeignKey, Integer, OnDelete, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.lib.db import DB


class OutboxStatus(StrEnum):
    pending = "pending"  # waiting for a delivery run (new, or replayed)
    sending = "sending"  # claimed by a run holding an unexpired lease
    sent = "sent"  # the notifier accepted it (terminal)
    failed = "failed"  # the last attempt failed; retried at next_attempt_at
    dead = "dead"  # gave up after the maximum number of attempts; replay brings it back


class OutboxMessage(Table, tablename="outbox_messages", db=DB):
    id = UUID(primary_key=True)
    kind = Varchar(length=64, index=True)
    # Unique per fact announced (e.g. "account-status:acct_1:3", the account's third status change), so a
    # retried writer adds nothing; every delivery carries it, so a receiver de-duplicates on it.
    dedupe_key = Varchar(length=255, unique=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, null=True, index=True)
    payload = JSONB()
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True, default=None, index=True)
    attempts = Integer(default=0)  # attempts started (a claim counts one), reset by a replay
    last_error = Text(null=True, default=None)
    status = Varchar(length=16, choices=OutboxStatus, default=OutboxStatus.pending.value)
    lease_token = Varchar(length=64, null=True, default=None)
    lease_until = Timestamptz(null=True, default=None)
    # When a pending or failed message is due; null once it is sent or dead.
    next_attempt_at = Timestamptz(null=True, default=TimestamptzNow())
