"""JSON logs with a request id, secret redaction, and a small Prometheus-text metrics registry.

Request and webhook bodies are never logged; the access line carries method, path, status and time.
Any configured secret (Stripe key, webhook secrets, DB/Redis passwords), anything shaped like a token
or key, and any email address (personal data: `j***@example.com`) is masked in every log line by
`RedactingFilter`, whatever logger produced it, in the message, the exception text and the structured
fields; `redact` applies the same masking to text kept elsewhere (an event's `last_error`).

Metrics are per process, except shared counters (`count_shared`, `SharedCounts`, `Metrics.add_shared`):
those live in one Redis hash, so a process that serves no HTTP (the arq worker) can count and every API
process's `/metrics` shows the deployment's totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
import re
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.asyncio import Redis

from connect.client import stripe_seconds

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Path segments that are credentials (the onboarding refresh/return state): never written to logs.
_CAPABILITY_IN_PATH = re.compile(r"(/sellers/onboarding/)[^/]+")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_PATTERNS = re.compile(
    r"(sk|rk)_(live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9+/=_-]+|(?<![A-Za-z0-9_])(?:mkt|ord)_[A-Za-z0-9_-]{10,}|(?i:bearer)\s+[^\s\"',]+"
)

# An email address: a local part (not glued to a word before it) and a dotted domain ending in a TLD of
# letters. Only text with an `@` between those can match, so identifiers, paths and ids are left alone;
# the first character and the domain are kept, enough to tell addresses apart in an incident.
_EMAIL = re.compile(r"(?<![\w.%+-])([\w%+-])[\w.%+-]*@((?:[\w-]+\.)+[^\W\d_]{2,})(?![\w-])")
# The structured fields a formatter writes besides the message (`JsonFormatter`, `PlainFormatter`).
LOGGED_FIELDS = ("event_id", "event_type", "account", "method", "path", "status", "duration_ms")

_ID_PREFIX = uuid.uuid4().hex[:16]  # random per process: ids from several processes never collide
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """32 hex characters, unique per process and across processes, without a system call per request."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def current_request_id() -> str | None:
    return _request_id.get()


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every one of `secrets`, anything shaped like a key or token, every email address
    (`j***@example.com`), and the onboarding state of a `/sellers/onboarding/{state}/…` path masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "**********")
    text = _CAPABILITY_IN_PATH.sub(r"\1…", _PATTERNS.sub("**********", text))
    return _EMAIL.sub(r"\1***@\2", text) if "@" in text else text


class RedactingFilter(logging.Filter):
    """Masks secrets and personal data in the rendered message, the exception text and the text fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(formatted)
            record.exc_info = None
        for key in LOGGED_FIELDS:
            value = record.__dict__.get(key)
            if isinstance(value, str):
                record.__dict__[key] = self.redact(value)
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
        for key in LOGGED_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_text:
            entry["exc"] = record.exc_text
        return _ENCODER.encode(entry).decode()


class PlainFormatter(logging.Formatter):
    """One readable line per record, for a developer's terminal (`make run` only; JSON stays the default).

    `12:00:01 warning marketplace.server.worker  message  key=value …`; an access line reads
    `12:00:01 info    api  POST /sellers → 201 (12.3 ms)`.
    """

    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = record.__dict__
        if record.name == "marketplace.access":
            method, path, status = fields.get("method"), fields.get("path"), fields.get("status")
            text = f"api  {method} {path} → {status} ({fields.get('duration_ms')} ms)"
        else:
            text = f"{record.name}  {record.getMessage()}"
            extras = [f"{key}={fields[key]}" for key in ("event_id", "event_type", "account") if fields.get(key)]
            if extras:
                text += "  " + " ".join(extras)
        line = f"{clock} {record.levelname.lower():<7} {text}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


# Routine lines a developer's terminal does without (the plain format only): the readiness polls and
# the worker's periodic jobs, which would otherwise bury everything else every few seconds.
_ROUTINE_JOBS = ("webhooks_sweep", "webhooks_prune", "deliver_outbox")


class RoutineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.name == "marketplace.access":
            return not str(record.__dict__.get("path", "")).startswith("/health/")
        if record.name.startswith("arq."):
            message = record.getMessage()
            return not (any(job in message for job in _ROUTINE_JOBS) or message.startswith("redis_version="))
        return True


def plain_logs_requested() -> bool:
    """`MARKETPLACE_LOG_FORMAT=plain`: set by the dev runner for itself and its children."""
    return os.environ.get("MARKETPLACE_LOG_FORMAT", "json") == "plain"


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


# uvicorn's loggers come with plain-text handlers of their own (and do not propagate): we take them over.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_QUIET_LOGGERS = ("uvicorn.access", "httpx", "httpcore", "stripe", "pgserver")


def json_handler(secrets: Iterable[str] = ()) -> logging.Handler:
    """The one log handler: JSON lines on stderr, batched, every secret masked."""
    handler = BatchingStreamHandler(sys.stderr)
    if plain_logs_requested():
        handler.addFilter(RoutineFilter())
        handler.setFormatter(PlainFormatter())
    else:
        handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(secrets))
    handler._marketplace = True  # type: ignore[attr-defined]
    return handler


def uvicorn_log_config(level: str = "INFO", secrets: Iterable[str] = ()) -> dict[str, Any]:
    """uvicorn's `log_config`: `json_handler` on the root, uvicorn's loggers propagating to it.

    uvicorn applies it in every process it starts (the supervisor too), before the app is loaded, so
    its own lines (a bind error, an exception escaping the app) are JSON and redacted like ours.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": json_handler, "secrets": list(secrets)}},
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            name: {"handlers": [], "propagate": True, **({"level": "WARNING"} if name in _QUIET_LOGGERS else {})}
            for name in _ADOPTED_LOGGERS + _QUIET_LOGGERS
        },
    }


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send JSON lines to stderr through one redacting handler on the root logger."""
    # Nothing we print needs them, and each costs a lookup on every record (the access line is per request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = json_handler(secrets)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_marketplace", False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        for own in list(adopted.handlers):
            adopted.removeHandler(own)
        adopted.propagate = True
    for noisy in _QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


access_log = logging.getLogger("marketplace.access")


class RequestIdMiddleware:
    """Gives every request an id (kept from `X-Request-ID` if sane), echoes it, logs one access line.

    The line (and, with `server_timing`, a `Server-Timing: app;dur=…, stripe;dur=…` header) says how
    long the request took and how much of it was spent waiting for Stripe (`connect.client.stripe_seconds`):
    what is ours and what is Stripe's, per request.
    """

    def __init__(self, app: ASGIApp, *, server_timing: bool = False) -> None:
        self.app = app
        self.server_timing = server_timing

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
        stripe_spent: list[float] = []
        stripe_token = stripe_seconds.set(stripe_spent)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if self.server_timing:
                    total, waited = time.perf_counter() - started, sum(stripe_spent)
                    timing = f"app;dur={(total - waited) * 1000:.2f}, stripe;dur={waited * 1000:.2f}"
                    headers.append((b"server-timing", timing.encode()))
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
                    **(
                        {"stripe_ms": round(sum(stripe_spent) * 1000, 2), "stripe_calls": len(stripe_spent)}
                        if stripe_spent
                        else {}
                    ),
                },
            )
            stripe_seconds.reset(stripe_token)
            _request_id.reset(token)


SHARED_COUNTERS_KEY = "marketplace:metrics:counters"  # Redis hash: rendered series → value


def _series(name: str, key: tuple[tuple[str, str], ...]) -> str:
    """`name{k="v",…}` with Prometheus label escaping (the line of a sample, without its value)."""
    if not key:
        return name
    label_text = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), chr(92) + "n")}"'
        for k, v in key
    )
    return f"{name}{{{label_text}}}"


def _number(value: float) -> str:
    """A sample value without losing digits (`:g` would print 1234567 as 1.23457e+06)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


class Metrics:
    """Counters and gauges rendered in the Prometheus text format.

    `inc`/`set` are per process (scraped per process). `add_shared` adds to counters kept in Redis
    (one hash for the whole deployment), which `collect(redis)` renders alongside, so what a worker
    counts shows on the API's `/metrics`. Redis losing its data resets them, which Prometheus reads as
    a counter reset.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self.collectors: list[Callable[[], Awaitable[None]]] = []

    def add_collector(self, collector: Callable[[], Awaitable[None]]) -> None:
        """Register a coroutine that refreshes gauges (e.g. from the database) before each scrape."""
        if collector not in self.collectors:
            self.collectors.append(collector)

    async def collect(self, redis: Redis | None = None) -> str:
        """Refresh the gauges and render everything, with the shared counters read from `redis`."""
        log = logging.getLogger("marketplace.metrics")
        for collector in self.collectors:
            try:
                await collector()
            except Exception:  # a failing gauge must not take the whole scrape down
                log.exception("metrics collector failed")
        shared: dict[str, float] = {}
        available = 0.0
        if redis is not None:
            try:
                shared = await self.read_shared(redis)
                available = 1.0
            except Exception as exc:  # reported twice: in the log and in the gauge below
                log.warning("could not read the shared counters from Redis (%s)", type(exc).__name__)
            self.set("metrics_shared_counters_available", available)
        return self.render(shared)

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

    async def add_shared(self, redis: Redis, *increments: tuple[str, float, Mapping[str, str]]) -> bool:
        """Add to shared counters in one round trip (`(name, amount, labels)` each); False if Redis failed.

        Never raises: a count that could not be recorded is logged, and the caller's work goes on.
        """
        try:
            async with redis.pipeline(transaction=True) as pipe:
                for name, amount, labels in increments:
                    pipe.hincrbyfloat(SHARED_COUNTERS_KEY, _series(name, tuple(sorted(labels.items()))), amount)
                await pipe.execute()
        except Exception as exc:
            logging.getLogger("marketplace.metrics").warning(
                "could not add to the shared counters %s (%s)",
                ", ".join(sorted({name for name, _, _ in increments})),
                type(exc).__name__,
            )
            return False
        return True

    async def read_shared(self, redis: Redis) -> dict[str, float]:
        """Every shared counter series (`name{labels}` → value); raises if Redis does not answer."""
        raw: dict[Any, Any] = await redis.hgetall(SHARED_COUNTERS_KEY)  # type: ignore[misc]
        out: dict[str, float] = {}
        for field, value in raw.items():
            series = field.decode() if isinstance(field, bytes) else str(field)
            out[series] = float(value)
        return out

    def render(self, shared: Mapping[str, float] | None = None) -> str:
        """Prometheus text: every described or counted name, local series then shared ones."""
        by_name: dict[str, list[tuple[str, float]]] = {}
        for series, value in (shared or {}).items():
            by_name.setdefault(series.split("{", 1)[0], []).append((series, value))
        lines: list[str] = []
        with self._lock:
            for name in sorted(set(self._counters) | set(self._help) | set(by_name)):
                kind, help_text = self._help.get(name, ("untyped", name))
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                samples = [(_series(name, key), value) for key, value in self._counters.get(name, {}).items()]
                samples += by_name.get(name, [])
                for series, value in sorted(samples):
                    lines.append(f"{series} {_number(value)}")
        return "\n".join(lines) + "\n"


FLUSH_DELAY_SECONDS = 0.5  # gathered shared counts are added to Redis at most this long after the first
FLUSH_AT = 500  # … or at once when this many have gathered

_Series = tuple[str, tuple[tuple[str, str], ...]]


class SharedCounts:
    """One process's not-yet-shared counts for one Redis, added there in batches.

    A round trip per count cost about an eighth of the webhook worker's throughput (docs/performance.md),
    so counts gather in memory and go in one round trip at most `FLUSH_DELAY_SECONDS` after the first (at
    once after `FLUSH_AT`, and at shutdown). What Redis refuses is kept for the next flush (logged).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pending: dict[_Series, float] = {}
        self.added = 0
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()  # cuts the current wait short: FLUSH_AT counts, or shutdown

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.pending[key] = self.pending.get(key, 0.0) + amount
        self.added += 1
        if self.task is None or self.task.done():
            self.wake.clear()
            self.task = asyncio.create_task(self._flush_soon(), name="shared-metrics-flush")
        if self.added >= FLUSH_AT:
            self.wake.set()

    async def _flush_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), FLUSH_DELAY_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Add everything gathered so far; what Redis refuses stays for the next flush (logged, not raised)."""
        batch, self.pending, self.added = self.pending, {}, 0
        if not batch or await METRICS.add_shared(
            self.redis, *((name, amount, dict(labels)) for (name, labels), amount in batch.items())
        ):
            return
        for key, amount in batch.items():
            self.pending[key] = self.pending.get(key, 0.0) + amount

    async def close(self) -> None:
        """Share what has gathered now: a flush under way finishes (cancelling it would drop its batch)."""
        if self.task is not None and not self.task.done():
            self.wake.set()
            await self.task
        await self.flush()


_SHARED: weakref.WeakKeyDictionary[Redis, SharedCounts] = weakref.WeakKeyDictionary()
_SINKS: list[SharedCounts] = []  # the processes' Redis to count shared through (the newest bound wins)


def shared_counts(redis: Redis) -> SharedCounts:
    """This process's batch of shared counts for `redis`."""
    counts = _SHARED.get(redis)
    if counts is None:
        counts = _SHARED[redis] = SharedCounts(redis)
    return counts


def share_counts_through(redis: Redis) -> None:
    """From now on `count_shared` adds through `redis` (a worker's start-up, an API's lifespan)."""
    _SINKS.append(shared_counts(redis))


async def stop_sharing_counts(redis: Redis) -> None:
    """Share what `redis`'s batch holds and stop counting through it (before closing `redis`)."""
    counts = _SHARED.get(redis)
    if counts is None:
        return
    with contextlib.suppress(ValueError):
        _SINKS.remove(counts)
    await counts.close()


async def flush_shared_counts() -> None:
    """Share every gathered count of this process now (a worker's shutdown)."""
    for counts in list(_SHARED.values()):
        await counts.close()


def count_shared(name: str, amount: float = 1.0, **labels: str) -> None:
    """Count once for the whole deployment: through the bound Redis, shown on every API's `/metrics`.

    What a confirmation or a refund counts happens in API processes (the success page's verify) and in
    workers (webhooks, the outbox) alike; one shared series sums both. A process with no Redis bound (the
    CLI, a unit test) counts in its own registry.
    """
    if _SINKS:
        _SINKS[-1].add(name, amount, **labels)
    else:
        METRICS.inc(name, amount, **labels)


METRICS = Metrics()
METRICS.describe(
    "metrics_shared_counters_available",
    "gauge",
    "1 when this scrape could read the counters shared through Redis (worker outcomes), else 0.",
)
