"""The `marketplace` command: run, serve, worker, migrate, openapi, admin, sandbox, and each package's."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence

from marketplace.settings import Settings, SettingsError, get_settings

Command = Callable[[argparse.Namespace], int]


def _settings_or_exit() -> Settings:
    """The validated settings, or every problem printed (no traceback) and exit status 2."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _logging_from(settings: Settings) -> None:
    """JSON, redacted log lines for everything this process logs, libraries included."""
    from marketplace.observability import configure_logging

    configure_logging(settings.log_level, settings.secret_values())


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import uvicorn

    from marketplace.observability import uvicorn_log_config

    uvicorn.run(
        "marketplace.app:create_app",
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
    from marketplace.worker import build_worker

    worker = build_worker(burst=args.burst)
    worker.run()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _logging_from(settings)
    from marketplace.migrate import migrate

    asyncio.run(migrate(settings.database_url.reveal()))
    print("migrations applied")
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from marketplace.app import create_app
    from marketplace.settings import load_settings

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


def cmd_admin_create_token(args: argparse.Namespace) -> int:
    _settings_or_exit()
    from marketplace.auth.service import create_principal
    from marketplace.auth.tables import Role
    from marketplace.db import start_database, stop_database

    async def create() -> str:
        await start_database(get_settings().database_url.reveal(), max_size=1)
        try:
            _, token = await create_principal(Role.admin, args.name, args.email)
            return token
        finally:
            await stop_database()

    token = asyncio.run(create())
    print(token)
    print("Store this admin token now; it is not shown again.", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from marketplace.devrun import run_dev

    return run_dev(port=args.port)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.server import main as sandbox_main

    code: int = sandbox_main(args.sandbox_args)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marketplace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="development: embedded services, sandbox, API and worker together")
    p.add_argument("--port", type=int, default=None, help="API port (default $PORT or 8000)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="run the API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run one arq worker")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("openapi", help="print the OpenAPI document")
    p.set_defaults(func=cmd_openapi)

    p = sub.add_parser("sandbox", help="run the offline Stripe sandbox", add_help=False)
    p.add_argument("sandbox_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)

    admin = sub.add_parser("admin", help="platform administration").add_subparsers(dest="admin_command", required=True)
    p = admin.add_parser("create-token", help="create a platform admin and print its token once")
    p.add_argument("--name", default="platform admin")
    p.add_argument("--email", default=None)
    p.set_defaults(func=cmd_admin_create_token)

    for add_commands in _package_commands():
        add_commands(sub)
    return parser


def _package_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    from marketplace.outbox.cli import add_commands as outbox_commands
    from webhooks.cli import add_commands as webhook_commands

    return [webhook_commands, outbox_commands]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "sandbox":  # everything after `sandbox` belongs to the sandbox's own parser
        args.sandbox_args = [*extra, *args.sandbox_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
