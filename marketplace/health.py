"""Liveness and readiness: ready means PostgreSQL and Redis both answer, and says which did not."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from marketplace.db import ping_database
from marketplace.deps import ArqDep, DatabaseDep
from marketplace.observability import METRICS
from marketplace.problems import PROBLEM_JSON, Problem, body_of
from marketplace.queue import ping_redis


class Liveness(msgspec.Struct):
    status: str


class NotReady(Problem):
    """PostgreSQL or Redis did not answer; `checks` says which (`ok` or `failed: <reason>` each)."""

    status = 503
    slug = "not-ready"
    title = "Service unavailable"


@get("/health/live", operation_id="healthLive", tags=["health"], summary="The process is up")
async def live() -> Liveness:
    return Liveness(status="ok")


@get(
    "/health/ready",
    operation_id="healthReady",
    tags=["health"],
    summary="PostgreSQL and Redis answer",
    raises=[NotReady],
)
async def ready(request: Request[Any, Any, Any], db: DatabaseDep, arq: ArqDep) -> Response[dict[str, Any]]:
    checks: dict[str, str] = {}
    for name, probe in (("postgres", ping_database(db)), ("redis", ping_redis(arq))):
        try:
            await probe
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failed: {type(exc).__name__}"
    failed = sorted(name for name, status in checks.items() if status != "ok")
    if not failed:
        return Response({"status": "ok", "checks": checks}, status_code=200)
    problem = NotReady(f"Not ready: {', '.join(failed)} did not answer.", checks=checks)
    return Response(body_of(problem, request.url.path), status_code=503, media_type=PROBLEM_JSON)


@get("/metrics", operation_id="metrics", tags=["health"], summary="Prometheus metrics", media_type="text/plain")
async def metrics(arq: ArqDep) -> str:
    # This process's series, plus the counters every process (workers included) shares through Redis.
    return await METRICS.collect(redis=arq)
