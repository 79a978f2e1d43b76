"""The running dev stack, as `make run` describes it to other processes of the same checkout.

`marketplace run` writes `stack.json` in its data folder (`MARKETPLACE_DATA_DIR`, default `.data`)
once the API and the worker are up: the variables a CLI command needs to reach that stack
(DATABASE_URL, REDIS_URL, the sandbox's STRIPE_SECRET_KEY and STRIPE_API_BASE, the webhook secrets,
PUBLIC_BASE_URL) and the run's pid. Mode 0600; the run removes it when it stops.

`cli_settings` is how every CLI command loads its settings: in development, variables the
environment does not set are taken from that file (when the run that wrote it is still alive);
with `APP_ENV=production` (or `test`) the file is never read.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from marketplace.lib.settings import Settings, get_settings

STACK_FILE = "stack.json"
LOCK_FILE = "run.lock"

# Filled one by one when unset: each names a service of its own.
_SINGLE = ("DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL")
# Filled together, and only when STRIPE_SECRET_KEY is unset: the sandbox's key, its URL and the
# secrets its endpoints sign with belong together (never a real key sent to the sandbox, or the reverse).
_STRIPE = ("STRIPE_SECRET_KEY", "STRIPE_API_BASE", "STRIPE_WEBHOOK_SECRET_PLATFORM", "STRIPE_WEBHOOK_SECRET_CONNECT")
STACK_VARIABLES = (*_SINGLE, *_STRIPE)


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The dev runner's data folder: `MARKETPLACE_DATA_DIR`, or `.data` in the current directory."""
    env = os.environ if env is None else env
    return Path(env.get("MARKETPLACE_DATA_DIR") or ".data").resolve()


def write_stack(data: Path, values: Mapping[str, str]) -> Path:
    """Write `stack.json` (mode 0600 from its creation on) with `values` and this process's pid."""
    path = data / STACK_FILE
    tmp = data / (STACK_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"pid": os.getpid(), **values}, out, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # readers never see half a file
    return path


def remove_stack(data: Path) -> None:
    for name in (STACK_FILE, STACK_FILE + ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            (data / name).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stack(data: Path) -> dict[str, str] | None:
    """The running stack's variables, or None (no file, unreadable, or its run is gone)."""
    try:
        raw = json.loads((data / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    pid = raw.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None  # left by a run that was killed: its services are gone too
    return {name: str(raw[name]) for name in STACK_VARIABLES if raw.get(name)}


def fill_from_stack(env: MutableMapping[str, str]) -> bool:
    """Complete `env` from the running dev stack's file; True when anything was taken from it.

    Only in development (`APP_ENV` unset or `development`): production and test never read it.
    """
    if env.get("APP_ENV", "development") != "development":
        return False
    wanted = [name for name in _SINGLE if not env.get(name)]
    if not env.get("STRIPE_SECRET_KEY"):
        wanted += _STRIPE
    if not wanted:
        return False
    stack = read_stack(data_dir(env))
    if not stack:
        return False
    taken = False
    for name in wanted:
        if name in stack and not env.get(name):
            env[name] = stack[name]
            taken = True
    return taken


def stack_hint(env: Mapping[str, str] | None = None) -> str:
    """What to do when the variables are missing (one sentence, for the end of an error line)."""
    env = os.environ if env is None else env
    if env.get("APP_ENV", "development") != "development":
        return "set the variables (docs/configuration.md)"
    return f"start `make run` (no running dev stack in {data_dir(env)}) or set the variables (docs/configuration.md)"


def cli_settings() -> Settings:
    """The settings of a CLI command: the environment, completed from the running dev stack (above).

    The process environment itself is completed, so everything the command calls (`get_settings`,
    the worker, the app) sees the same values. Raises `SettingsError` like `get_settings`.
    """
    fill_from_stack(os.environ)
    return get_settings()
