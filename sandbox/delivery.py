"""Webhook delivery: Stripe-Signature signing, background posting, retries with backoff, delivery faults."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from sandbox.events import endpoint_matches, mark_delivered
from sandbox.store import Obj, Store, now


def sign(payload: str, secrets: list[str], timestamp: int | None = None) -> str:
    """`t=<ts>,v1=<hmac>[,v1=<hmac>...]`: HMAC-SHA256 of "{t}.{payload}", one v1 per active secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{ts}.{payload}".encode()
    parts = [f"t={ts}"]
    for secret in secrets:
        parts.append("v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)


def active_secrets(store: Store, endpoint_id: str) -> list[str]:
    rec = store.record(endpoint_id)
    if rec is None:
        return []
    current = now()
    return [s["secret"] for s in rec["x"].get("secrets", []) if s["expires_at"] is None or s["expires_at"] > current]


@dataclass
class DeliveryFaults:
    """Knobs: drop / duplicate / reorder apply to the next N deliveries; delay applies while set."""

    drop: int = 0
    duplicate: int = 0
    reorder: int = 0
    delay: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Deliverer:
    """Posts deliveries from the server's event loop; each attempt is recorded on the delivery."""

    def __init__(self, store: Store, retry_schedule: tuple[float, ...], timeout: float = 10.0) -> None:
        self.store = store
        self.retry_schedule = retry_schedule
        self.timeout = timeout
        self.faults = DeliveryFaults()
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[str] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- scheduling ----------------------------------------------------------------------------
    def enqueue(self, delivery_id: str) -> None:
        delivery = self.store.deliveries[delivery_id]
        if self.faults.drop > 0:
            self.faults.drop -= 1
            delivery["status"] = "dropped"
            delivery["fault"] = "dropped"
            return
        if self.faults.duplicate > 0:
            self.faults.duplicate -= 1
            self.store.delivery_seq += 1
            twin = dict(
                delivery, id=delivery["id"] + "_dup", seq=self.store.delivery_seq, attempts=[], fault="duplicate"
            )
            self.store.deliveries[twin["id"]] = twin
            self._start(delivery_id, self.faults.delay)
            self._start(twin["id"], self.faults.delay + 0.01)
            return
        if self.faults.reorder > 0:
            self.faults.reorder -= 1
            delivery["fault"] = "reordered"
            self._held.append(delivery_id)
            if self.faults.reorder == 0:
                self._release()
            elif self._flush_task is None:
                self._flush_task = self._spawn(self._flush_later())
            return
        if self.faults.delay > 0:
            delivery["fault"] = "delayed"
        self._start(delivery_id, self.faults.delay)

    def _release(self) -> None:
        held, self._held = self._held, []
        if self._flush_task is not None and self._flush_task is not asyncio.current_task():
            self._flush_task.cancel()
        self._flush_task = None
        for i, delivery_id in enumerate(reversed(held)):
            self._start(delivery_id, self.faults.delay + i * 0.1)

    async def _flush_later(self) -> None:
        await asyncio.sleep(2.0)
        self.faults.reorder = 0
        self._release()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start(self, delivery_id: str, delay: float) -> None:
        self._spawn(self._run(delivery_id, delay))

    # ---- posting -------------------------------------------------------------------------------
    async def _run(self, delivery_id: str, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        attempts = len(self.retry_schedule) + 1
        for n in range(attempts):
            delivery = self.store.deliveries.get(delivery_id)
            if delivery is None:
                return
            endpoint = self.store.find(delivery["endpoint"])
            owner = delivery["account"] or self.store.platform_id
            if endpoint is None or not endpoint_matches(self.store, endpoint, owner, delivery["type"]):
                delivery["status"] = "canceled"  # the endpoint was deleted, disabled or changed meanwhile
                return
            delivery["url"] = endpoint["url"]
            ok = await self._attempt(delivery, n + 1, attempts)
            if ok:
                delivery["status"] = "succeeded"
                mark_delivered(self.store, delivery["event"], delivery["endpoint"])
                return
            if n < len(self.retry_schedule):
                delivery["next_attempt_in"] = self.retry_schedule[n]
                await asyncio.sleep(self.retry_schedule[n])
        delivery = self.store.deliveries.get(delivery_id)
        if delivery is not None:
            delivery["status"] = "failed"
            delivery["next_attempt_in"] = None

    async def _attempt(self, delivery: Obj, number: int, total: int) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, timeout=self.timeout)
        payload: str = delivery["payload"]
        header = sign(payload, active_secrets(self.store, delivery["endpoint"]))
        record: Obj = {
            "attempt": number,
            "at": time.time(),
            "url": delivery["url"],
            "status_code": None,
            "error": None,
            "duration_ms": 0.0,
        }
        started = time.perf_counter()
        ok = False
        try:
            resp = await self._client.post(
                delivery["url"],
                content=payload.encode(),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    "Stripe-Signature": header,
                    "Cache-Control": "no-cache",
                },
            )
            record["status_code"] = resp.status_code
            ok = 200 <= resp.status_code < 300
            if not ok:
                record["error"] = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        delivery["attempts"].append(record)
        return ok

    # ---- lifecycle -----------------------------------------------------------------------------
    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._held = []
        self._flush_task = None
        self.faults = DeliveryFaults()

    def resume_pending(self) -> None:
        """After loading a snapshot, restart deliveries that were still pending."""
        for delivery in sorted(self.store.deliveries.values(), key=lambda d: d["seq"]):
            if delivery["status"] == "pending":
                self._start(delivery["id"], 0.0)

    async def aclose(self) -> None:
        self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
