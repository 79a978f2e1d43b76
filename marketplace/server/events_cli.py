"""`marketplace events list|replay` and `marketplace stripe register-webhooks`, over the webhooks package.

Listing and replaying go through the one operator surface of durable work
(`marketplace.lib.durable.operator`), exactly as `GET /admin/events` and its replay routes do.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from marketplace.lib.settings import Settings
from marketplace.server.cli_support import CommandError, bounded, with_database
from webhooks.tables import EventStatus


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
    from marketplace.lib.durable import operator
    from marketplace.lib.queue import arq_pool
    from webhooks import store
    from webhooks.routes import queue_replayed

    scope = store.replay_scope(settings.livemode)
    if args.event_id:
        try:
            replayed = [await operator.replay_one(store.EVENTS, args.event_id, where=scope)]
        except operator.ReplayRefused as refused:
            if refused.current is None:
                raise CommandError(f"no stored event {args.event_id}") from None
            if refused.current["livemode"] != settings.livemode:
                raise CommandError(f"{args.event_id} is of the other livemode than the key: never processed") from None
            raise CommandError(f"{args.event_id} is being processed now") from None
    else:
        status = EventStatus.failed if args.failed else EventStatus.unhandled if args.unhandled else EventStatus.dead
        replayed = await operator.replay_all(
            store.EVENTS,
            statuses=[status.value],
            where=store.replay_scope(settings.livemode, args.type),
            limit=args.limit,
        )
    pool = arq_pool(settings.redis_url.reveal())
    try:
        queued = await queue_replayed(pool, replayed)
    finally:
        await pool.aclose()
    if queued < len(replayed):
        print("Redis unavailable; the sweeper will queue the rest", file=sys.stderr)
    for row in replayed:
        print(row["id"])
    print(f"replayed {len(replayed)} event(s), queued {queued} now", file=sys.stderr)
    return 0


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.lib.durable import operator
    from marketplace.lib.schemas import EVENT_CURSOR
    from webhooks import store

    where = {"type": args.type} if args.type else {}
    rows, _ = await operator.list_page(store.EVENTS, EVENT_CURSOR, status=args.status, where=where, limit=args.limit)
    for row in rows:
        error = f"  {row['last_error'][:80]}" if row["last_error"] else ""
        print(
            f"{row['received_at']:%Y-%m-%dT%H:%M:%SZ}  {row['id']}  {row['type']:<40} {row['status']:<10} "
            f"attempts={row['attempts']}  {row['account'] or '-'}{error}"
        )
    if not rows:
        print(f"no {_described(args.status, args.type, 'events')}", file=sys.stderr)
    return 0


def _described(status: str | None, type_: str | None, noun: str) -> str:
    """`dead events of type T`: what a listing that found nothing was looking for."""
    words = f"{status} {noun}" if status else noun
    return f"{words} of type {type_}" if type_ else words


async def _register(settings: Settings, args: argparse.Namespace) -> int:
    from connect.client import build_stripe_client, close_stripe_client
    from webhooks.registration import ensure_endpoints

    # Registration rows are written before each create (idempotency keys derive from them).
    client = build_stripe_client(
        settings.stripe_secret_key.reveal(),
        api_base=settings.stripe_api_base,
        max_network_retries=settings.stripe_max_network_retries,
    )
    try:
        results = await ensure_endpoints(client, args.base_url)
    finally:
        await close_stripe_client(client)
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


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `events` and `stripe` command groups to the `marketplace` CLI."""
    events = subparsers.add_parser("events", help="stored Stripe events").add_subparsers(
        dest="events_command", required=True
    )
    limit = bounded(1, 10_000)
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
    p.add_argument("--limit", type=limit, default=1000, help="at most this many, 1 to 10000 (default 1000)")
    p.set_defaults(func=with_database(_replay))

    p = events.add_parser("list", help="list stored events, newest first")
    p.add_argument(
        "--status",
        choices=[status.value for status in EventStatus],
        default=None,
        help="only events in this state (unhandled: no worker that took it had its handler)",
    )
    p.add_argument("--type", default=None, help="only events of this type, e.g. account.updated")
    p.add_argument("--limit", type=limit, default=50, help="at most this many, 1 to 10000 (default 50)")
    p.set_defaults(func=with_database(_list))

    stripe_group = subparsers.add_parser("stripe", help="Stripe account setup").add_subparsers(
        dest="stripe_command", required=True
    )
    p = stripe_group.add_parser(
        "register-webhooks", help="create or update both webhook endpoints and print new secrets once"
    )
    p.add_argument(
        "--base-url", required=True, type=_base_url, help="public base URL of the API, e.g. https://api.example.com"
    )
    p.set_defaults(func=with_database(_register))
