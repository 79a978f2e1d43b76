"""What every `marketplace` command is built from: the parser, bounded numbers, one-line errors, and the
wrapper that gives a command its settings and the database.

A module of its own, not `marketplace.server.cli`: `python -m marketplace.server.cli` runs that module as
`__main__`, and a command module importing it by name would get a second copy, whose `CommandError`
the `main` that runs would not recognise.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn

from marketplace.lib.settings import Settings

Command = Callable[[argparse.Namespace], int]
Body = Callable[[Settings, argparse.Namespace], Awaitable[int]]


class CommandError(Exception):
    """A failure a command reports as one line on stderr, with exit status `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (the usage itself is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`, or a one-line usage error (before anything
    connects)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def with_database(body: Body) -> Command:
    """A command: the CLI's settings (`marketplace.devtools.devstack.cli_settings`), then `body` with the
    database open for its duration.

    Failures (bad settings, a service down, a refusal, a `CommandError`) reach
    `marketplace.server.cli.main`, which prints one line and picks the exit status.
    """

    def command(args: argparse.Namespace) -> int:
        from marketplace.devtools.devstack import cli_settings

        settings = cli_settings()

        async def run() -> int:
            from marketplace.lib.db import start_database, stop_database

            await start_database(settings.database_url.reveal(), max_size=2)
            try:
                return await body(settings, args)
            finally:
                await stop_database()

        return asyncio.run(run())

    return command
