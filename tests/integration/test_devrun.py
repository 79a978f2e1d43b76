"""`marketplace run` (make run): settings checked before anything starts; webhook endpoints that
follow the API's port without ever signing with another port's secret; one run per data folder; the
CLI of a second terminal reaching the running stack; the README's walk against the real runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
import stripe

from connect.client import build_stripe_client, close_stripe_client
from marketplace.devtools.devrun import SANDBOX_KEY, _sync_webhook_endpoints
from marketplace.devtools.devstack import STACK_VARIABLES
from tests.conftest import free_port, serve
from tests.support.asgi import read_body, serve_lifespan


def test_a_live_key_stops_make_run_before_anything_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "MARKETPLACE_DATA_DIR": str(data),
        "PORT": str(free_port()),
        "STRIPE_SECRET_KEY": "sk_live_" + "a" * 24,
    }
    env.pop("APP_ENV", None)  # make run's default: development
    for name in ("DATABASE_URL", "REDIS_URL", "STRIPE_API_BASE"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "live Stripe key is refused" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "a" * 24 not in done.stderr + done.stdout  # the key itself is never echoed
    assert not data.exists()  # no embedded PostgreSQL, Redis or sandbox state was created


class Receiver:
    """Records webhook deliveries (body and Stripe-Signature) and answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, bytes, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.deliveries.append((scope["path"], body, headers.get("stripe-signature", "")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
def private_sandbox() -> Iterator[Any]:
    """A sandbox of this test's own: endpoint deletion here must not touch other tests' endpoints."""
    from sandbox.server import SandboxConfig, run_in_thread

    running = run_in_thread(SandboxConfig(port=0, mode="test", retry_schedule=(0.05, 0.1, 0.2)))
    yield running
    running.stop()


@pytest.fixture
async def sandbox_client(private_sandbox: Any) -> AsyncIterator[stripe.StripeClient]:
    client = build_stripe_client(SANDBOX_KEY, api_base=private_sandbox.url, max_network_retries=0)
    yield client
    await close_stripe_client(client)


async def test_runs_on_other_ports_keep_secrets_per_url_and_leave_no_stale_endpoints(
    private_sandbox: Any, sandbox_client: stripe.StripeClient, tmp_path: Path, database: str
) -> None:
    """PORT A, then B, then A again (the audit's 8123/8124/8123): deliveries to A verify with A's secret."""
    from sandbox.control import SandboxControl

    receiver = Receiver()
    port_a, port_b = free_port(), free_port()
    server, task = await serve(receiver, port_a)  # type: ignore[arg-type]
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    secrets_file = tmp_path / "webhook-secrets.json"
    secrets_file.write_text(json.dumps({"platform": "whsec_from_the_old_format", "connect": "whsec_old"}))
    try:
        first = await _sync_webhook_endpoints(sandbox_client, url_a, secrets_file, database)
        again = await _sync_webhook_endpoints(sandbox_client, url_a, secrets_file, database)
        assert again == first  # a restart on the same port changes nothing
        other = await _sync_webhook_endpoints(sandbox_client, url_b, secrets_file, database)
        assert set(other.values()).isdisjoint(first.values())
        back = await _sync_webhook_endpoints(sandbox_client, url_a, secrets_file, database)

        endpoints = (await sandbox_client.v1.webhook_endpoints.list_async(params={"limit": 100})).data
        assert sorted(e.url for e in endpoints) == [f"{url_a}/webhooks/stripe", f"{url_a}/webhooks/stripe/connect"]
        stored = json.loads(secrets_file.read_text())
        assert stored == {
            f"{url_a}/webhooks/stripe": back["platform"],
            f"{url_a}/webhooks/stripe/connect": back["connect"],
        }
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600

        # A real delivery to port A is signed with exactly the secret this run hands to the API.
        account = await sandbox_client.v1.accounts.create_async(
            params={"country": "US", "email": "devrun@example.com", "type": "express"}
        )
        async with SandboxControl(private_sandbox.url) as control:
            await control.complete_onboarding(account.id)
            await control.wait_for_deliveries(type="account.updated", account=account.id)
        connect = [(body, sig) for path, body, sig in receiver.deliveries if path == "/webhooks/stripe/connect"]
        assert connect, receiver.deliveries
        for body, signature in connect:
            stripe.WebhookSignature.verify_header(body.decode(), signature, back["connect"], tolerance=300)
    finally:
        server.should_exit = True
        await task


# ---- the runner itself, as `make run` starts it, and the CLI of a second terminal ------------------------


class Runner:
    """`marketplace run` (what `make run` starts) in a subprocess, in a data folder of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port, self.sandbox_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.log = root / "run.log"
        env = clean_env(self.data)
        env.update(PORT=str(self.port), SANDBOX_PORT=str(self.sandbox_port))
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "marketplace.server.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the runner exited ({self.process.returncode}):\n{self.output()}")
            if "Ctrl-C stops everything" in self.output():
                return
            time.sleep(0.3)
        raise AssertionError(f"the runner did not come up within {timeout} s:\n{self.output()}")

    def stack(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data / "stack.json").read_text())
        return data

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def clean_env(data: Path) -> dict[str, str]:
    """A developer's shell: none of the stack's variables set, development, this data folder."""
    env = {**os.environ, "MARKETPLACE_DATA_DIR": str(data)}
    for name in (*STACK_VARIABLES, "APP_ENV", "PORT", "SANDBOX_PORT", "MARKETPLACE_LOG_FORMAT", "LOG_LEVEL"):
        env.pop(name, None)
    return env


def cli(data: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`marketplace …` in a second terminal: nothing configured but the data folder."""
    return subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", *args],
        env=clean_env(data),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    # Not pytest's tmp_path: embedded PostgreSQL runs as its own user when the tests run as root, and
    # must be able to reach its folder; a short path also keeps Redis's socket in the data folder.
    root = Path(tempfile.mkdtemp(prefix="marketplace-devrun-"))
    root.chmod(0o755)
    running = Runner(root)
    try:
        running.wait_up()
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.timeout(240)
def test_make_run_prints_readable_lines_and_the_urls_last(runner: Runner) -> None:
    out = runner.output()
    assert re.search(r"migrations: \d+ applied, \d+ already up to date", out), out
    assert "migrations already complete" not in out
    assert "not yet run" not in out
    assert not [line for line in out.splitlines() if line.startswith("{")], out  # no JSON lines in dev
    assert "webhooks_sweep" not in out
    assert "deliver_outbox" not in out
    tail = out[out.index(f"API          {runner.api_url}") :]
    assert "create-token" in tail
    assert f"socket {runner.data / 'redis.sock'}" in out
    assert (runner.data / "redis.sock").is_socket()
    assert stat.S_IMODE((runner.data / "stack.json").stat().st_mode) == 0o600


def test_a_second_run_in_the_same_data_folder_refuses_and_the_first_keeps_serving(runner: Runner) -> None:
    before = runner.stack()
    env = clean_env(runner.data)
    env.update(PORT=str(free_port()), SANDBOX_PORT=str(free_port()))
    second = subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1, second.stdout + second.stderr
    line = one_line(second.stdout + second.stderr)
    assert "already running" in line
    assert f"pid {runner.process.pid}" in line
    assert runner.api_url in line
    assert runner.sandbox_url in line

    # Nothing of the first run was touched: its stack file, its Redis, its worker.
    assert runner.stack() == before
    ready = httpx.get(f"{runner.api_url}/health/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok", ready.text
    import psutil

    children = psutil.Process(runner.process.pid).children()
    assert {c.cmdline()[-1] for c in children if c.is_running()} >= {"worker"}
    redis_client = redis.Redis.from_url(before["REDIS_URL"])
    try:
        assert redis_client.ping()
        worker_beat = redis_client.exists("arq:queue:health-check")
    finally:
        redis_client.close()
    assert worker_beat
    assert runner.process.poll() is None


def test_the_cli_finds_the_running_stack_without_any_variable(runner: Runner) -> None:
    created = cli(runner.data, "admin", "create-token", "--name", "devrun test")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("mkt_")
    listed = cli(runner.data, "events", "list")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    outbox = cli(runner.data, "outbox", "list", "--status", "dead")
    assert outbox.returncode == 0, outbox.stderr
    # The token works against the running API: the CLI wrote to the run's own database.
    answer = httpx.get(f"{runner.api_url}/admin/outbox", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text


async def _registrations(database_url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM webhook_endpoint_registrations")
        return count
    finally:
        await conn.close()


def test_bad_cli_input_is_one_line_and_writes_nothing(runner: Runner) -> None:
    database_url = runner.stack()["DATABASE_URL"]
    before = asyncio.run(_registrations(database_url))
    bad_url = cli(runner.data, "stripe", "register-webhooks", "--base-url", "not-a-url")
    assert bad_url.returncode != 0
    assert "not-a-url" in one_line(bad_url.stderr)
    assert not bad_url.stdout
    bad_limit = cli(runner.data, "events", "list", "--limit", "-1")
    assert bad_limit.returncode != 0
    assert "--limit" in one_line(bad_limit.stderr)
    assert not bad_limit.stdout
    assert asyncio.run(_registrations(database_url)) == before


@pytest.mark.timeout(180)
def test_the_readme_walk_as_written(runner: Runner) -> None:
    """README.md's walk over the JSON API: sign up, connected account, onboarding link, the hosted form, active."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    walk = readme[readme.index("The same start over the JSON API") :]
    for path in ("POST localhost:8000/sellers ", "/sellers/me/stripe-account", "/sellers/me/onboarding-link"):
        assert path in walk, path
    match = re.search(r"-d '(\{[^']+\})'", walk)
    assert match, walk
    signup = json.loads(match.group(1))

    with httpx.Client(base_url=runner.api_url, timeout=30) as api:
        created = api.post("/sellers", json=signup)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["token"].startswith("mkt_")
        auth = {"Authorization": f"Bearer {body['token']}"}
        account = api.post("/sellers/me/stripe-account", headers=auth)
        assert account.status_code in (200, 201), account.text
        link = api.post("/sellers/me/onboarding-link", headers=auth)
        assert link.status_code == 201, link.text
        url = link.json()["url"]
        assert url.startswith(runner.sandbox_url)

        # "open the returned url in a browser, submit the form"
        with httpx.Client(base_url=runner.sandbox_url, follow_redirects=False, timeout=30) as browser:
            page = browser.get(url)
            assert page.status_code == 200, page.text
            action = re.search(r"<form method='post' action='([^']+)'", page.text)
            assert action, page.text
            submitted = browser.post(action.group(1), data={"url": "https://seller.example", "action": "complete"})
            assert submitted.status_code == 303, submitted.text

        # "the Connect webhook marks the seller active" (the sandbox → the API → the worker)
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            me = api.get("/sellers/me", headers=auth)
            assert me.status_code == 200, me.text
            status = me.json()["connected_account"]["status"]
            if status == "active":
                break
            time.sleep(0.3)
        assert status == "active", runner.output()[-4000:]


# ---- a run that is killed (kill -9) takes its processes with it -------------------------------------------


def _gone(process: Any) -> bool:
    """Exited: no such process, or a zombie (nothing here reaps what a dead run leaves to init)."""
    import psutil

    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def _stack_processes(running: Runner) -> dict[str, Any]:
    """The run's processes by role: its children (API, worker, watchdog) and the embedded services,
    which daemonize (Redis by the pid it reports, PostgreSQL by its `postmaster.pid`)."""
    import psutil

    found: dict[str, Any] = {}
    for child in psutil.Process(running.process.pid).children():
        command = child.cmdline()
        role = "watchdog" if "--watchdog" in command else "api" if "serve" in command else command[-1]
        found[role] = child
    client = redis.Redis(unix_socket_path=str(running.data / "redis.sock"))
    try:
        server = cast(dict[str, Any], client.info("server"))
        found["redis"] = psutil.Process(int(server["process_id"]))
    finally:
        client.close()
    found["postgres"] = psutil.Process(int((running.data / "postgres" / "postmaster.pid").read_text().split()[0]))
    assert set(found) == {"api", "worker", "watchdog", "redis", "postgres"}, found
    return found


def _wait_all_gone(processes: dict[str, Any], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(p) for p in processes.values()):
        time.sleep(0.1)
    return {role: p for role, p in processes.items() if not _gone(p)}


def _killed_run(prefix: str) -> Iterator[Runner]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    running = Runner(root)
    try:
        running.wait_up()
        yield running
    finally:
        running.stop()
        _stop_embedded_services(running.data)  # what a failed test may have left running
        shutil.rmtree(root, ignore_errors=True)


def _stop_embedded_services(data: Path) -> None:
    with contextlib.suppress(redis.RedisError, OSError):
        redis.Redis(unix_socket_path=str(data / "redis.sock"), socket_timeout=2).shutdown(nosave=True)
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int((data / "postgres" / "postmaster.pid").read_text().split()[0]), signal.SIGINT)  # fast stop


@pytest.fixture
def killable() -> Iterator[Runner]:
    """A run of the test's own (it is killed), in a data folder of its own."""
    yield from _killed_run("marketplace-kill-")


@pytest.mark.timeout(180)
def test_a_run_killed_with_sigkill_takes_every_process_with_it(killable: Runner) -> None:
    processes = _stack_processes(killable)
    sandbox_port = killable.sandbox_port
    os.kill(killable.process.pid, signal.SIGKILL)
    killable.process.wait()  # reaped, as the shell or make would
    left = _wait_all_gone(processes, timeout=60)  # ends only a wait for processes left running for good
    assert not left, (left, killable.output()[-4000:])
    out = killable.output()
    # The count is of the processes the watchdog found still running: the kernel's SIGTERM on the run's
    # death (PR_SET_PDEATHSIG) may have ended the API or the worker before it looked, on a busy machine.
    said = re.search(rf"the run \(pid {killable.process.pid}\) was killed; stopped what it started: (.*)", out)
    assert said is not None, out
    assert re.fullmatch(r"PostgreSQL, Redis, [012] processes", said.group(1)), out
    assert not (killable.data / "stack.json").exists()  # the CLI does not look for a stack that is gone
    assert not (killable.data / "redis.sock").exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sandbox_port), timeout=2).close()  # its thread died with it
    # The lock is free (the watchdog let go of it), and says nobody holds it.
    import fcntl

    with (killable.data / "run.lock").open("r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert lock.read() == ""


@pytest.mark.timeout(240)
def test_after_a_run_and_its_watchdog_are_killed_the_next_run_cleans_up(killable: Runner) -> None:
    """Everything killed at once (`kill -9` of the run and its watchdog): the kernel stops the API and the
    worker; the next run in the folder stops the Redis left behind, reuses the PostgreSQL and drops the
    stale stack file, then serves; stopping it stops that PostgreSQL too."""
    processes = _stack_processes(killable)
    os.kill(processes["watchdog"].pid, signal.SIGKILL)
    os.kill(killable.process.pid, signal.SIGKILL)
    killable.process.wait()
    children = {role: processes[role] for role in ("api", "worker", "watchdog")}
    assert not _wait_all_gone(children, timeout=60), killable.output()[-4000:]
    assert not _gone(processes["redis"])  # daemons: out of the kernel's reach
    assert not _gone(processes["postgres"])
    assert (killable.data / "stack.json").exists()

    again = Runner(killable.root)  # the same data folder, new ports
    try:
        again.wait_up()
        out = again.output()
        assert "stack.json, left by a run that was killed" in out, out
        assert "stopped the embedded Redis an earlier, killed run left" in out, out
        assert _gone(processes["redis"])
        assert not _gone(processes["postgres"])  # reused: a running PostgreSQL of this folder
        assert again.stack()["pid"] == again.process.pid
        assert httpx.get(f"{again.api_url}/health/ready", timeout=30).status_code == 200
    finally:
        assert again.stop() == 0, again.output()[-4000:]
    assert not _wait_all_gone({"postgres": processes["postgres"]}, timeout=60)  # its last user stopped it


def test_the_stack_file_is_gone_when_the_run_stops(runner: Runner) -> None:
    """Last in this module: it stops the shared runner."""
    redis_socket = runner.data / "redis.sock"
    assert (runner.data / "stack.json").exists()
    assert runner.stop() == 0, runner.output()[-4000:]
    assert not (runner.data / "stack.json").exists()
    assert not redis_socket.exists()  # its Redis stopped with it
    gone = cli(runner.data, "events", "list")
    assert gone.returncode == 2
    assert "make run" in one_line(gone.stderr)
