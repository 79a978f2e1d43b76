"""A real worker process for the pipeline tests: the production `build_worker`, plus test handlers.

Run as `python -m tests.webhooks.worker_process [--burst]` with the settings in the environment
(`WEBHOOK_TEST_BACKOFF_BASE` seconds replaces the 30 s backoff base, so retries are fast). The
handlers keep their side effects in Redis, where the test process reads them:

* `test.counted`: INCR `test:effects:{data.object.id}`.
* `test.hangs_once`: when the key `test:hang:{event id}` is set, it deletes it, sets
  `test:started:{event id}` and hangs the whole process (`time.sleep`, which no asyncio timeout
  interrupts) until the test kills it; otherwise it behaves like `test.counted`.
* `test.always_fails`: raises.

Deploys of different code are emulated with the registry, the one thing that differs between them:
`--without TYPE` runs the worker without the handler of TYPE (an older deploy), and
`--counted-as TYPE` makes TYPE's handler the `test.counted` one (a newer deploy that handles it; its
effect visible in Redis). Both may be repeated.
"""

from __future__ import annotations

import os
import sys
import time

from marketplace.lib.settings import load_settings
from marketplace.server.worker import build_worker
from webhooks.registry import HandlerContext, StoredEvent, handler_for, handles, unregister


@handles("test.counted", endpoints={"platform", "connect"})
async def counted(ctx: HandlerContext, event: StoredEvent) -> None:
    assert ctx.arq is not None
    await ctx.arq.incr(f"test:effects:{event.data_object['id']}")


@handles("test.hangs_once", endpoints={"platform", "connect"})
async def hangs_once(ctx: HandlerContext, event: StoredEvent) -> None:
    assert ctx.arq is not None
    if await ctx.arq.delete(f"test:hang:{event.id}"):
        await ctx.arq.set(f"test:started:{event.id}", str(os.getpid()))
        time.sleep(3600)  # a hung worker: its event loop is blocked, nothing runs until it is killed
    await ctx.arq.incr(f"test:effects:{event.data_object['id']}")


@handles("test.always_fails", endpoints={"platform", "connect"})
async def always_fails(ctx: HandlerContext, event: StoredEvent) -> None:
    raise RuntimeError("boom: the handler failed")


def _option_values(name: str) -> list[str]:
    args = sys.argv[1:]
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]


def main() -> None:
    for event_type in _option_values("--without") + _option_values("--counted-as"):
        handler_for(event_type)  # load the real handler modules first, then replace what differs
        unregister(event_type)
    for event_type in _option_values("--counted-as"):
        handles(event_type, endpoints={"platform", "connect"})(counted)
    ctx = {
        "webhook_backoff_base": float(os.environ.get("WEBHOOK_TEST_BACKOFF_BASE", "0.05")),
        "webhook_reoffer_seconds": float(os.environ.get("WEBHOOK_TEST_REOFFER_SECONDS", "1")),
    }
    build_worker(load_settings(), burst="--burst" in sys.argv, ctx=ctx).run()


if __name__ == "__main__":
    main()
