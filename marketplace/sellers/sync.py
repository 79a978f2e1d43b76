"""Keeping a connected account's state in step with Stripe: the only writer of what Stripe says of it.

`sync_connected_account` re-reads the account (`connect.calls.read_in_order`): a ticket from the
`account_sync_tickets` sequence is taken before the read, and the read is stored only if no read with a
later ticket was stored first, so duplicated, late or reordered events and returns all end on Stripe's
current state, and a slow, older read never overwrites a newer one. Nothing is locked while Stripe is
read; the apply step is one short transaction. Changes of status (and new requirements) are announced
to the seller through the outbox in that same transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from connect import accounts as stripe_accounts
from connect import calls
from marketplace.lib.db import DB
from marketplace.lib.stripe_errors import stripe_code
from marketplace.notifications.service import notification_writer
from marketplace.outbox.service import add_message, declare_kind
from marketplace.sellers.accounts import AccountRow, account_for_seller, snapshot_values
from marketplace.sellers.tables import ConnectedAccount

log = logging.getLogger("marketplace.onboarding")

# The outbox kinds an account sync writes (messages to the seller), declared with their sender.
ACCOUNT_STATUS_CHANGED = declare_kind("seller.account_status_changed", notification_writer)
ACCOUNT_REQUIREMENTS_CHANGED = declare_kind("seller.account_requirements_changed", notification_writer)


@dataclass(frozen=True, slots=True)
class SyncResult:
    account_id: str
    status: str
    changed: bool
    applied: bool  # False: the account is disconnected (final), or a later read was stored first


class NotOurAccount(Exception):
    """The account is not one of ours: no seller's current account, and Stripe will not show it to us
    (403/404) or it names no seller of ours. `note` says which."""

    def __init__(self, account_id: str, note: str) -> None:
        super().__init__(note)
        self.account_id = account_id
        self.note = note


async def _take_ticket() -> int:
    """A number larger than every ticket taken before (a sequence: never rolled back, never reused)."""
    rows = await ConnectedAccount.raw("SELECT nextval('account_sync_tickets') AS ticket")
    return int(rows[0]["ticket"])


def _forbidden_or_missing(exc: stripe.StripeError) -> bool:
    """Stripe will not show this account to us (403 `account_invalid`, 404 `resource_missing`). Not a 401:
    a bad key is our configuration's fault, and retrying (then `dead`) is what should alert someone."""
    return exc.http_status in (403, 404)


async def sync_connected_account(client: stripe.StripeClient, account_id: str, source: str) -> SyncResult:
    """Re-read `account_id` from Stripe and store what Stripe says now (unless a later read was stored).

    A Stripe error is raised to the caller (the webhook worker retries the event; routes report it):
    it never disconnects the account, since a wrong key answers much as a deauthorized account does.
    For an account that no seller's row names, a 403/404 or an account naming no seller of ours raises
    `NotOurAccount` (final: the event is recorded as not ours). A disconnected account is not read again.
    """
    known = await _account_row(account_id)
    if known is not None and known.disconnected_at is not None:
        return SyncResult(account_id, "disconnected", changed=False, applied=False)

    async def read() -> dict[str, Any]:
        try:
            return await stripe_accounts.retrieve_account(client, account_id)
        except stripe.StripeError as exc:
            if known is None and _forbidden_or_missing(exc):
                raise NotOurAccount(
                    account_id,
                    f"account {account_id} is connected to no seller and Stripe does not show it to this "
                    f"platform ({exc.http_status} {stripe_code(exc) or type(exc).__name__})",
                ) from exc
            raise

    async def apply(ticket: int, account: dict[str, Any]) -> SyncResult:
        if known is None:
            await _record_unrecorded_account(account_id, account)
        return await _apply_read(account_id, ticket, account, source)

    return await calls.read_in_order("sync a connected account", ticket=_take_ticket, read=read, apply=apply)


async def _account_row(account_id: str) -> AccountRow | None:
    row = await ConnectedAccount.select().where(ConnectedAccount.stripe_account_id == account_id).first()
    return AccountRow.from_row(row) if row else None


async def _record_unrecorded_account(account_id: str, account: Mapping[str, Any]) -> None:
    """Record an account no row names yet on its seller's row, found through its `metadata.seller_id`.

    An event can outrun our write of a new account (the creating call has not recorded Stripe's
    answer yet), or our process died between Stripe's answer and that write (the row still waits for
    an account). Raises `NotOurAccount` when the account is no seller's current one.
    """
    try:
        seller_id = uuid.UUID(str((account.get("metadata") or {}).get("seller_id")))
    except ValueError:
        raise NotOurAccount(account_id, f"account {account_id} names no seller of this platform") from None
    current = await account_for_seller(seller_id)
    if current is None or current.disconnected_at is not None:
        raise NotOurAccount(account_id, f"account {account_id} is not the current account of seller {seller_id}")
    if current.stripe_account_id is None:
        recorded = (
            await ConnectedAccount.update({ConnectedAccount.stripe_account_id: account_id})
            .where((ConnectedAccount.id == current.id) & ConnectedAccount.stripe_account_id.is_null())
            .returning(ConnectedAccount.id)
        )
        if recorded:
            log.warning(
                "seller %s: account %s recorded from its event (its creation was not recorded yet)",
                seller_id,
                account_id,
            )
    fresh = await account_for_seller(seller_id)
    if fresh is None or fresh.stripe_account_id != account_id:
        raise NotOurAccount(account_id, f"account {account_id} is not the current account of seller {seller_id}")


async def _apply_read(account_id: str, ticket: int, account: dict[str, Any], source: str) -> SyncResult:
    """Store a read taken under `ticket`, unless a later one was stored first: one short transaction."""
    snapshot = stripe_accounts.snapshot_from_account(account)
    async with DB.transaction():
        row = await _lock_account(account_id)
        if row is None:  # deleted meanwhile (the seller was removed)
            raise NotOurAccount(account_id, f"account {account_id} is connected to no seller")
        account_row = AccountRow.from_row(row)
        if account_row.disconnected_at is not None:
            return SyncResult(account_id, "disconnected", changed=False, applied=False)
        if account_row.sync_ticket > ticket:
            log.info("account %s: a later read was stored first; this one (%s) is dropped", account_id, source)
            return SyncResult(account_id, account_row.status, changed=False, applied=False)
        returned = account_row.onboarding_returned_at is not None
        status = snapshot.status(seller_has_been_through_onboarding=returned)
        changed = account_row.status != status
        values = snapshot_values(snapshot, datetime.now(UTC), source, returned=returned)
        values[ConnectedAccount.sync_ticket] = ticket
        if changed:
            values[ConnectedAccount.status_version] = account_row.status_version + 1
        await ConnectedAccount.update(values).where(ConnectedAccount.id == account_row.id)
        principal = row["seller.principal"]
        if changed:
            await _announce(account_row, principal, status, account_row.status_version + 1, snapshot.requirements())
        elif _requirements_to_announce(status, account_row.requirements, snapshot.requirements()):
            await _announce_requirements(account_row, principal, status, snapshot.requirements())
    return SyncResult(account_id, status, changed=changed, applied=True)


async def _lock_account(account_id: str) -> dict[str, Any] | None:
    """The account's row (with its seller's principal), locked until the caller's (short) transaction ends.

    `NO KEY UPDATE`, like every lock on an account row here: it serializes the writers of the row but
    not the rows that merely reference the account. Never held across a Stripe call.
    """
    row = (
        await ConnectedAccount.select(*ConnectedAccount.all_columns(), ConnectedAccount.seller.principal)
        .where(ConnectedAccount.stripe_account_id == account_id)
        .lock_rows("NO KEY UPDATE", of=(ConnectedAccount,))
        .output(load_json=True)
        .first()
    )
    return dict(row) if row else None


async def mark_disconnected(account_id: str, source: str) -> SyncResult | None:
    """The account deauthorized the platform (`account.application.deauthorized`): final for this account.

    Buyers no longer see the seller and checkout is refused; the seller may connect a new account.
    None for an account that is connected to no seller.
    """
    now = datetime.now(UTC)
    async with DB.transaction():
        row = await _lock_account(account_id)
        if row is None:
            log.warning("deauthorized account %s is not connected to any seller; ignored", account_id)
            return None
        account_row = AccountRow.from_row(row)
        if account_row.disconnected_at is not None:
            return SyncResult(account_id, "disconnected", changed=False, applied=False)
        version = account_row.status_version + 1
        await ConnectedAccount.update(
            {
                ConnectedAccount.status: "disconnected",
                ConnectedAccount.status_version: version,
                ConnectedAccount.disconnected_at: now,
                ConnectedAccount.charges_enabled: False,
                ConnectedAccount.payouts_enabled: False,
                ConnectedAccount.synced_at: now,
                ConnectedAccount.synced_from: source[:255],
            }
        ).where(ConnectedAccount.id == account_row.id)
        await _announce(account_row, row["seller.principal"], "disconnected", version, None)
    log.info("connected account %s disconnected (%s)", account_id, source)
    return SyncResult(account_id, "disconnected", changed=True, applied=True)


async def _announce(
    row: AccountRow, principal: uuid.UUID, status: str, version: int, requirements: dict[str, Any] | None
) -> None:
    await add_message(
        kind=ACCOUNT_STATUS_CHANGED,
        dedupe_key=f"account-status:{row.stripe_account_id}:{version}",
        principal_id=principal,
        payload={
            "account_id": row.stripe_account_id,
            "previous_status": row.status,
            "status": status,
            "requirements": requirements,
        },
    )


def _due(requirements: Mapping[str, Any] | None) -> tuple[list[str], int | None]:
    """What the seller has to act on: the fields due now or overdue, and the deadline."""
    req = requirements or {}
    due = sorted({*(req.get("currently_due") or []), *(req.get("past_due") or [])})
    return due, req.get("current_deadline")


def _requirements_to_announce(status: str, before: Any, after: Mapping[str, Any]) -> bool:
    """Whether a read that kept the status brought new requirements or a new deadline worth telling.

    Only for accounts that have been through onboarding (restricted, or active with something due
    before a deadline); an `onboarding` account's requirements are simply the form not yet filled in.
    """
    if status not in ("restricted", "active"):
        return False
    due, deadline = _due(after)
    if not due and deadline is None:
        return False
    previous = json.loads(before) if isinstance(before, str) else before
    return (due, deadline) != _due(previous)


async def _announce_requirements(
    row: AccountRow, principal: uuid.UUID, status: str, requirements: dict[str, Any]
) -> None:
    due, deadline = _due(requirements)
    digest = hashlib.sha256(json.dumps([due, deadline]).encode()).hexdigest()[:16]
    await add_message(
        kind=ACCOUNT_REQUIREMENTS_CHANGED,
        # Once per requirement set and deadline within one status episode (status_version).
        dedupe_key=f"account-requirements:{row.stripe_account_id}:{row.status_version}:{digest}",
        principal_id=principal,
        payload={"account_id": row.stripe_account_id, "status": status, "requirements": requirements},
    )
