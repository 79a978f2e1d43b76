"""A real API process (`marketplace serve`) for tests that need one: its own settings, its stderr kept."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx


@dataclass
class ApiProcess:
    http: httpx.AsyncClient
    proc: subprocess.Popen[bytes]
    log: str = field(default="")  # what the process wrote to stderr, once it has stopped


@asynccontextmanager
async def api_process(env: Mapping[str, str], port: int, timeout: float = 30) -> AsyncIterator[ApiProcess]:
    """Start `marketplace serve` on `port` with `env`, wait until it answers, stop it gracefully after
    (SIGTERM, so batched log lines are flushed); `log` then holds its stderr."""
    with tempfile.TemporaryFile(mode="w+b") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketplace.server.cli", "serve", "--port", str(port)],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            # An idle connection is dropped by this client (1 s) before the server's keep-alive (5 s) ends it,
            # so a request is never sent on a connection the server is closing.
            limits = httpx.Limits(keepalive_expiry=1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=limits) as http:
                served = ApiProcess(http=http, proc=proc)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        await http.get("/health/live")
                        break
                    except httpx.TransportError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.1)
                yield served
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        stderr.seek(0)
        served.log = stderr.read().decode(errors="replace")


def stripe_signature(body: str, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `body`, as Stripe computes it."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"
