"""Server assembly: production mode refuses control, snapshots survive restarts, CLI, public_url, expiry sweep."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl, SandboxControlError
from sandbox.server import RunningSandbox, SandboxConfig, free_port, run_in_thread

from .conftest import make_client, wait_until
from .helpers import session_params


async def test_production_mode_refuses_control_api() -> None:
    with run_in_thread(SandboxConfig(port=0, mode="production")) as running:
        ctl = SandboxControl(running.url)
        with pytest.raises(SandboxControlError) as info:
            await ctl.reset()
        assert info.value.status == 403
        assert info.value.body["status"] == 403
        await ctl.aclose()
        client = make_client(running.url)
        assert (await client.v1.balance.retrieve_async()).object == "balance"


async def test_snapshot_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "sandbox.json"
    config = SandboxConfig(port=0, mode="test", snapshot_path=str(path), public_url="http://sandbox.test:9999")
    with run_in_thread(config) as first:
        client = make_client(first.url)
        acct = await client.v1.accounts.create_async(
            params={"type": "express"}, options={"idempotency_key": "acct:snap"}
        )
        session = await client.v1.checkout.sessions.create_async(params=session_params())
        assert session.url == f"http://sandbox.test:9999/c/pay/{session.id}"
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert acct.id in data["records"]
    with run_in_thread(config) as second:
        client = make_client(second.url)
        assert (await client.v1.accounts.retrieve_async(acct.id)).id == acct.id
        replay = await client.v1.accounts.create_async(
            params={"type": "express"}, options={"idempotency_key": "acct:snap"}
        )
        assert replay.id == acct.id
        assert (await client.v1.checkout.sessions.retrieve_async(session.id)).status == "open"


async def test_sweeper_expires_overdue_sessions(
    client: stripe.StripeClient, running: RunningSandbox, http: httpx.AsyncClient
) -> None:
    session = await client.v1.checkout.sessions.create_async(params=session_params())
    running.sandbox.store.records[session.id]["obj"]["expires_at"] = 0
    await wait_until(lambda: running.sandbox.store.records[session.id]["obj"]["status"] == "expired")
    events = await client.v1.events.list_async()
    assert [e.type for e in events.data] == ["checkout.session.expired"]
    assert (await http.get(f"/c/pay/{session.id}")).status_code == 410


def test_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sandbox", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    for flag in ("--host", "--port", "--mode", "--snapshot", "--retry-schedule", "--retry-scale", "--public-url"):
        assert flag in out.stdout


def test_python_dash_m_serves() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--mode", "test", "--retry-scale", "0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        assert health.json()["mode"] == "test"
        resp = httpx.get(f"http://127.0.0.1:{port}/v1/balance", headers={"Authorization": "Bearer sk_test_123456789"})
        assert resp.json()["object"] == "balance"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
