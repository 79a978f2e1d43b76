"""Webhook ingest benchmark: the real API against a bare baseline, and end-to-end lag with one worker.

    .venv/bin/python -m tests.bench.webhook_bench            # PostgreSQL at 127.0.0.1:5432 (user postgres)
    .venv/bin/python -m tests.bench.webhook_bench --pg postgresql://postgres@127.0.0.1:5432/postgres

It creates two scratch databases (migrated with the project's migrations), starts a private
redis-server on a free port, then, for each concurrency (1, 16, 64 keep-alive connections):

* the API (`marketplace.server.app:create_app`, one uvicorn process, default settings, LOG_LEVEL=INFO) and
* the baseline (`tests.bench.baseline_app`: verify + asyncpg insert, same uvicorn, same table;
  `--baseline-no-reset`: its pool skips asyncpg's session reset, as the API's ingest pool does)

each receive the same number of signed, unique `POST /webhooks/stripe` deliveries; it prints
throughput, p50/p99 latency and the API/baseline ratios. Finally it starts one worker
(`marketplace.server.worker.build_worker`, a no-op handler registered for the benchmark's type), posts a
burst of 5,000 events at 64 connections and reports when the last one was processed and the
received→processed lag. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SECRET = "whsec_bench_platform"
EVENT_TYPE = "bench.noop"
LEVELS = {1: 1500, 16: 5000, 64: 6000}  # concurrency -> requests measured
WARMUP = 300
BURST = 5000
ROUNDS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


def signed_delivery(path: str) -> bytes:
    """One raw HTTP/1.1 request carrying a unique, freshly signed event."""
    event = {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"cs_bench_{uuid.uuid4().hex[:16]}",
                "object": "checkout.session",
                "amount_total": 2500,
                "currency": "usd",
                "metadata": {"order_id": str(uuid.uuid4())},
                "payment_status": "paid",
                "status": "complete",
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": EVENT_TYPE,
    }
    body = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: t={t},v1={sig}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    """Send `requests` over `concurrency` keep-alive connections; (seconds, latencies, non-2xx)."""
    latencies: list[float] = []
    errors = 0
    queue = iter(requests)

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in queue:
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def _log_file(args: list[str]) -> IO[bytes]:
    """Where a child's output goes: a temporary file, or a kept one under $BENCH_KEEP_LOGS."""
    keep = os.environ.get("BENCH_KEEP_LOGS")
    if keep:
        return (Path(keep) / f"{'worker' if '-c' in args else 'server'}-{time.time_ns()}.log").open("w+b")
    return tempfile.TemporaryFile()


@contextmanager
def process(args: list[str], env: dict[str, str], port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    log = _log_file(args)  # closed in the finally below
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        if port is not None:
            wait_port(port, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -2, 130):
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
        log.close()


def app_env(db_url: str, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "APP_ENV": "development",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "STRIPE_SECRET_KEY": "sk_test_bench",
            "STRIPE_API_BASE": "http://127.0.0.1:9",  # never called: the benchmark handler is a no-op
            "STRIPE_WEBHOOK_SECRET_PLATFORM": SECRET,
            "STRIPE_WEBHOOK_SECRET_CONNECT": "whsec_bench_connect",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            "BENCH_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def uvicorn_args(target: str, port: int, factory: bool) -> list[str]:
    args = [PYTHON, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return [*args, "--no-access-log", *(["--factory"] if factory else [])]


WORKER_SCRIPT = f"""
from webhooks.registry import handles

@handles({EVENT_TYPE!r}, endpoints={{"platform", "connect"}})
async def noop(ctx, event):
    return None

import json, os
from marketplace.server.worker import build_worker
build_worker(**json.loads(os.environ.get("BENCH_WORKER_OVERRIDES", "{{}}"))).run()
"""


async def flush_redis(redis_url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def wait_for_worker(redis_url: str, timeout: float = 60) -> None:
    """Until the worker has started polling (arq writes its health-check key on its first poll)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        deadline = time.time() + timeout
        while not await client.exists("arq:queue:health-check"):
            if time.time() > deadline:
                raise RuntimeError("the worker did not start")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def count(db_url: str, sql: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


async def truncate(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("TRUNCATE stripe_events")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ingest_round(pid: int, port: int, db_url: str, concurrency: int, n: int) -> dict[str, float]:
    await load(port, [signed_delivery("/webhooks/stripe") for _ in range(WARMUP)], concurrency)
    requests = [signed_delivery("/webhooks/stripe") for _ in range(n)]
    cpu_before = cpu_seconds(pid)
    seconds, latencies, errors = await load(port, requests, concurrency)
    cpu = cpu_seconds(pid) - cpu_before
    stored = await count(db_url, "SELECT count(*) FROM stripe_events")
    return {
        "cpu_us": cpu / n * 1e6,
        "rps": n / seconds,
        "p50": pct(latencies, 0.50) * 1000,
        "p99": pct(latencies, 0.99) * 1000,
        "errors": errors,
        "stored": stored,
        "expected": n + WARMUP,
    }


async def main(pg: str, levels: list[int], burst: bool, baseline_no_reset: bool = False) -> None:
    from marketplace.lib.migrate import migrate

    names = {"app": f"bench_app_{uuid.uuid4().hex[:8]}", "base": f"bench_base_{uuid.uuid4().hex[:8]}"}
    admin = await asyncpg.connect(pg)
    for name in names.values():
        await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    urls = {k: with_db(pg, v) for k, v in names.items()}
    for url in urls.values():
        await migrate(url)

    redis_port = free_port()
    redis_dir = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", redis_dir],
        stdout=subprocess.DEVNULL,
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    try:
        api_port, base_port = free_port(), free_port()
        env_app, env_base = app_env(urls["app"], redis_url), app_env(urls["base"], redis_url)
        env_base["DATABASE_URL"] = urls["base"]
        if baseline_no_reset:
            env_base["BENCH_BASELINE_NO_RESET"] = "1"
        print(
            f"cpus={os.cpu_count()} python={sys.version.split()[0]} warmup={WARMUP} per level"
            f" baseline={'no session reset (strict)' if baseline_no_reset else 'asyncpg pool defaults'}"
        )
        for concurrency in levels:
            n = LEVELS[concurrency]
            runs: dict[str, list[dict[str, float]]] = {"base": [], "app": []}
            # Both servers stay up; rounds alternate base/app so drift from other load on the machine
            # hits both alike, and the median of ROUNDS rounds is reported.
            with (
                process(uvicorn_args("tests.bench.baseline_app:app", base_port, False), env_base, base_port) as bp,
                process(uvicorn_args("marketplace.server.app:create_app", api_port, True), env_app, api_port) as ap,
            ):
                for round_ in range(ROUNDS):
                    order = ["base", "app"] if round_ % 2 == 0 else ["app", "base"]
                    for which in order:
                        await truncate(urls[which])
                        pid, port = (bp.pid, base_port) if which == "base" else (ap.pid, api_port)
                        runs[which].append(await ingest_round(pid, port, urls[which], concurrency, n))
            base = {k: statistics.median(r[k] for r in runs["base"]) for k in runs["base"][0]}
            app = {k: statistics.median(r[k] for r in runs["app"]) for k in runs["app"][0]}
            for which, r in (("baseline", base), ("api", app)):
                print(
                    f"c={concurrency:<3} {which:<8} {r['rps']:8.0f} req/s"
                    f"  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
                    f"  server CPU {r['cpu_us']:4.0f} us/req  non-2xx {int(r['errors'])}"
                    f"  stored {int(r['stored'])}/{int(r['expected'])}"
                )
            ratios = [a["rps"] / b["rps"] for a, b in zip(runs["app"], runs["base"], strict=True)]
            print(
                f"c={concurrency:<3} ratio    throughput {app['rps'] / base['rps']:.2f}x (target >= 0.85)"
                f"  p99 {app['p99'] / base['p99']:.2f}x (target <= 1.25)"
                f"  [per-round throughput ratios: {', '.join(f'{r:.2f}' for r in ratios)}]"
            )

        if not burst:
            return
        # End to end: one API process, one worker, a burst of 5,000 events. The ingest rounds left tens
        # of thousands of jobs for truncated rows in Redis (no worker ran then): start from empty.
        await truncate(urls["app"])
        await flush_redis(redis_url)
        with (
            process(uvicorn_args("marketplace.server.app:create_app", api_port, True), env_app, api_port),
            process([PYTHON, "-c", WORKER_SCRIPT], env_app),
        ):
            await wait_for_worker(redis_url)
            requests = [signed_delivery("/webhooks/stripe") for _ in range(BURST)]
            started = time.time()
            send_seconds, _, errors = await load(api_port, requests, 64)
            done_sql = "SELECT count(*) FROM stripe_events WHERE status = 'processed'"
            while await count(urls["app"], done_sql) < BURST and time.time() - started < 120:
                await asyncio.sleep(0.1)
            conn = await asyncpg.connect(urls["app"])
            row = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE status = 'processed') AS done,
                          EXTRACT(EPOCH FROM max(processed_at) - min(received_at)) AS span,
                          percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
                          max(lag) AS worst
                   FROM (SELECT *, EXTRACT(EPOCH FROM processed_at - received_at) AS lag FROM stripe_events) e"""
            )
            await conn.close()
            assert row is not None
            print(
                f"burst {BURST} events: sent in {send_seconds:.2f} s (non-2xx {errors}); "
                f"processed {row['done']}/{BURST}; "
                f"first received -> last processed {float(row['span']):.2f} s (target < 20 s); "
                f"lag p50 {float(row['p50']):.2f} s, p99 {float(row['p99']):.2f} s, max {float(row['worst']):.2f} s"
            )
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(redis_dir, ignore_errors=True)
        admin = await asyncpg.connect(pg)
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--levels", default="1,16,64", help="concurrency levels (subset of 1,16,64)")
    parser.add_argument("--no-burst", action="store_true", help="skip the end-to-end burst")
    parser.add_argument(
        "--baseline-no-reset",
        action="store_true",
        help="the baseline's pool skips asyncpg's session reset on release, as the API's ingest pool does",
    )
    options = parser.parse_args()
    levels = [int(c) for c in options.levels.split(",") if c]
    asyncio.run(main(options.pg, levels, not options.no_burst, options.baseline_no_reset))
