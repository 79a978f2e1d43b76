"""Liveness and readiness for a load balancer (docs/architecture.md, "Health checks for a load balancer").

Ready means "can take deliveries": PostgreSQL answers, because the webhook endpoints store every
event there before acknowledging it. Redis down is `degraded`, not unready: deliveries are still
stored (a worker's sweeper queues them once Redis is back), so the process stays in rotation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import msgspec
from litestar import Request, Response, get

from marketplace.lib.db import ping_database
from marketplace.lib.deps import ArqDep, DatabaseDep
from marketplace.lib.observability import METRICS
from marketplace.lib.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, Problem, body_of
from marketplace.lib.queue import ping_redis

# What must answer for the process to be ready; any other check failing only degrades it.
REQUIRED = ("postgres",)


class Liveness(msgspec.Struct):
    status: str


class NotReady(Problem):
    """PostgreSQL did not answer (deliveries cannot be stored); `checks` says which, per dependency.

    A load balancer takes the process out of rotation; retry after `Retry-After` seconds.
    """

    status = 503
    slug = "not-ready"
    title = "Service unavailable"


@get(
    "/health/live",
    operation_id="healthLive",
    tags=["health"],
    summary="The process is up",
    description=(
        '200 `{"status": "ok"}` whenever the process answers HTTP. No dependency is checked (that is '
        "`/health/ready`), so a liveness probe never restarts the process because PostgreSQL or Redis is down."
    ),
)
async def live() -> Liveness:
    return Liveness(status="ok")


async def _check(probe: Awaitable[None]) -> str:
    try:
        await probe
    except Exception as exc:  # the reason's type only: a message may carry a DSN or a host
        return f"failed: {type(exc).__name__}"
    return "ok"


@get(
    "/health/ready",
    operation_id="healthReady",
    tags=["health"],
    summary="Can take webhook deliveries: PostgreSQL answers (Redis down is only degraded)",
    description=(
        '200 `{"status": "ok"}` when PostgreSQL and Redis answer; 200 `{"status": "degraded"}` when '
        "only Redis does not (deliveries are still stored, and queued once Redis is back); 503 `not-ready` "
        "with `Retry-After` when PostgreSQL does not. `checks` says `ok` or `failed: <reason>` per "
        "dependency. Each probe gives up after 2 seconds; they run concurrently."
    ),
    raises=[NotReady],
)
async def ready(request: Request[Any, Any, Any], db: DatabaseDep, arq: ArqDep) -> Response[dict[str, Any]]:
    # The shared pool reaches the same PostgreSQL, with the same DSN, as the ingest path's own pool.
    postgres, redis = await asyncio.gather(_check(ping_database(db)), _check(ping_redis(arq)))
    checks = {"postgres": postgres, "redis": redis}
    failed = [name for name in REQUIRED if checks[name] != "ok"]
    if failed:
        problem = NotReady(
            f"Not ready: {', '.join(failed)} did not answer.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            checks=checks,
        )
        return Response(
            body_of(problem, request.url.path), status_code=503, media_type=PROBLEM_JSON, headers=problem.headers
        )
    status = "ok" if all(result == "ok" for result in checks.values()) else "degraded"
    return Response({"status": status, "checks": checks}, status_code=200)


@get(
    "/metrics",
    operation_id="metrics",
    tags=["health"],
    summary="Prometheus metrics",
    description=(
        "Prometheus text format: this process's series, the counters every process (workers included) "
        "shares through Redis, and the event-store and outbox gauges, refreshed at each scrape."
    ),
    media_type="text/plain",
)
async def metrics(arq: ArqDep) -> str:
    # This process's series, plus the counters every process (workers included) shares through Redis.
    return await METRICS.collect(redis=arq)
