"""`marketplace run` (make run): settings checked before anything starts; webhook endpoints that
follow the API's port without ever signing with another port's secret."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from connect.client import build_stripe_client, close_stripe_client
from marketplace.devrun import SANDBOX_KEY, _sync_webhook_endpoints
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
        [sys.executable, "-m", "marketplace.cli", "run"], env=env, capture_output=True, text=True, timeout=60
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
