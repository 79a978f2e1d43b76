"""The `marketplace` command: run, serve, worker, migrate, openapi, admin, sandbox, and each package's."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import cast

from marketplace.lib.settings import Settings, SettingsError
from marketplace.server.cli_support import Command, CommandError, Parser, bounded, with_database


def _settings_or_exit() -> Settings:
    """The validated settings (the environment, completed in development from `make run`'s stack file).

    A `SettingsError` is reported by `main` as one line, exit status 2.
    """
    from marketplace.devtools.devstack import cli_settings

    return cli_settings()


def _logging_from(settings: Settings) -> None:
    """JSON, redacted log lines for everything this process logs, libraries included."""
    from marketplace.lib.observability import configure_logging

    configure_logging(settings.log_level, settings.secret_values())


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import uvicorn

    from marketplace.lib.observability import uvicorn_log_config

    uvicorn.run(
        "marketplace.server.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        # uvicorn's own lines (bind errors, an exception escaping the app) through our handler, not its own.
        log_config=uvicorn_log_config(settings.log_level, settings.secret_values()),
        log_level="warning",
        proxy_headers=True,
        workers=args.workers,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _logging_from(_settings_or_exit())
    from marketplace.server.worker import build_worker

    worker = build_worker(burst=args.burst)
    worker.run()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _logging_from(settings)
    applied, current = asyncio.run(_migrate_counted(settings.database_url.reveal()))
    print(f"migrations: {applied} applied, {current} already up to date")
    return 0


async def _applied_migrations(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT to_regclass('migration') IS NOT NULL"):
            return 0
        count: int = await conn.fetchval("SELECT count(*) FROM migration WHERE app_name = 'marketplace'")
        return count
    finally:
        await conn.close()


async def _migrate_counted(database_url: str) -> tuple[int, int]:
    """Apply pending migrations with Piccolo's own chatter silenced: (applied now, applied before)."""
    import contextlib
    import io

    from marketplace.lib.migrate import migrate

    before = await _applied_migrations(database_url)
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            await migrate(database_url)
    except Exception:
        sys.stderr.write(chatter.getvalue())  # what Piccolo said before it failed is the diagnosis
        raise
    return await _applied_migrations(database_url) - before, before


def cmd_openapi(args: argparse.Namespace) -> int:
    from marketplace.lib.settings import load_settings
    from marketplace.server.app import create_app

    # The schema does not depend on live services; placeholder settings let it print anywhere.
    settings = load_settings(
        {
            "APP_ENV": "development",
            "DATABASE_URL": "postgresql://localhost/unused",
            "REDIS_URL": "redis://localhost:6379/0",
            "STRIPE_SECRET_KEY": "sk_test_openapi",
        }
    )
    schema = create_app(settings).openapi_schema.to_schema()
    print(json.dumps(schema, indent=2, sort_keys=False))
    return 0


async def _admin_create_token(settings: Settings, args: argparse.Namespace) -> int:
    from marketplace.auth.service import create_principal
    from marketplace.auth.tables import Role
    from marketplace.lib.text import InvalidEmail, normalize_email

    try:
        email = normalize_email(args.email) if args.email is not None else None
    except InvalidEmail as exc:
        print(f"--email: not a valid email address: {exc}", file=sys.stderr)
        return 2
    _, token = await create_principal(Role.admin, args.name, email)
    print(token)
    print("Store this admin token now; it is not shown again.", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from marketplace.devtools.devrun import run_dev

    return run_dev(port=args.port)


def cmd_demo(args: argparse.Namespace) -> int:
    from marketplace.devtools.demo import DemoError
    from marketplace.devtools.demo import main as demo_main

    try:
        return demo_main(base_url=args.base_url, sandbox_url=args.sandbox_url)
    except DemoError as exc:
        raise CommandError(str(exc)) from None


def cmd_sandbox(args: argparse.Namespace) -> int:
    from marketplace.devtools.devrun import serve_sandbox

    return serve_sandbox(args.sandbox_args)


_port = bounded(1, 65535)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="marketplace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="development: embedded services, sandbox, API and worker together")
    p.add_argument("--port", type=_port, default=None, help="API port (default $PORT or 8000)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="run the API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port to listen on (default 8000)")
    p.add_argument("--workers", type=bounded(1, 64), default=1, help="API processes uvicorn starts (default 1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run one arq worker")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("openapi", help="print the OpenAPI document")
    p.set_defaults(func=cmd_openapi)

    p = sub.add_parser(
        "demo",
        help="development: walk the whole story (sellers, checkouts, webhooks, refunds) against a running stack",
        description=(
            "Against a running `make run` stack, over HTTP only: two sellers onboard, list an item each, and "
            "guests buy (success page before webhook, 100%-off, declined card, bank debit, an oversell "
            "refunded); one line per step, then a table of the orders and the stock."
        ),
    )
    p.add_argument(
        "--base-url",
        metavar="URL",
        default=None,
        help="the API to walk (default: the one this checkout's `make run` started, from .data/stack.json)",
    )
    p.add_argument(
        "--sandbox-url",
        metavar="URL",
        default=None,
        help="that API's Stripe sandbox (default: from .data/stack.json, or where the API's hosted pages live)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sandbox", help="run the offline Stripe sandbox", add_help=False)
    p.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)

    admin = sub.add_parser("admin", help="platform administration").add_subparsers(dest="admin_command", required=True)
    p = admin.add_parser("create-token", help="create a platform admin and print its token once")
    p.add_argument("--name", default="platform admin", help="the admin's display name (default: platform admin)")
    p.add_argument("--email", default=None, help="the admin's email address (optional)")
    p.set_defaults(func=with_database(_admin_create_token))

    for add_commands in _package_commands():
        # Their parsers are `Parser`s too (argparse makes sub-parsers of the parent's class).
        add_commands(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))
    return parser


def _package_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    from marketplace.server.events_cli import add_commands as event_commands
    from marketplace.server.outbox_cli import add_commands as outbox_commands

    return [event_commands, outbox_commands]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "sandbox":  # everything after `sandbox` belongs to the sandbox's own parser
        args.sandbox_args = [*extra, *args.sandbox_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func: Command = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line = one_line_error(exc)
        if line is None:
            raise  # a bug, not a condition: keep its traceback
        print(f"marketplace {args.command}: {line}", file=sys.stderr)
        return exc.code if isinstance(exc, CommandError) else 2 if isinstance(exc, SettingsError) else 1


def one_line_error(exc: BaseException) -> str | None:
    """The one line a command prints for an expected failure (bad settings, a service down, a bad
    value, a refusal from PostgreSQL, Redis or Stripe); None for anything else."""
    import asyncpg
    import redis.exceptions
    import stripe

    from marketplace.devtools.devstack import stack_hint

    if isinstance(exc, SettingsError):
        line = "invalid configuration: " + "; ".join(exc.problems)
        if any(" is required" in problem for problem in exc.problems):
            line += f"; {stack_hint()}"
        return line
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, (OSError, TimeoutError, redis.exceptions.ConnectionError)):
        return f"a service is unreachable ({type(exc).__name__}: {exc}); is PostgreSQL/Redis (or `make run`) up?"
    if isinstance(exc, stripe.StripeError):
        return f"Stripe refused: {type(exc).__name__}: {exc.user_message or exc}"
    if isinstance(exc, (ValueError, asyncpg.PostgresError, asyncpg.InterfaceError, redis.exceptions.RedisError)):
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    if isinstance(exc, RuntimeError) and str(exc).startswith("migrations failed"):
        return str(exc).splitlines()[0]
    return None


if __name__ == "__main__":
    raise SystemExit(main())
