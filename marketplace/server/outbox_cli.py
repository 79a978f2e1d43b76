"""`marketplace outbox list|replay`: look at outbox messages (the dead ones, above all) and send one again."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable

from marketplace.lib.settings import Settings

# `marketplace.outbox.tables.OutboxStatus`, spelled out so that building the parser imports no ORM.
STATUSES = ("pending", "sending", "sent", "failed", "dead")


class CommandError(Exception):
    """A failure to report as one line on stderr, with exit status `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {value}")
    return value


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.outbox import service
    from marketplace.outbox.tables import OutboxStatus

    status = OutboxStatus(args.status) if args.status else None
    for record in await service.list_messages(status=status, limit=args.limit):
        error = f"  {record.last_error[:80]}" if record.last_error else ""
        print(
            f"{record.created_at:%Y-%m-%dT%H:%M:%SZ}  {record.id}  {record.kind:<40} {record.status.value:<8} "
            f"attempts={record.attempts}  {record.dedupe_key}{error}"
        )
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.outbox import service

    try:
        message_id = uuid.UUID(args.message_id)
    except ValueError:
        raise CommandError(f"not a message id (a UUID): {args.message_id!r}", code=2) from None
    try:
        record = await service.replay(message_id)
    except (service.MessageNotFound, service.NotReplayable) as exc:
        raise CommandError(str(exc)) from None
    print(record.id)
    print(f"{record.id} is pending again (attempts reset); the next delivery run sends it", file=sys.stderr)
    return 0


def _run(body: Callable[[Settings, argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    """A command: settings, the database for the command's duration, and every failure as one line."""

    def command(args: argparse.Namespace) -> int:
        from marketplace.devtools.devstack import cli_settings

        # A SettingsError (nothing configured, no `make run` up) is printed by `marketplace.server.cli.main`, one line.
        settings = cli_settings()

        async def run() -> int:
            from marketplace.lib.db import start_database, stop_database

            await start_database(settings.database_url.reveal(), max_size=1)
            try:
                return await body(settings, args)
            finally:
                await stop_database()

        try:
            return asyncio.run(run())
        except CommandError as exc:
            print(f"outbox: {exc}", file=sys.stderr)
            return exc.code
        except (OSError, TimeoutError) as exc:
            print(f"outbox: the database is unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 1
        except Exception as exc:
            # asyncpg's errors (a missing table: migrations not applied, a refused login) land here.
            print(f"outbox: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
            return 1

    return command


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `outbox` command group to the `marketplace` CLI."""
    outbox = subparsers.add_parser("outbox", help="outbox messages (notifications to principals)").add_subparsers(
        dest="outbox_command", required=True
    )
    p = outbox.add_parser("list", help="list outbox messages, newest first")
    p.add_argument("--status", choices=STATUSES, default=None, help="only messages in this status, e.g. dead")
    p.add_argument("--limit", type=_positive, default=50, help="at most this many, 1 to 1000 (default 50)")
    p.set_defaults(func=_run(_list))

    p = outbox.add_parser("replay", help="send a failed or dead message again, with a fresh attempt budget")
    p.add_argument("message_id", metavar="ID", help="the message id (a UUID, as `marketplace outbox list` prints it)")
    p.set_defaults(func=_run(_replay))
