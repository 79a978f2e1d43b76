"""The running sandbox: configuration, store, deliverer, API fault knobs and the current request context."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.delivery import Deliverer
from sandbox.events import create_event
from sandbox.store import Obj, Store

if TYPE_CHECKING:
    from sandbox.server import SandboxConfig


@dataclass
class ApiFault:
    """One queued API failure: status 500 or 429, or "timeout" (hang, then 500)."""

    status: int | str
    retry_after: int | None = None
    hang: float = 5.0
    should_retry: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "retry_after": self.retry_after,
            "hang": self.hang,
            "should_retry": self.should_retry,
        }


@dataclass
class RequestContext:
    request_id: str | None = None
    idempotency_key: str | None = None


@dataclass
class Sandbox:
    config: SandboxConfig
    store: Store = field(default_factory=Store)
    deliverer: Deliverer = field(init=False)
    api_faults: list[ApiFault] = field(default_factory=list)
    latency_ms: float = 0.0  # every /v1 request waits this long before it is handled
    # …and this long after: the answer is made (and kept for its idempotency key) but arrives late, as
    # on a slow network; a client that times out meanwhile retries into the recorded answer.
    response_latency_ms: float = 0.0
    # The requests handled whose answers are being held back by response_latency_ms ("GET /v1/…"), so
    # that a test can wait until a request was answered, rather than guess how long that takes, and then
    # let the answers go when it chooses (`release_answers`), rather than race their latency.
    answers_held: list[str] = field(default_factory=list)
    _release: asyncio.Event | None = field(default=None, repr=False)
    current: RequestContext = field(default_factory=RequestContext)

    def __post_init__(self) -> None:
        self.deliverer = Deliverer(self.store, tuple(self.config.retry_schedule), self.config.delivery_timeout)

    @property
    def public_url(self) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def platform(self) -> str:
        return self.store.platform_id

    def emit(self, owner: str, event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
        return create_event(
            self.store,
            self.deliverer,
            owner,
            event_type,
            obj,
            previous,
            self.current.request_id,
            self.current.idempotency_key,
        )

    async def hold_answer(self, what: str, seconds: float) -> None:
        """Hold an answer made for `what` for `seconds`, or until `release_answers` is called."""
        if self._release is None:
            self._release = asyncio.Event()
        release = self._release
        self.answers_held.append(what)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), seconds)
        finally:
            self.answers_held.remove(what)

    def release_answers(self) -> int:
        """Let every answer held by response latency go now; how many there were."""
        held = len(self.answers_held)
        if self._release is not None:
            self._release.set()
            self._release = None
        return held

    def reset(self) -> None:
        self.release_answers()
        self.deliverer.cancel_all()
        self.store.reset()
        self.api_faults.clear()
        self.latency_ms = 0.0
        self.response_latency_ms = 0.0
