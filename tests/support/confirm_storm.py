"""A hundred callers confirming one paid order at once: the plan of HTTP calls and the process that sends it.

Shared by the concurrency proof (tests/e2e/test_confirm_concurrency.py, which asserts what the calls
did) and the confirmation benchmark (tests/bench/confirm_bench.py --storm, which prints how long they
took). The HTTP calls come from a process of their own, as a browser or Stripe would send them: timed
there, a call's time is the API's and the network's, not the time the process driving the run (which
may also run an API, a worker and the direct calls) took to get round to reading the answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from tests.support.api_process import stripe_signature

VERIFY_CALLS = 35  # below the per-order verify limit (40 a minute)
REDELIVERIES_PER_API = 10  # the stored event, re-delivered as is (same id): stored once, the rest duplicates
DISTINCT_EVENTS_PER_API = 10  # other events of the same session (distinct ids): each one a worker job
DIRECT_CALLS = 100 - VERIFY_CALLS - 2 * (REDELIVERIES_PER_API + DISTINCT_EVENTS_PER_API)


@dataclass
class Call:
    """One caller's answer; `seconds` and `server_ms` are figures for the benchmark, never asserted."""

    kind: str  # verify-A, verify-B, webhook-A, webhook-B, direct
    seconds: float  # as the caller measured it
    status: int | None  # HTTP status (None for a direct call)
    answer: dict[str, Any]
    server_ms: dict[str, float] = field(default_factory=dict)  # the API's Server-Timing: app, stripe


@dataclass
class HttpPlan:
    calls: list[dict[str, Any]]  # each: kind, base, path, headers, body (in the order they are sent)
    distinct_ids: list[str]  # the ids of the other events of the session (one job each)


def http_plan(
    bases: dict[str, str],
    order_id: str,
    access_token: str,
    session_id: str,
    payload: str,
    webhook_path: str,
    secret: str,
) -> HttpPlan:
    """VERIFY_CALLS verifies spread over the APIs in `bases` (name -> URL), and per API the stored
    `checkout.session.completed` delivery `payload` re-posted REDELIVERIES_PER_API times as is (same id,
    freshly signed: Stripe's duplicate deliveries and retries) plus DISTINCT_EVENTS_PER_API other events
    of the same session with ids of their own; shuffled (always the same way)."""
    original = json.loads(payload)
    names = sorted(bases)
    distinct = {name: [f"{original['id']}_{name}{i}" for i in range(DISTINCT_EVENTS_PER_API)] for name in names}
    calls: list[dict[str, Any]] = []
    for i in range(VERIFY_CALLS):
        name = names[i % len(names)]
        calls.append(
            {
                "kind": f"verify-{name}",
                "base": bases[name],
                "path": f"/orders/{order_id}/verify",
                "headers": {"X-Order-Token": access_token, "Content-Type": "application/json"},
                "body": json.dumps({"session_id": session_id}),
            }
        )
    for name in names:
        texts = [payload] * REDELIVERIES_PER_API + [json.dumps({**original, "id": e}) for e in distinct[name]]
        calls += [
            {
                "kind": f"webhook-{name}",
                "base": bases[name],
                "path": webhook_path,
                "headers": {"Stripe-Signature": stripe_signature(text, secret), "Content-Type": "application/json"},
                "body": text,
            }
            for text in texts
        ]
    random.Random(13).shuffle(calls)
    return HttpPlan(calls=calls, distinct_ids=[event_id for name in names for event_id in distinct[name]])


# stdin: the plan (one JSON line), then "go"; stdout: "ready", then the results (one JSON line, in plan order).
_CALLER = r"""
import asyncio, json, sys, time
import httpx

def server_ms(response):
    parts = {}
    for part in response.headers.get("server-timing", "").split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name:
            parts[name] = float(duration or 0)
    return parts

async def main():
    plan = json.loads(sys.stdin.readline())
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    clients = {b: httpx.AsyncClient(base_url=b, timeout=60, limits=limits) for b in {c["base"] for c in plan}}
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def one(c):
        started = time.perf_counter()
        r = await clients[c["base"]].post(c["path"], content=c["body"].encode(), headers=c["headers"])
        try:
            answer = r.json()
        except ValueError:
            answer = {"text": r.text[:500]}
        return {"seconds": time.perf_counter() - started, "status": r.status_code, "answer": answer,
                "server_ms": server_ms(r)}

    print(json.dumps(await asyncio.gather(*(one(c) for c in plan))), flush=True)
    for client in clients.values():
        await client.aclose()

asyncio.run(main())
"""

# How long the caller process may take to start, and to have every answer: only a process that hangs
# reaches these (the answers come in seconds even on a loaded machine).
_READY_WITHIN = 60.0
_ANSWERED_WITHIN = 90.0


async def start_callers(plan: HttpPlan) -> asyncio.subprocess.Process:
    """The caller process, ready to send the plan's calls at once on `go`."""
    caller = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CALLER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert caller.stdin is not None
    assert caller.stdout is not None
    caller.stdin.write(json.dumps(plan.calls).encode() + b"\n")
    await caller.stdin.drain()
    ready = await asyncio.wait_for(caller.stdout.readline(), _READY_WITHIN)
    if ready.strip() != b"ready":
        raise RuntimeError(f"the caller process did not start: {ready!r}")
    return caller


async def go(caller: asyncio.subprocess.Process, plan: HttpPlan) -> list[Call]:
    """Send the plan (the caller process answers once every call has been answered); the calls, in plan order."""
    assert caller.stdin is not None
    assert caller.stdout is not None
    caller.stdin.write(b"go\n")
    await caller.stdin.drain()
    line = await asyncio.wait_for(caller.stdout.readline(), _ANSWERED_WITHIN)
    await caller.wait()
    if not line:
        raise RuntimeError(f"the caller process ended without answers (exit {caller.returncode})")
    results: list[dict[str, Any]] = json.loads(line)
    return [
        Call(p["kind"], r["seconds"], r["status"], r["answer"], r["server_ms"])
        for p, r in zip(plan.calls, results, strict=True)
    ]
