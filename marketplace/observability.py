"""JSON logs with a request id, secret redaction, and a small Prometheus-text metrics registry.

Request and webhook bodies are never logged; the access line carries method, path, status and time.
Any configured secret (Stripe key, webhook secrets, DB/Redis passwords) and anything shaped like a
token or key is masked in every log line by `RedactingFilter`, whatever logger produced it.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Path segments that are credentials (the onboarding refresh/return state): never written to logs.
_CAPABILITY_IN_PATH = re.compile(r"(/sellers/onboarding/)[^/]+")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_PATTERNS = re.compile(
    r"(sk|rk)_(live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9+/=_-]+|mkt_[A-Za-z0-9_-]{10,}|(?i:bearer)\s+[^\s\"',]+"
)


_ID_PREFIX = uuid.uuid4().hex[:16]  # random per process: ids from several processes never collide
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """32 hex characters, unique per process and across processes, without a system call per request."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def current_request_id() -> str | None:
    return _request_id.get()


class RedactingFilter(logging.Filter):
    """Masks secrets in the rendered message and in exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "**********")
        return _PATTERNS.sub("**********", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(formatted)
            record.exc_info = None
        return True


_ENCODER = msgspec.json.Encoder(enc_hook=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key in ("event_id", "event_type", "account", "method", "path", "status", "duration_ms"):
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_text:
            entry["exc"] = record.exc_text
        return _ENCODER.encode(entry).decode()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes INFO lines in batches and WARNING and above at once.

    One access line per request made each request pay a write system call of its own, the largest
    cost of a webhook delivery at low concurrency (docs/performance.md). Lines are gathered and
    written together when `max_delay` has passed, the batch is large, a record of WARNING or above
    arrives (with everything before it, in order), the handler is flushed or closed, or the
    background flusher wakes up (so an idle process still prints within `max_delay`).
    """

    def __init__(self, stream: Any = None, max_delay: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        super().__init__(stream)
        self.max_delay = max_delay
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0
        self._oldest = 0.0
        self._stop_flusher = threading.Event()
        threading.Thread(target=self._flusher, name="log-flusher", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if not self._lines:
            self._oldest = time.monotonic()
        self._lines.append(line)
        self._size += len(line)
        if (
            record.levelno >= logging.WARNING
            or self._size >= self.max_bytes
            or time.monotonic() - self._oldest >= self.max_delay
        ):
            self._write()

    def _write(self) -> None:  # called with the handler lock held
        if self._lines:
            text, self._lines, self._size = "".join(self._lines), [], 0
            # A closed (ValueError) or broken (OSError) stream must not take the app down.
            with contextlib.suppress(OSError, ValueError):
                self.stream.write(text)
                self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        self._stop_flusher.set()
        self.flush()
        super().close()

    def _flusher(self) -> None:
        while not self._stop_flusher.wait(self.max_delay):
            if self._lines and time.monotonic() - self._oldest >= self.max_delay:
                self.flush()


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send JSON lines to stderr through one redacting handler on the root logger."""
    # Nothing we print needs them, and each costs a lookup on every record (the access line is per request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_marketplace", False):
            root.removeHandler(old)
            old.close()
    handler._marketplace = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "stripe"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


access_log = logging.getLogger("marketplace.access")


class RequestIdMiddleware:
    """Gives every request an id (kept from `X-Request-ID` if sane), echoes it, logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _REQUEST_ID_RE.match(incoming) else new_request_id()
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": _CAPABILITY_IN_PATH.sub(r"\1…", scope["path"]),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            _request_id.reset(token)


class Metrics:
    """Counters and gauges rendered in the Prometheus text format; per process, scraped per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self.collectors: list[Callable[[], Awaitable[None]]] = []

    def add_collector(self, collector: Callable[[], Awaitable[None]]) -> None:
        """Register a coroutine that refreshes gauges (e.g. from the database) before each scrape."""
        if collector not in self.collectors:
            self.collectors.append(collector)

    async def collect(self) -> str:
        for collector in self.collectors:
            try:
                await collector()
            except Exception:  # a failing gauge must not take the whole scrape down
                logging.getLogger("marketplace.metrics").exception("metrics collector failed")
        return self.render()

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._counters.setdefault(name, {})[key] = value

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name in sorted(set(self._counters) | set(self._help)):
                kind, help_text = self._help.get(name, ("untyped", name))
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                for key, value in sorted(self._counters.get(name, {}).items()):
                    if key:
                        label_text = ",".join(
                            f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                            for k, v in key
                        )
                        lines.append(f"{name}{{{label_text}}} {value:g}")
                    else:
                        lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"


METRICS = Metrics()
