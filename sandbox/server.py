"""Server assembly: `SandboxConfig`, `create_app`, the CLI `main`, and `run_in_thread` for tests and the dev runner."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

import httpx
import uvicorn
from litestar import Litestar, Request, Response, route

from sandbox import pages
from sandbox.api import accounts, checkout, connect, events, payments  # noqa: F401  (registers routes)
from sandbox.api import control as control_api
from sandbox.api.router import dispatch
from sandbox.money import expire_due_sessions
from sandbox.runtime import Sandbox

log = logging.getLogger("sandbox")
Mode = Literal["test", "development", "production"]
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 12111
    mode: Mode = "development"
    snapshot_path: str | None = None
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    public_url: str | None = None
    delivery_timeout: float = 10.0
    snapshot_interval: float = 30.0
    sweep_interval: float = 1.0


def create_app(config: SandboxConfig) -> Litestar:
    sb = Sandbox(config)
    if config.snapshot_path and sb.store.load_file(config.snapshot_path):
        log.info("sandbox state loaded from %s", config.snapshot_path)

    @route("/v1/{path:path}", http_method=["GET", "POST", "DELETE"])
    async def api(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await dispatch(sb, request)

    @route("/_sandbox/{path:path}", http_method=["GET", "POST", "DELETE"])
    async def control(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await control_api.dispatch(sb, request)

    async def housekeeping() -> None:
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(config.sweep_interval)
            try:
                expire_due_sessions(sb)
                if config.snapshot_path and time.monotonic() - last_save >= config.snapshot_interval:
                    sb.store.save_file(config.snapshot_path)
                    last_save = time.monotonic()
            except Exception:  # keep the sweeper alive; the error is logged
                log.exception("sandbox housekeeping failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        sb.deliverer.resume_pending()
        task = asyncio.get_running_loop().create_task(housekeeping())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sb.deliverer.aclose()
            if config.snapshot_path:
                sb.store.save_file(config.snapshot_path)

    app = Litestar(route_handlers=[api, control, *pages.routes(sb)], lifespan=[lifespan], debug=False)
    app.state.sandbox = sb
    return app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class RunningSandbox:
    """A sandbox served by uvicorn in a background thread (its own event loop)."""

    def __init__(self, config: SandboxConfig, app: Litestar, server: uvicorn.Server, thread: threading.Thread) -> None:
        self.config = config
        self.app = app
        self.server = server
        self.thread = thread

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def sandbox(self) -> Sandbox:
        sb: Sandbox = self.app.state.sandbox
        return sb

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_in_thread(config: SandboxConfig, startup_timeout: float = 15.0) -> RunningSandbox:
    """Start the sandbox in a thread and wait until it answers. Port 0 picks a free port."""
    if config.port == 0:
        config = replace(config, port=free_port(config.host))
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"sandbox-{config.port}", daemon=True)
    thread.start()
    running = RunningSandbox(config, app, server, thread)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"sandbox failed to start on {running.url}")
        if server.started:
            try:
                if httpx.get(f"{running.url}/_sandbox/health", timeout=1.0).status_code in (200, 403):
                    return running
            except httpx.HTTPError:
                pass
        time.sleep(0.02)
    running.stop()
    raise RuntimeError(f"sandbox did not answer on {running.url} within {startup_timeout}s")


def _schedule(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Offline Stripe sandbox server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--mode", choices=["test", "development", "production"], default="development")
    parser.add_argument("--snapshot", default=None, help="JSON file to load at start and save periodically/at exit")
    parser.add_argument(
        "--retry-schedule", type=_schedule, default=None, help="seconds between delivery attempts, e.g. 1,2,4,8,16"
    )
    parser.add_argument("--retry-scale", type=float, default=1.0, help="multiply the retry schedule (e.g. 0.1)")
    parser.add_argument("--public-url", default=None, help="base URL used in hosted-page links")
    args = parser.parse_args(argv)
    schedule = args.retry_schedule or DEFAULT_RETRY_SCHEDULE
    config = SandboxConfig(
        host=args.host,
        port=args.port,
        mode=args.mode,
        snapshot_path=args.snapshot,
        retry_schedule=tuple(s * args.retry_scale for s in schedule),
        public_url=args.public_url,
    )
    logging.basicConfig(level=logging.INFO)
    log.info("Stripe sandbox on http://%s:%s (mode=%s)", config.host, config.port, config.mode)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")
    return 0
