"""`marketplace events list|replay` and `marketplace stripe register-webhooks`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

from marketplace.lib.settings import Settings
from webhooks.tables import EventStatus


def _limit(text: str) -> int:
    """`--limit`: a whole number from 1 to 10000, checked before anything connects."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000, got {value}")
    return value


def _base_url(text: str) -> str:
    """`--base-url`: an absolute http(s) URL without query or fragment, checked before anything is written."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"not an http(s) base URL like https://api.example.com: {text!r}")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a valid port in {text!r}") from None
    return text.strip().rstrip("/")


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.lib.db import start_database, stop_database
    from marketplace.lib.queue import arq_pool
    from webhooks import store
    from webhooks.queueing import enqueue_event

    await start_database(settings.database_url.reveal(), max_size=2)
    pool = arq_pool(settings.redis_url.reveal())
    try:
        if args.event_id:
            replayed = await store.replay(ids=[args.event_id], limit=1, livemode=settings.livemode)
            if not replayed:
                reasons = {
                    "missing": f"no stored event {args.event_id}",
                    "other_livemode": f"{args.event_id} is of the other livemode than the key: never processed",
                    "processing": f"{args.event_id} is being processed now",
                }
                print(reasons[await store.why_not_replayed(args.event_id, settings.livemode)], file=sys.stderr)
                return 1
        else:
            statuses = ["failed"] if args.failed else ["unhandled"] if args.unhandled else ["dead"]
            replayed = await store.replay(
                statuses=statuses, type_=args.type, limit=args.limit, livemode=settings.livemode
            )
        queued = 0
        for item in replayed:
            try:
                queued += await enqueue_event(pool, item.id, attempts=item.attempts)
            except Exception as exc:
                print(f"Redis unavailable ({type(exc).__name__}); the sweeper will queue the rest", file=sys.stderr)
                break
        for item in replayed:
            print(item.id)
        print(f"replayed {len(replayed)} event(s), queued {queued} now", file=sys.stderr)
        return 0
    finally:
        await pool.aclose()
        await stop_database()


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.lib.db import start_database, stop_database
    from webhooks import store

    await start_database(settings.database_url.reveal(), max_size=1)
    try:
        rows = await store.list_events(status=args.status, type_=args.type, limit=args.limit)
    finally:
        await stop_database()
    for row in rows:
        error = f"  {row['last_error'][:80]}" if row["last_error"] else ""
        print(
            f"{row['received_at']:%Y-%m-%dT%H:%M:%SZ}  {row['id']}  {row['type']:<40} {row['status']:<10} "
            f"attempts={row['attempts']}  {row['account'] or '-'}{error}"
        )
    return 0


async def _register(settings: Settings, args: argparse.Namespace) -> int:
    from connect.client import build_stripe_client, close_stripe_client
    from marketplace.lib.db import start_database, stop_database
    from webhooks.registration import ensure_endpoints

    # Registration rows are written before each create (idempotency keys derive from them).
    await start_database(settings.database_url.reveal(), max_size=1)
    client = build_stripe_client(
        settings.stripe_secret_key.reveal(),
        api_base=settings.stripe_api_base,
        max_network_retries=settings.stripe_max_network_retries,
    )
    try:
        results = await ensure_endpoints(client, args.base_url)
    finally:
        await close_stripe_client(client)
        await stop_database()
    variables = {"platform": "STRIPE_WEBHOOK_SECRET_PLATFORM", "connect": "STRIPE_WEBHOOK_SECRET_CONNECT"}
    for result in results:
        head = f"{result.endpoint}: {result.url} ({result.endpoint_id})"
        if result.action == "created":
            print(f"{head} created; {variables[result.endpoint]}={result.secret}")
        elif result.action == "updated":
            print(f"{head} updated: {', '.join(result.changes)} (secret unchanged)")
        else:
            print(f"{head} already registered, unchanged (secret unchanged)")
        for note in result.notes:
            print(f"{result.endpoint}: {note}", file=sys.stderr)
    if any(result.secret for result in results):
        print("Store the new secrets now; Stripe shows them only once.", file=sys.stderr)
    return 0


def _run(coro_fn: Any) -> Any:
    """A command: the CLI's settings (`marketplace.devtools.devstack.cli_settings`), then the coroutine.

    Failures (bad settings, a service down, a refusal) reach `marketplace.server.cli.main`, which prints one line.
    """

    def command(args: argparse.Namespace) -> int:
        from marketplace.devtools.devstack import cli_settings

        result: int = asyncio.run(coro_fn(cli_settings(), args))
        return result

    return command


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `events` and `stripe` command groups to the `marketplace` CLI."""
    events = subparsers.add_parser("events", help="stored Stripe events").add_subparsers(
        dest="events_command", required=True
    )
    p = events.add_parser("replay", help="process stored events again: one id, --failed or --dead")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("event_id", nargs="?", help="an event id (evt_…)")
    which.add_argument("--failed", action="store_true", help="every event waiting for a retry")
    which.add_argument("--dead", action="store_true", help="every event parked as dead")
    which.add_argument(
        "--unhandled",
        action="store_true",
        help="every event no worker had a handler for (workers with the handler re-offer them anyway)",
    )
    p.add_argument("--type", default=None, help="only events of this type (with --failed/--dead)")
    p.add_argument("--limit", type=_limit, default=1000, help="at most this many, 1 to 10000 (default 1000)")
    p.set_defaults(func=_run(_replay))

    p = events.add_parser("list", help="list stored events, newest first")
    p.add_argument(
        "--status",
        choices=[status.value for status in EventStatus],
        default=None,
        help="only events in this state (unhandled: no worker that took it had its handler)",
    )
    p.add_argument("--type", default=None, help="only events of this type, e.g. account.updated")
    p.add_argument("--limit", type=_limit, default=50, help="at most this many, 1 to 10000 (default 50)")
    p.set_defaults(func=_run(_list))

    stripe_group = subparsers.add_parser("stripe", help="Stripe account setup").add_subparsers(
        dest="stripe_command", required=True
    )
    p = stripe_group.add_parser(
        "register-webhooks", help="create or update both webhook endpoints and print new secrets once"
    )
    p.add_argument(
        "--base-url", required=True, type=_base_url, help="public base URL of the API, e.g. https://api.example.com"
    )
    p.set_defaults(func=_run(_register))
