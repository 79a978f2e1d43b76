"""Fixtures: one sandbox and one webhook receiver per session (state reset per test), SDK client, control."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
import uvicorn

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox, SandboxConfig, free_port, run_in_thread
from tests.support.asgi import read_body, serve_lifespan

API_KEY = "sk_test_sandbox_0123456789"
RETRY = (0.05, 0.1, 0.2)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """A real HTTP server that records webhook posts and can be told to fail (or redirect) N times, to
    take `delay` seconds before answering, or to answer only once `hold` is set (the test decides when)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_remaining: int = 0
    fail_status: int = 500
    delay: float = 0.0
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, n: int, status: int = 500) -> None:
        with self.lock:
            self.fail_remaining = n
            self.fail_status = status

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.fail_remaining = 0
            self.delay = 0.0
            if self.hold is not None:
                self.hold.set()  # a request still held is let go
            self.hold = None

    def for_path(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        body = await read_body(receive)
        with self.lock:
            status = 200
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                status = self.fail_status
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.requests.append(Received(scope["path"], headers, body, status, time.time()))
            delay, hold = self.delay, self.hold
        if delay:
            await asyncio.sleep(delay)
        if hold is not None:
            await asyncio.to_thread(hold.wait, 120)
        extra = [(b"location", b"http://127.0.0.1/elsewhere")] if 300 <= status < 400 else []
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain"), *extra]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="session")
def running() -> Iterator[RunningSandbox]:
    with run_in_thread(SandboxConfig(port=0, mode="test", retry_schedule=RETRY)) as sb:
        yield sb


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(rec, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="session")
async def control(running: RunningSandbox) -> AsyncIterator[SandboxControl]:
    ctl = SandboxControl(running.url)
    yield ctl
    await ctl.aclose()


def make_client(url: str, retries: int = 2, timeout: float = 10.0) -> stripe.StripeClient:
    return stripe.StripeClient(
        API_KEY,
        http_client=stripe.HTTPXClient(timeout=timeout),
        base_addresses={"api": url, "connect": url},
        max_network_retries=retries,
    )


@pytest.fixture(scope="session")
def client(running: RunningSandbox) -> stripe.StripeClient:
    return make_client(running.url)


@pytest.fixture(scope="session")
async def http(running: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, follow_redirects=False, timeout=10) as c:
        yield c


@pytest.fixture(autouse=True)
async def _reset(control: SandboxControl, receiver: Receiver) -> AsyncIterator[None]:
    await control.reset()
    receiver.clear()
    yield
    await control.reset()
    receiver.clear()


async def wait_until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")
