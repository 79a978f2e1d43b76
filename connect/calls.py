"""The one shape of every call to Stripe: nothing of the database is held while Stripe is waited on.

A POST (anything that makes or changes a Stripe object) goes through `post`:

1. **intent**: write (and commit) the row the call stands for; the idempotency key derives from it
   (`connect.idempotency`), so a retry after a crash or a timeout re-sends the same key and Stripe
   answers with the object it already made;
2. **call** Stripe with that key, with no transaction open, no row locked and no pooled connection
   borrowed (each statement around it borrows a connection and gives it back);
3. **record** the answer in a second short transaction, guarded so that a late or repeated record
   changes nothing (`UPDATE … WHERE <still unrecorded>`).

A read whose result is applied to our state, where an older read must never overwrite a newer one
(an account's sync), goes through `read_in_order`: a **ticket** is taken from PostgreSQL before the
read (a sequence: later tickets are larger), and the apply step stores the read only if no read with a
larger ticket was stored first. Nothing is locked across the read; reads of one object run in parallel
and the newest-started one wins.

Both refuse to run inside an open transaction: a marketplace process registers its probe
(`forbid_inside`, done by `marketplace.lib.db`), so a caller that forgot it is in `DB.transaction()` fails
loudly in tests instead of holding a connection for the length of a Stripe call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

Intent = TypeVar("Intent")
Answer = TypeVar("Answer")
Outcome = TypeVar("Outcome")

_probes: list[Callable[[], bool]] = []


class HeldAcrossStripeCall(RuntimeError):
    """A Stripe call was about to start while the caller held a database transaction."""


def forbid_inside(probe: Callable[[], bool]) -> None:
    """Register `probe` (True while a transaction is open): Stripe calls refuse to start while it is."""
    if probe not in _probes:
        _probes.append(probe)


def ensure_nothing_held(what: str) -> None:
    """Raise `HeldAcrossStripeCall` when a registered probe says a transaction is open."""
    if any(probe() for probe in _probes):
        raise HeldAcrossStripeCall(f"{what}: a Stripe call must not run inside a database transaction")


async def post(
    what: str,
    *,
    intent: Callable[[], Awaitable[tuple[Intent, str]]],
    call: Callable[[Intent, str], Awaitable[Answer]],
    record: Callable[[Intent, Answer], Awaitable[Outcome]],
) -> Outcome:
    """Commit the intent (returning it and its idempotency key), call Stripe with the key, record the answer.

    A Stripe error propagates after the intent is committed and before anything is recorded: the next
    attempt finds the same intent and re-sends the same key (the caller's intent step must return the
    existing row rather than write a new one while the old one is unrecorded).
    """
    ensure_nothing_held(what)
    row, key = await intent()
    ensure_nothing_held(what)
    answer = await call(row, key)
    return await record(row, answer)


async def read_in_order(
    what: str,
    *,
    ticket: Callable[[], Awaitable[int]],
    read: Callable[[], Awaitable[Answer]],
    apply: Callable[[int, Answer], Awaitable[Outcome]],
) -> Outcome:
    """Take a ticket, read from Stripe, then apply the read under that ticket (`apply` decides whether a
    later ticket was applied first, in its own short transaction)."""
    ensure_nothing_held(what)
    number = await ticket()
    ensure_nothing_held(what)
    answer = await read()
    return await apply(number, answer)
