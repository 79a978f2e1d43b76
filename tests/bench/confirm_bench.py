"""Confirmation benchmark: webhook received -> order paid, and `confirm_order` throughput.

    .venv/bin/python -m tests.bench.confirm_bench                      # 200 events/s for 30 s, then (b)
    .venv/bin/python -m tests.bench.confirm_bench --rate 200 --seconds 10 --no-direct
    .venv/bin/python -m tests.bench.confirm_bench --poll-delay 0.005   # the worker's arq poll_delay
    .venv/bin/python -m tests.bench.confirm_bench --linger 0.001       # the API's enqueue linger
    .venv/bin/python -m tests.bench.confirm_bench --rate 50 --seconds 10 --no-direct --trace  # per step
    .venv/bin/python -m tests.bench.confirm_bench --seconds 0          # (b) only
    .venv/bin/python -m tests.bench.confirm_bench --seconds 0 --no-direct --storm 5 --workers 2   # (c) only

It creates a scratch database (migrated) on `--pg`, starts a private redis-server, the Stripe sandbox
(its own process, zero latency), one API process (uvicorn, `marketplace.server.app:create_app`) and one worker
process (`marketplace.server.worker.build_worker`, production settings; `--poll-delay` / `BENCH_WORKER_OVERRIDES`
override what `build_worker` passes to arq). It registers the two webhook endpoints on the sandbox as
`make run` does (their signing secrets go to the API), onboards one platform-managed seller (destination
charges) with 8 listings, then **switches both endpoints off** and prepares orders: a guest checkout each
(`POST /checkout`), paid on the sandbox (control API, test card). The sandbox records each session's
`checkout.session.completed` event but delivers nothing, so the app has confirmed none of them.

(a) **Received -> paid.** The events (their bodies as `GET /v1/events` gives them, i.e. what Stripe
posts) are signed with the platform endpoint's secret and posted to `POST /webhooks/stripe` open-loop at
a steady `--rate` per second for `--seconds` (16 keep-alive connections; a send never waits for an
earlier answer). For each order it prints p50 / p99 of:
  * `paid_at - received_at` (both in the database: `received_at` is the event's insert, `paid_at` the
    clock `confirm_order` read before its transaction) -- the headline figure;
  * POST sent -> seen paid (a poller reads the outstanding orders' status every 2 ms): what a client
    waiting for the order observes, commit included;
  * and the stages between: `received` (POST sent -> event row inserted), `queued` (inserted -> claimed by
    the worker: the API's enqueue linger, Redis, arq's poll, the job start), `re-read` (claimed ->
    `paid_at`: the handler's order read, the session re-read from the sandbox, follow_session's and
    confirm_order's reads), `to the row` (`paid_at` -> the order row updated), `commit + finish` (-> the
    event's `processed_at`: stock, outbox rows, commit, the outbox kick, recording the outcome).
  The claim and the row update are timestamped by two `AFTER UPDATE` triggers installed in the scratch
  database (one insert each per event); nothing in the code under test is changed.
  The backlog (events stored but not yet processed) is sampled every 0.5 s and printed per 5 s.

(b) **confirm_order throughput** (in this process, its own pool of `--pool` connections, the session
re-read beforehand and not timed): across many orders at concurrency 1 and 16, and one hot order with
100 concurrent callers (time until all are answered; exactly one wins), repeated over `--hot` orders.

(c) **One paid order, 100 concurrent confirmations** (`--storm N`, N rounds after a warm-up round, each
on an order of its own): the calls of the concurrency proof (tests/e2e/test_confirm_concurrency.py,
tests/support/confirm_storm.py) -- 35 verifies and 40 signed deliveries (the stored event re-posted and
other events of the same session) spread over two API processes and sent at once by a caller process
of their own, and 25 direct `confirm_order` calls in this process -- with the p50 / p99 / max of each
caller's time, over all and per kind. The proof asserts what the calls do; how long they take is this
figure. Run it with `--workers 2` for the proof's two workers.

`--trace` wraps the worker's steps (claim, the handler's order read, the session re-read, follow_session,
confirm_order and its reads, the outbox rows, the kick, finish) in the benchmark's worker process to print
their wall time; `--workers N` starts N worker processes. CPU per event (from /proc) is printed for the
API, the worker(s), the sandbox and this database's PostgreSQL backends.

Preparation is slow for large runs: the sandbox scans every object it holds for each event it records
(`Store.all` in `create_event`), so paying the k-th session costs O(k); 7,010 orders took ~15 minutes.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.bench.webhook_bench import PYTHON, ROOT, free_port, pct, process, uvicorn_args, wait_for_worker, with_db

STRIPE_KEY = "sk_test_bench_confirm"
LISTINGS = 8
CONNECTIONS = 16

WORKER_SCRIPT = """
import json, os
if os.environ.get("BENCH_TRACE"):
    from tests.bench.confirm_bench import trace_worker
    trace_worker(os.environ["BENCH_TRACE"])
from marketplace.server.worker import build_worker
build_worker(**json.loads(os.environ.get("BENCH_WORKER_OVERRIDES", "{}"))).run()
"""

# (module, function) pairs `--trace` times in the worker: the job, and each step of the confirmation.
TRACED = [
    ("webhooks.worker", "process_event"),
    ("webhooks.store", "claim"),
    ("webhooks.handlers.checkout", "order_by_id"),
    ("webhooks.handlers.checkout", "retrieve_session"),
    ("webhooks.handlers.checkout", "follow_session"),
    ("marketplace.orders.confirm", "_order"),
    ("marketplace.orders.confirm", "confirm_order"),
    ("marketplace.orders.confirm", "lines_of"),
    ("marketplace.orders.confirm", "_announce_sale"),
    ("marketplace.orders.confirm", "_kick"),
    ("webhooks.store", "finish"),
]


def trace_worker(path: str) -> None:
    """Wrap each TRACED function (a module attribute, looked up at call time) to append its wall time to
    `path`, one JSON line per call. Instrumentation of the benchmark's worker; the code is unchanged."""
    import functools
    import importlib

    out = open(path, "a", buffering=1)  # noqa: SIM115 -- open for the process's life

    for module_name, name in TRACED:
        module = importlib.import_module(module_name)
        original = getattr(module, name)

        def wrap(fn: Any, label: str) -> Any:
            @functools.wraps(fn)
            async def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    out.write(f'{{"f": "{label}", "ms": {(time.perf_counter() - started) * 1000:.3f}}}\n')

            return timed

        setattr(module, name, wrap(original, f"{module_name.rsplit('.', 1)[-1]}.{name}"))


def print_trace(path: str) -> None:
    calls: dict[str, list[float]] = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            calls.setdefault(record["f"], []).append(record["ms"])
    print("worker wall time per call (--trace):")
    for (_, name), label in zip(TRACED, [f"{m.rsplit('.', 1)[-1]}.{n}" for m, n in TRACED], strict=True):
        values = calls.get(label, [])
        if values:
            print(
                f"  {label:<36} calls {len(values):6d}   p50 {statistics.median(values):7.2f} ms"
                f"   p99 {pct(values, 0.99):7.2f} ms   mean {statistics.fmean(values):7.2f} ms"
            )


# The API under uvicorn, with the webhook enqueuer's linger set first when --linger is given.
API_SCRIPT = """
import os, sys
import uvicorn
if os.environ.get("BENCH_LINGER"):
    import webhooks.queueing
    webhooks.queueing.LINGER_SECONDS = float(os.environ["BENCH_LINGER"])
sys.argv = ["uvicorn", *sys.argv[1:]]
uvicorn.main()
"""

MARKS_DDL = """
CREATE TABLE bench_marks (id text NOT NULL, what text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION bench_mark_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'processing' AND OLD.status IS DISTINCT FROM 'processing' THEN
        INSERT INTO bench_marks (id, what) VALUES (NEW.id, 'claimed');
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION bench_mark_paid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'paid' AND OLD.status IS DISTINCT FROM 'paid' THEN
        INSERT INTO bench_marks (id, what) VALUES (NEW.id::text, 'paid_row');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_mark_claim AFTER UPDATE ON stripe_events FOR EACH ROW EXECUTE FUNCTION bench_mark_claim();
CREATE TRIGGER bench_mark_paid AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION bench_mark_paid();
"""


@dataclass
class Prepared:
    order_id: str
    session_id: str
    event: dict[str, Any] = field(default_factory=dict)
    access_token: str = ""  # the guest's order token (X-Order-Token), for verify calls


# ---- set-up ------------------------------------------------------------------------------------------------


async def _seller(api: httpx.AsyncClient, sandbox_url: str, admin: dict[str, str]) -> list[str]:
    """One onboarded platform-managed seller with LISTINGS listings (ample stock); their ids."""
    from sandbox.control import SandboxControl

    signup = await api.post(
        "/sellers",
        json={
            "display_name": "bench confirm",
            "email": f"confirm-{uuid.uuid4().hex[:8]}@example.com",
            "country": "US",
            "business_type": "individual",
            "account_profile": "platform_managed",
        },
    )
    signup.raise_for_status()
    seller = signup.json()
    auth = {"Authorization": f"Bearer {seller['token']}"}
    account = (await api.post("/sellers/me/stripe-account", headers=auth)).json()
    async with SandboxControl(sandbox_url) as control:
        await control.complete_onboarding(account["account_id"])
    synced = await api.post(f"/admin/sellers/{seller['seller']['id']}/sync", headers=admin)
    assert synced.json()["status"] == "active", synced.text
    ids = []
    for i in range(LISTINGS):
        made = await api.post(
            "/sellers/me/listings",
            json={"title": f"bench item {i}", "unit_amount": 2500, "currency": "usd", "stock": 1_000_000},
            headers=auth,
        )
        made.raise_for_status()
        ids.append(str(made.json()["id"]))
    return ids


async def _pooled(n: int, concurrency: int, one: Any) -> list[Any]:
    """`one(i)` for i in range(n), `concurrency` at a time, results in order."""
    results: list[Any] = [None] * n
    todo = iter(range(n))

    async def loop() -> None:
        for i in todo:
            results[i] = await one(i)

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return results


async def prepare(api_url: str, sandbox_url: str, db_url: str, listings: list[str], n: int) -> list[Prepared]:
    """`n` orders whose sessions are paid on the sandbox, the app not told (its endpoints are off)."""
    from sandbox.control import SandboxControl

    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=60) as api:

        async def buy(i: int) -> tuple[str, str]:
            body = {
                "lines": [{"listing_id": listings[i % len(listings)], "quantity": 1}],
                "email": f"b{uuid.uuid4().hex}@x.io",
            }
            r = await api.post("/checkout", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"checkout answered {r.status_code}: {r.text[:300]}")
            return str(r.json()["order"]["id"]), str(r.json()["access_token"])

        bought: list[tuple[str, str]] = await _pooled(n, CONNECTIONS, buy)
        order_ids = [order_id for order_id, _ in bought]
        tokens = dict(bought)
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT id::text, checkout_session_id FROM orders WHERE id = ANY($1::uuid[])", order_ids
        )
    finally:
        await conn.close()
    sessions = {r["id"]: r["checkout_session_id"] for r in rows}
    prepared = [Prepared(order_id=o, session_id=sessions[o], access_token=tokens[o]) for o in order_ids]
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        control = SandboxControl(sandbox_url, client=http)

        async def pay(i: int) -> None:
            outcome = await control.complete_checkout(prepared[i].session_id)
            if outcome["outcome"] != "succeeded":
                raise RuntimeError(f"paying {prepared[i].session_id}: {outcome['outcome']}")

        await _pooled(n, CONNECTIONS, pay)
    return prepared


async def attach_events(sandbox_url: str, prepared: list[Prepared]) -> None:
    """Each order's `checkout.session.completed` event, as `GET /v1/events` returns it."""
    wanted = {p.session_id: p for p in prepared}
    async with httpx.AsyncClient(
        base_url=sandbox_url, timeout=60, headers={"Authorization": f"Bearer {STRIPE_KEY}"}
    ) as http:
        after: str | None = None
        while True:
            params = {
                "type": "checkout.session.completed",
                "limit": "100",
                **({"starting_after": after} if after else {}),
            }
            page = (await http.get("/v1/events", params=params)).json()
            for event in page["data"]:
                found = wanted.get(event["data"]["object"]["id"])
                if found is not None:
                    found.event = event
            if not page["has_more"] or not page["data"]:
                break
            after = page["data"][-1]["id"]
    missing = [p.session_id for p in prepared if not p.event]
    if missing:
        raise RuntimeError(f"{len(missing)} sessions have no checkout.session.completed event, e.g. {missing[:3]}")


def signed(path: str, event: dict[str, Any], secret: str) -> bytes:
    """A raw HTTP/1.1 request: the event's body with a `Stripe-Signature` computed as Stripe does."""
    body = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
        f"Stripe-Signature: t={t},v1={sig}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return int(lines[0].split()[1])


# ---- (a) received -> paid ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far (from /proc); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_pids(db_url: str) -> list[int]:
    """The PostgreSQL backends connected to the scratch database (the API's, the worker's, ours)."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def steady_load(
    port: int, db_url: str, prepared: list[Prepared], secret: str, rate: float
) -> tuple[dict[str, float], dict[str, float], list[tuple[float, int]], int]:
    """Post every prepared event at `rate`/s; (sent at per order, seen paid at per order, backlog samples,
    non-2xx answers)."""
    requests = [signed("/webhooks/stripe", p.event, secret) for p in prepared]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    backlog: list[tuple[float, int]] = []
    errors = 0
    outstanding: set[str] = set()
    sending = True

    async def post(order_id: str, request: bytes) -> None:
        nonlocal errors
        reader, writer = await idle.get()
        sent[order_id] = time.time()
        outstanding.add(order_id)
        writer.write(request)
        if await _read_status(reader) >= 300:
            errors += 1
        idle.put_nowait((reader, writer))

    poller = await asyncpg.connect(db_url)
    sampler = await asyncpg.connect(db_url)

    async def watch_paid() -> None:
        while sending or outstanding:
            if outstanding:
                rows = await poller.fetch(
                    "SELECT id::text FROM orders WHERE id = ANY($1::uuid[]) AND status = 'paid'", list(outstanding)
                )
                now = time.time()
                for r in rows:
                    seen[r["id"]] = now
                    outstanding.discard(r["id"])
            await asyncio.sleep(0.002)

    async def watch_backlog(started: float) -> None:
        while sending or outstanding:
            n = await sampler.fetchval("SELECT count(*) FROM stripe_events WHERE status IN ('pending', 'processing')")
            backlog.append((time.time() - started, int(n)))
            await asyncio.sleep(0.5)

    started = time.time()
    watchers = [asyncio.create_task(watch_paid()), asyncio.create_task(watch_backlog(started))]
    tasks = []
    base = time.perf_counter()
    for i, (p, request) in enumerate(zip(prepared, requests, strict=True)):
        delay = base + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(p.order_id, request)))
    await asyncio.gather(*tasks)
    sending = False
    deadline = time.time() + 120
    while outstanding and time.time() < deadline:
        await asyncio.sleep(0.05)
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    await poller.close()
    await sampler.close()
    while not idle.empty():
        idle.get_nowait()[1].close()
    return sent, seen, backlog, errors


async def breakdown(db_url: str, prepared: list[Prepared], sent: dict[str, float], seen: dict[str, float]) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        events = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, received_at, processed_at, status FROM stripe_events WHERE id = ANY($1::text[])",
                [p.event["id"] for p in prepared],
            )
        }
        orders = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id::text, paid_at, status FROM orders WHERE id = ANY($1::uuid[])",
                [p.order_id for p in prepared],
            )
        }
        marks: dict[tuple[str, str], float] = {}
        for r in await conn.fetch("SELECT id, what, min(at) AS at FROM bench_marks GROUP BY id, what"):
            marks[(r["id"], r["what"])] = r["at"].timestamp()
    finally:
        await conn.close()
    stages: dict[str, list[float]] = {
        k: []
        for k in (
            "paid_at - received_at",
            "sent -> seen paid",
            "received (sent -> row)",
            "queued (-> claimed)",
            "re-read (-> paid_at)",
            "to the row (-> row updated)",
            "commit + finish (-> processed)",
            "received -> row updated",
        )
    }
    not_paid = 0
    for p in prepared:
        e, o = events.get(p.event["id"]), orders[p.order_id]
        if e is None or o["paid_at"] is None or e["processed_at"] is None:
            not_paid += 1
            continue
        received, paid_at, done = e["received_at"].timestamp(), o["paid_at"].timestamp(), e["processed_at"].timestamp()
        claimed, row = marks.get((p.event["id"], "claimed")), marks.get((p.order_id, "paid_row"))
        stages["paid_at - received_at"].append(paid_at - received)
        if p.order_id in seen:
            stages["sent -> seen paid"].append(seen[p.order_id] - sent[p.order_id])
        stages["received (sent -> row)"].append(received - sent[p.order_id])
        if claimed is not None and row is not None:
            stages["queued (-> claimed)"].append(claimed - received)
            stages["re-read (-> paid_at)"].append(paid_at - claimed)
            stages["to the row (-> row updated)"].append(row - paid_at)
            stages["commit + finish (-> processed)"].append(done - row)
            stages["received -> row updated"].append(row - received)
    print(f"orders paid: {len(prepared) - not_paid}/{len(prepared)}")
    for name, values in stages.items():
        if values:
            print(
                f"  {name:<32} p50 {statistics.median(values) * 1000:7.2f} ms   p99 {pct(values, 0.99) * 1000:7.2f} ms"
                f"   mean {statistics.fmean(values) * 1000:7.2f} ms   (n={len(values)})"
            )


def print_backlog(backlog: list[tuple[float, int]], seconds: float) -> None:
    during = [(t, n) for t, n in backlog if t <= seconds]
    buckets: dict[int, int] = {}
    for t, n in backlog:
        buckets[int(t // 5)] = max(buckets.get(int(t // 5), 0), n)
    series = ", ".join(f"{b * 5}-{b * 5 + 5}s:{n}" for b, n in sorted(buckets.items()))
    print(f"backlog (events stored, not processed; max per 5 s): {series}")
    if len(during) >= 4:
        half = len(during) // 2
        first, last = statistics.fmean(n for _, n in during[:half]), statistics.fmean(n for _, n in during[half:])
        grew = last > first + 5
        print(
            f"backlog mean first half {first:.1f}, second half {last:.1f}: "
            + ("GREW during the run" if grew else "did not grow")
        )


# ---- (b) confirm_order throughput ----------------------------------------------------------------------------


async def direct_rounds(
    db_url: str, sandbox_url: str, prepared: list[Prepared], c1: int, c16: int, hot: int, pool: int
) -> None:
    from connect.checkout import SessionFacts, retrieve_session
    from connect.client import build_stripe_client, close_stripe_client
    from marketplace.lib.db import start_database, stop_database
    from marketplace.orders.confirm import confirm_order

    client = build_stripe_client(STRIPE_KEY, api_base=sandbox_url)
    facts: list[SessionFacts] = await _pooled(
        len(prepared), CONNECTIONS, lambda i: retrieve_session(client, prepared[i].session_id, None)
    )
    await close_stripe_client(client)
    await start_database(db_url, max_size=pool)
    try:
        offset = 0
        for concurrency, count in ((1, c1), (16, c16)):
            batch = list(range(offset, offset + count))
            offset += count
            latencies: list[float] = []
            wins = 0

            async def one(i: int, batch: list[int] = batch, latencies: list[float] = latencies) -> None:
                nonlocal wins
                k = batch[i]
                started = time.perf_counter()
                done = await confirm_order(uuid.UUID(prepared[k].order_id), facts[k], "bench")
                latencies.append(time.perf_counter() - started)
                wins += done.won

            started = time.perf_counter()
            await _pooled(len(batch), concurrency, one)
            elapsed = time.perf_counter() - started
            print(
                f"confirm_order, {count} orders at concurrency {concurrency:<2}: {count / elapsed:7.1f} confirmations/s"
                f"   per call p50 {statistics.median(latencies) * 1000:6.2f} ms"
                f"  p99 {pct(latencies, 0.99) * 1000:6.2f} ms"
                f"   (won {wins}/{count})"
            )
        times: list[float] = []
        slowest: list[float] = []
        for k in range(offset, offset + hot):
            order_id = uuid.UUID(prepared[k].order_id)

            async def call(order_id: uuid.UUID = order_id, k: int = k) -> tuple[bool, float]:
                started = time.perf_counter()
                done = await confirm_order(order_id, facts[k], "bench-hot")
                return done.won, time.perf_counter() - started

            started = time.perf_counter()
            results = await asyncio.gather(*(call() for _ in range(100)))
            times.append(time.perf_counter() - started)
            slowest.append(max(s for _, s in results))
            winners = sum(1 for won, _ in results if won)
            if winners != 1:
                print(f"  !! hot order {order_id}: {winners} winners")
        if times:
            print(
                f"one hot order, 100 concurrent confirm_order calls ({hot} orders): all answered in"
                f" median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
                f" (slowest single call max {max(slowest) * 1000:.1f} ms); one winner each"
            )
    finally:
        await stop_database()


# ---- (c) one paid order, 100 concurrent confirmations ---------------------------------------------------------


async def storm_rounds(
    api_urls: dict[str, str], sandbox_url: str, db_url: str, orders: list[Prepared], secret: str, pool: int
) -> None:
    """Per order, the concurrency proof's 100 callers at once (tests/support/confirm_storm.py): verifies
    through both APIs, the stored event re-delivered and other events of the session through both, and
    direct `confirm_order` calls in this process. The first order warms the processes (their pools open
    connections on demand under such a burst) and is printed apart."""
    from connect.checkout import retrieve_session
    from connect.client import build_stripe_client, close_stripe_client
    from marketplace.lib.db import start_database, stop_database
    from marketplace.orders.confirm import confirm_order
    from tests.support.confirm_storm import DIRECT_CALLS, Call, go, http_plan, start_callers

    client = build_stripe_client(STRIPE_KEY, api_base=sandbox_url)
    await start_database(db_url, max_size=pool)
    measured: list[Call] = []
    try:
        for n, order in enumerate(orders):
            plan = http_plan(
                api_urls,
                order.order_id,
                order.access_token,
                order.session_id,
                json.dumps(order.event),
                "/webhooks/stripe",
                secret,
            )

            async def direct(i: int, gate: asyncio.Event, order: Prepared = order) -> Call:
                await gate.wait()
                started = time.perf_counter()
                facts = await retrieve_session(client, order.session_id, None)
                done = await confirm_order(uuid.UUID(order.order_id), facts, f"direct:{i}")
                answer = {"status": done.order.status.value, "won": done.won}
                return Call("direct", time.perf_counter() - started, None, answer)

            gate = asyncio.Event()
            directs = [asyncio.create_task(direct(i, gate)) for i in range(DIRECT_CALLS)]
            caller = await start_callers(plan)
            answered = asyncio.create_task(go(caller, plan))
            gate.set()
            calls = await answered + list(await asyncio.gather(*directs))
            not_ok = sum(1 for c in calls if c.status is not None and c.status != 200)
            not_paid = sum(1 for c in calls if c.kind.startswith(("verify", "direct")) and c.answer["status"] != "paid")
            winners = sum(1 for c in calls if c.kind == "direct" and c.answer["won"])
            print(
                f"  {'warm-up' if n == 0 else f'round {n}':<8} slowest {max(c.seconds for c in calls) * 1000:7.1f} ms;"
                f" non-200 {not_ok}, verify/direct answers not paid {not_paid}, direct winners {winners}"
                f"; load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
            )
            if n:
                measured += calls
    finally:
        await stop_database()
        await close_stripe_client(client)
    if measured:
        print(f"(c) {len(orders) - 1} rounds of 100 callers, each caller's time (the warm-up round left out):")
        for line in latency_lines(measured):
            print(line)


def latency_lines(calls: list[Any]) -> list[str]:
    """p50 / p99 / max of the callers' times, over all calls and per kind; for HTTP calls also the
    slowest Server-Timing (the API's own time, and its wait for Stripe)."""
    by_kind: dict[str, list[Any]] = {"all": calls}
    for c in calls:
        by_kind.setdefault(c.kind, []).append(c)
    lines = []
    for kind, group in sorted(by_kind.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        ms = [c.seconds * 1000 for c in group]
        line = (
            f"  {kind:<10} n={len(group):4d}   p50 {statistics.median(ms):7.1f} ms"
            f"   p99 {pct(ms, 0.99):7.1f} ms   max {max(ms):7.1f} ms"
        )
        http = [c for c in group if c.status is not None]
        if http and kind != "all":
            line += (
                f"   (server: app max {max(c.server_ms.get('app', 0.0) for c in http):.0f} ms,"
                f" waiting for Stripe max {max(c.server_ms.get('stripe', 0.0) for c in http):.0f} ms)"
            )
        lines.append(line)
    return lines


async def drain_queue(redis_port: int, timeout: float = 15) -> None:
    """Until arq's queue is empty (the outbox kicks the confirmations asked for have run)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=redis_port)
    try:
        deadline = time.time() + timeout
        while await client.zcard("arq:queue") and time.time() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


# ---- main ----------------------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    from connect.client import build_stripe_client, close_stripe_client
    from marketplace.lib.migrate import migrate
    from webhooks.registration import register_webhooks

    pg = args.pg
    name = f"bench_confirm_{uuid.uuid4().hex[:8]}"
    admin_conn = await asyncpg.connect(pg)
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    await admin_conn.close()
    db_url = with_db(pg, name)
    await migrate(db_url)
    conn = await asyncpg.connect(db_url)
    await conn.execute(MARKS_DDL)
    await conn.close()
    redis_port, sandbox_port, api_port = free_port(), free_port(), free_port()
    redis_dir = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", redis_dir],
        stdout=subprocess.DEVNULL,
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    sandbox_url, api_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    env = dict(os.environ)
    env.update(
        {
            "APP_ENV": "development",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": sandbox_url,
            "PUBLIC_BASE_URL": api_url,
            "ALLOW_SELLER_ACCOUNT_PROFILE": "true",
            # Every checkout of the benchmark comes from 127.0.0.1: its per-address limit would refuse them.
            "CHECKOUT_LIMIT_PER_MINUTE": "1000000",
            "VERIFY_LIMIT_PER_MINUTE": "1000000",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            "PYTHONPATH": str(ROOT),
        }
    )
    overrides = json.loads(os.environ.get("BENCH_WORKER_OVERRIDES", "{}"))
    if args.poll_delay is not None:
        overrides["poll_delay"] = args.poll_delay
    env["BENCH_WORKER_OVERRIDES"] = json.dumps(overrides)
    if args.linger is not None:
        env["BENCH_LINGER"] = str(args.linger)
    trace_path = None
    if args.trace:
        trace_path = os.path.join(tempfile.mkdtemp(prefix="bench-trace-"), "worker.jsonl")
        env["BENCH_TRACE"] = trace_path
    n_latency = int(args.rate * args.seconds)
    n_direct = 0 if args.no_direct else args.c1 + args.c16 + args.hot
    n_storm = args.storm + 1 if args.storm else 0  # + the warm-up round
    try:
        sandbox_cmd = [PYTHON, "-m", "marketplace.server.cli", "sandbox", "--port", str(sandbox_port)]
        with process(sandbox_cmd, env, sandbox_port) as sandbox_proc:
            stripe = build_stripe_client(STRIPE_KEY, api_base=sandbox_url)
            secrets = await register_webhooks(stripe, api_url)
            env["STRIPE_WEBHOOK_SECRET_PLATFORM"] = str(secrets["platform"])
            env["STRIPE_WEBHOOK_SECRET_CONNECT"] = str(secrets["connect"])
            api_cmd = [PYTHON, "-c", API_SCRIPT, *uvicorn_args("marketplace.server.app:create_app", api_port, True)[3:]]
            with contextlib.ExitStack() as running:
                api_proc = running.enter_context(process(api_cmd, env, api_port))
                api_urls = {"A": api_url}
                if n_storm:  # (c) calls two API processes, as the proof does
                    api_b_port = free_port()
                    api_b_cmd = [
                        PYTHON,
                        "-c",
                        API_SCRIPT,
                        *uvicorn_args("marketplace.server.app:create_app", api_b_port, True)[3:],
                    ]
                    running.enter_context(process(api_b_cmd, env, api_b_port))
                    api_urls["B"] = f"http://127.0.0.1:{api_b_port}"
                workers = [
                    running.enter_context(process([PYTHON, "-c", WORKER_SCRIPT], env)) for _ in range(args.workers)
                ]
                await wait_for_worker(redis_url)
                token = (
                    subprocess.run(
                        [PYTHON, "-m", "marketplace.server.cli", "admin", "create-token", "--name", "bench"],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    .stdout.strip()
                    .split()[-1]
                )
                async with httpx.AsyncClient(base_url=api_url, timeout=60) as api:
                    listings = await _seller(api, sandbox_url, {"Authorization": f"Bearer {token}"})
                await asyncio.sleep(1.0)  # the onboarding's deliveries land first
                endpoints = await stripe.v1.webhook_endpoints.list_async(params={"limit": 100})
                for endpoint in endpoints.data:  # webhook delivery off: the app hears of no payment
                    await stripe.v1.webhook_endpoints.update_async(endpoint.id, params={"disabled": True})
                await close_stripe_client(stripe)
                print(
                    f"cpus={os.cpu_count()} python={sys.version.split()[0]} load average at start "
                    f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}; worker overrides {overrides or 'none'};"
                    f" enqueue linger {args.linger if args.linger is not None else 'the default'}"
                )
                prep_started = time.time()
                prepared = await prepare(api_url, sandbox_url, db_url, listings, n_latency + n_direct + n_storm)
                await attach_events(sandbox_url, prepared)
                conn = await asyncpg.connect(db_url)
                pending = await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'pending'")
                await conn.execute("DELETE FROM bench_marks")
                await conn.close()
                print(
                    f"prepared {len(prepared)} paid sessions in {time.time() - prep_started:.1f} s;"
                    f" orders still pending here: {pending}"
                )
                if n_latency:
                    latency_set = prepared[:n_latency]
                    if trace_path:
                        os.truncate(trace_path, 0)  # only the run's calls (the worker appends)
                    procs = {"api": api_proc.pid, "sandbox": sandbox_proc.pid}
                    procs |= {f"worker{i + 1}" if len(workers) > 1 else "worker": w.pid for i, w in enumerate(workers)}
                    backends = await backend_pids(db_url)
                    cpu_before = {k: cpu_seconds(pid) for k, pid in procs.items()}
                    pg_before = {pid: cpu_seconds(pid) for pid in backends}
                    sent, seen, backlog, errors = await steady_load(
                        api_port, db_url, latency_set, str(secrets["platform"]), args.rate
                    )
                    cpu = {k: (cpu_seconds(pid) - cpu_before[k]) for k, pid in procs.items()}
                    cpu["postgres (this database's backends)"] = sum(
                        cpu_seconds(pid) - pg_before.get(pid, 0.0) for pid in await backend_pids(db_url)
                    )
                    span = max(sent.values()) - min(sent.values())
                    print(
                        f"(a) {len(latency_set)} checkout.session.completed events posted at {args.rate:g}/s"
                        f" over {span:.1f} s (non-2xx {errors}); one API process, {len(workers)} worker process(es)"
                    )
                    await breakdown(db_url, latency_set, sent, seen)
                    print_backlog(backlog, args.seconds)
                    if trace_path:
                        print_trace(trace_path)
                        shutil.rmtree(os.path.dirname(trace_path), ignore_errors=True)
                    print(
                        "CPU per event: "
                        + ", ".join(f"{k} {v / len(latency_set) * 1e3:.2f} ms" for k, v in cpu.items())
                        + f" (totals over the run: {', '.join(f'{k} {v:.1f} s' for k, v in cpu.items())})"
                    )
                if n_direct:
                    print("(b) confirm_order called directly (sessions re-read beforehand, not timed):")
                    await direct_rounds(
                        db_url,
                        sandbox_url,
                        prepared[n_latency : n_latency + n_direct],
                        args.c1,
                        args.c16,
                        args.hot,
                        args.pool,
                    )
                if n_storm:
                    print(
                        f"(c) one paid order, 100 concurrent confirmations, {args.storm} rounds after a warm-up:"
                        f" two API processes, {len(workers)} worker process(es), the callers a process of their own"
                    )
                    await storm_rounds(
                        api_urls,
                        sandbox_url,
                        db_url,
                        prepared[n_latency + n_direct :],
                        str(secrets["platform"]),
                        args.pool,
                    )
                print(f"load average at the end {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
                await drain_queue(redis_port)  # the workers stop idle, not mid-job
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(redis_dir, ignore_errors=True)
        admin_conn = await asyncpg.connect(pg)
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rate", type=float, default=200.0, help="events posted per second in (a)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long (a) posts for")
    parser.add_argument(
        "--poll-delay", type=float, default=None, help="the worker's arq poll_delay (default: build_worker's)"
    )
    parser.add_argument(
        "--linger", type=float, default=None, help="the API's enqueue linger in s (default: LINGER_SECONDS)"
    )
    parser.add_argument("--c1", type=int, default=200, help="orders confirmed directly at concurrency 1")
    parser.add_argument("--c16", type=int, default=800, help="orders confirmed directly at concurrency 16")
    parser.add_argument("--hot", type=int, default=10, help="hot orders, 100 concurrent callers each")
    parser.add_argument("--pool", type=int, default=22, help="this process's pool for (b) (a worker's default)")
    parser.add_argument("--no-direct", action="store_true", help="skip (b)")
    parser.add_argument(
        "--storm", type=int, default=0, help="(c): rounds of 100 concurrent confirmations of one order (0: skip)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (the brief: one)")
    parser.add_argument("--trace", action="store_true", help="time each step of the worker's confirmation")
    asyncio.run(main(parser.parse_args()))
