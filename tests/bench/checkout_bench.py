"""Checkout benchmark: `POST /checkout` end to end, and how much of each request is ours.

    .venv/bin/python -m tests.bench.checkout_bench            # PostgreSQL at 127.0.0.1:5432 (user postgres)
    .venv/bin/python -m tests.bench.checkout_bench --requests 2000 --levels 1 16

It creates a scratch database (migrated), starts a private redis-server, the Stripe sandbox (its own
process, zero latency) and the API (one uvicorn process, `APP_ENV=development`, LOG_LEVEL=WARNING),
onboards two sellers (one platform-managed: destination charges; one seller-managed: direct charges)
with one unlimited-stock listing each, then posts guest checkouts (a new email each, so every request
writes a new order and creates a new Checkout Session), alternating the two sellers, at each
concurrency. For every request it reads the API's `Server-Timing` header: `stripe` is the time the
API spent waiting for the sandbox's answers, `app` the rest of the server's own time. It prints, per
level: checkouts per second, the median and p99 of the total (client-side) latency, of `stripe`, and of
`app` (the figure the target is about: median under 5 ms). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import asyncpg
import httpx

from tests.bench.webhook_bench import PYTHON, free_port, pct, process, uvicorn_args, with_db

WARMUP = 100


def _timing(header: str) -> dict[str, float]:
    parts = {}
    for item in header.split(","):
        name, _, rest = item.strip().partition(";dur=")
        if rest:
            parts[name] = float(rest)
    return parts


async def _seed(api: httpx.AsyncClient, control_url: str, admin: dict[str, str], profile: str) -> str:
    from sandbox.control import SandboxControl

    signup = await api.post(
        "/sellers",
        json={
            "display_name": f"bench {profile}",
            "email": f"{profile}-{uuid.uuid4().hex[:8]}@example.com",
            "country": "US",
            "business_type": "individual",
            "account_profile": profile,
        },
    )
    signup.raise_for_status()
    seller = signup.json()
    auth = {"Authorization": f"Bearer {seller['token']}"}
    account = (await api.post("/sellers/me/stripe-account", headers=auth)).json()
    async with SandboxControl(control_url) as control:
        await control.complete_onboarding(account["account_id"])
    synced = await api.post(f"/admin/sellers/{seller['seller']['id']}/sync", headers=admin)
    assert synced.json()["status"] == "active", synced.text
    listing = await api.post(
        "/sellers/me/listings",
        json={"title": f"bench item ({profile})", "unit_amount": 2500, "currency": "usd", "stock": None},
        headers=auth,
    )
    listing.raise_for_status()
    return str(listing.json()["id"])


async def _round(api_url: str, listings: list[str], n: int, concurrency: int) -> tuple[float, list[dict[str, float]]]:
    samples: list[dict[str, float]] = []
    queue = list(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            body = {
                "lines": [{"listing_id": listings[i % len(listings)], "quantity": 1}],
                "email": f"b{uuid.uuid4().hex}@x.io",
            }
            started = time.perf_counter()
            response = await http.post("/checkout", json=body)
            total = (time.perf_counter() - started) * 1000
            if response.status_code != 201:
                raise RuntimeError(f"checkout answered {response.status_code}: {response.text[:300]}")
            timing = _timing(response.headers.get("server-timing", ""))
            samples.append({"total": total, "stripe": timing.get("stripe", 0.0), "app": timing.get("app", 0.0)})

    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, samples


async def main(pg: str, levels: list[int], requests: int) -> None:
    from marketplace.lib.migrate import migrate

    name = f"bench_checkout_{uuid.uuid4().hex[:8]}"
    admin_conn = await asyncpg.connect(pg)
    await admin_conn.execute(f'CREATE DATABASE "{name}"')
    await admin_conn.close()
    db_url = with_db(pg, name)
    await migrate(db_url)
    redis_port, sandbox_port, api_port = free_port(), free_port(), free_port()
    redis_dir = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", redis_dir],
        stdout=subprocess.DEVNULL,
    )
    sandbox_url, api_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    env = dict(os.environ)
    env.update(
        {
            "APP_ENV": "development",
            "DATABASE_URL": db_url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "STRIPE_SECRET_KEY": "sk_test_bench_checkout",
            "STRIPE_API_BASE": sandbox_url,
            "PUBLIC_BASE_URL": api_url,
            "ALLOW_SELLER_ACCOUNT_PROFILE": "true",
            # Every checkout of the benchmark comes from 127.0.0.1: its per-address limit would refuse them.
            "CHECKOUT_LIMIT_PER_MINUTE": "1000000",
            "VERIFY_LIMIT_PER_MINUTE": "1000000",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.getcwd(),
        }
    )
    try:
        with (
            process(
                [PYTHON, "-m", "marketplace.server.cli", "sandbox", "--port", str(sandbox_port)], env, sandbox_port
            ),
            process(uvicorn_args("marketplace.server.app:create_app", api_port, True), env, api_port),
        ):
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
            admin = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=api_url, timeout=60) as api:
                listings = [await _seed(api, sandbox_url, admin, p) for p in ("platform_managed", "seller_managed")]
            print(
                f"cpus={os.cpu_count()} python={sys.version.split()[0]} requests={requests} per level, warmup={WARMUP}"
            )
            await _round(api_url, listings, WARMUP, 4)
            for concurrency in levels:
                elapsed, samples = await _round(api_url, listings, requests, concurrency)
                figures = {
                    key: (statistics_median([s[key] for s in samples]), pct([s[key] for s in samples], 0.99))
                    for key in ("total", "stripe", "app")
                }
                print(
                    f"c={concurrency:<3} {len(samples) / elapsed:7.1f} checkouts/s | "
                    + " | ".join(f"{key} p50 {p50:6.2f} ms p99 {p99:7.2f} ms" for key, (p50, p99) in figures.items())
                )
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(redis_dir, ignore_errors=True)
        admin_conn = await asyncpg.connect(pg)
        await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()


def statistics_median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.pg, args.levels, args.requests))
