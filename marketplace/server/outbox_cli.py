"""`marketplace outbox list|replay`: look at outbox messages (the dead ones, above all) and send one again."""

from __future__ import annotations

import argparse
import sys
import uuid

from marketplace.lib.settings import Settings
from marketplace.server.cli_support import CommandError, bounded, with_database

# `marketplace.outbox.tables.OutboxStatus`, spelled out so that building the parser imports no ORM.
STATUSES = ("pending", "sending", "sent", "failed", "dead")


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.outbox import service
    from marketplace.outbox.tables import OutboxStatus

    status = OutboxStatus(args.status) if args.status else None
    records = await service.list_messages(status=status, limit=args.limit)
    for record in records:
        error = f"  {record.last_error[:80]}" if record.last_error else ""
        print(
            f"{record.created_at:%Y-%m-%dT%H:%M:%SZ}  {record.id}  {record.kind:<40} {record.status.value:<8} "
            f"attempts={record.attempts}  {record.dedupe_key}{error}"
        )
    if not records:
        print(f"no {args.status + ' ' if args.status else ''}messages", file=sys.stderr)
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.outbox import service

    try:
        record = await service.replay(args.message_id)
    except (service.MessageNotFound, service.NotReplayable) as exc:
        raise CommandError(str(exc)) from None
    print(record.id)
    print(f"{record.id} is pending again (attempts reset); the next delivery run sends it", file=sys.stderr)
    return 0


def _message_id(text: str) -> uuid.UUID:
    """`ID`: a message id, checked before anything connects."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a message id (a UUID): {text!r}") from None


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `outbox` command group to the `marketplace` CLI."""
    outbox = subparsers.add_parser("outbox", help="outbox messages (notifications to principals)").add_subparsers(
        dest="outbox_command", required=True
    )
    p = outbox.add_parser("list", help="list outbox messages, newest first")
    p.add_argument("--status", choices=STATUSES, default=None, help="only messages in this status, e.g. dead")
    p.add_argument("--limit", type=bounded(1, 1000), default=50, help="at most this many, 1 to 1000 (default 50)")
    p.set_defaults(func=with_database(_list))

    p = outbox.add_parser("replay", help="send a failed or dead message again, with a fresh attempt budget")
    p.add_argument(
        "message_id",
        metavar="ID",
        type=_message_id,
        help="the message id (a UUID, as `marketplace outbox list` prints it)",
    )
    p.set_defaults(func=with_database(_replay))
