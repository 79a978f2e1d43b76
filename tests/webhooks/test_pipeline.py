"""From delivery to handler: exactly-once effects under storms, outages, dead workers and failures."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.webhooks.conftest import count_events, make_event, post_event, stored
from webhooks import store
from webhooks.queueing import enqueuer_for
from webhooks.worker import process_event, queue_due

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_events")]


async def test_stored_event_is_processed_by_the_worker(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    event = make_event(obj={"id": "obj_worker_1"})
    assert (await post_event(wh_client, event)).status_code == 200
    await run_worker()
    assert recorder.calls[event["id"]] == 1
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "processed"
    assert row["attempts"] == 1
    assert row["processed_at"] is not None


async def test_storm_of_copies_is_stored_once_and_processed_once(
    wh_client: Any, wh_app: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    event = make_event()
    responses = await asyncio.gather(*(post_event(wh_client, event) for _ in range(20)))
    assert all(r.status_code == 200 for r in responses)
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["duplicate"] * 19 + ["stored"]
    assert await count_events() == 1
    await enqueuer_for(wh_app.state.arq).flush()
    assert await redis_pool.zcard("arq:queue") == 1
    await run_worker()
    assert recorder.calls[event["id"]] == 1
    # A late copy after processing changes nothing either.
    late = await post_event(wh_client, event)
    assert late.json()["outcome"] == "duplicate"
    await run_worker()
    assert recorder.calls[event["id"]] == 1


async def test_unknown_type_is_marked_ignored(wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any) -> None:
    event = make_event("test.nobody_handles_this")
    await post_event(wh_client, event)
    await run_worker()
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "ignored"
    assert row["last_error"] == "no handler for this event type"


async def test_misrouted_event_is_handled_by_its_account(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    # A connected account's event that reached the platform endpoint still reaches its Connect handler…
    misrouted = make_event("test.connect_only", account="acct_lost")
    # …while a platform event of a Connect-only type is not one that handler expects.
    platform_only = make_event("test.connect_only")
    await post_event(wh_client, misrouted, endpoint="platform")
    await post_event(wh_client, platform_only, endpoint="platform")
    await run_worker()
    assert recorder.calls[misrouted["id"]] == 1
    assert (await stored(misrouted["id"]) or {})["status"] == "processed"
    assert recorder.calls[platform_only["id"]] == 0
    row = await stored(platform_only["id"])
    assert row is not None
    assert row["status"] == "ignored"
    assert "not expected on the platform endpoint" in row["last_error"]


async def test_redis_down_loses_nothing_once_it_is_back(
    wh_client: Any, wh_app: Any, private_redis: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    private_redis.stop()
    events = [make_event() for _ in range(5)]
    try:
        responses = [await post_event(wh_client, e) for e in events]
        assert [r.status_code for r in responses] == [200] * 5
        for event in events:
            assert (await stored(event["id"]) or {})["status"] == "pending"
        await enqueuer_for(wh_app.state.arq).flush()  # its attempt to queue them fails while Redis is down
    finally:
        private_redis.start()  # a fresh, empty Redis: whatever was queued before is gone too
    counts = await queue_due(redis_pool, pending_grace=timedelta(0))
    assert counts["pending"] == 5
    await run_worker()
    assert {e["id"]: recorder.calls[e["id"]] for e in events} == {e["id"]: 1 for e in events}


async def test_worker_killed_mid_event_is_reclaimed_and_processed_once(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any, worker_ctx: dict[str, Any]
) -> None:
    event = make_event("test.slow")
    await post_event(wh_client, event)
    recorder.block = asyncio.Event()
    doomed = asyncio.create_task(process_event(worker_ctx, event["id"]))
    await asyncio.wait_for(recorder.started.wait(), 5)
    doomed.cancel()  # the worker dies inside the handler, before the side effect
    with pytest.raises(asyncio.CancelledError):
        await doomed
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "processing"

    # While the lease runs, nobody else may take the event.
    assert (await queue_due(redis_pool, pending_grace=timedelta(0)))["processing"] == 0
    assert await process_event(worker_ctx, event["id"]) == "skipped"

    async with store.connection() as conn:  # the lease runs out
        await conn.execute(
            "UPDATE stripe_events SET lease_until = now() - interval '1 second' WHERE id = $1", event["id"]
        )
    recorder.block.set()
    assert (await queue_due(redis_pool, pending_grace=timedelta(0)))["processing"] == 1
    await run_worker()
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "processed"
    assert row["attempts"] == 2
    assert recorder.calls[event["id"]] == 2  # entered twice, finished once
    assert recorder.objects[event["data"]["object"]["id"]] == 0  # test.slow has no object side effect


async def test_two_workers_never_run_one_event(
    wh_client: Any, redis_pool: Any, recorder: Any, worker_ctx: dict[str, Any]
) -> None:
    event = make_event("test.slow")
    await post_event(wh_client, event)
    recorder.block = asyncio.Event()
    first = asyncio.create_task(process_event(worker_ctx, event["id"]))
    await asyncio.wait_for(recorder.started.wait(), 5)
    second = await process_event(worker_ctx, event["id"])
    recorder.block.set()
    assert second == "skipped"
    assert await first == "processed"
    assert recorder.calls[event["id"]] == 1


async def test_failing_handler_is_retried_then_dead_and_replay_brings_it_back(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any, wh_settings: Any, admin_headers: Any
) -> None:
    event = make_event("test.always_fails")
    await post_event(wh_client, event)
    await run_worker()  # retries are deferred by ~50 ms each in tests; the burst worker waits for them
    assert recorder.calls[event["id"]] == wh_settings.event_max_attempts
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "dead"
    assert row["attempts"] == wh_settings.event_max_attempts
    assert row["last_error"] == "RuntimeError: boom: the handler failed"

    metrics = (await wh_client.get("/metrics")).text
    assert "webhook_events_dead 1" in metrics

    recorder.heal = True
    response = await wh_client.post(f"/admin/events/{event['id']}/replay", headers=admin_headers)
    assert response.status_code == 202
    assert response.json() == {"replayed": [event["id"]], "queued": 1}
    await run_worker()
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "processed"
    assert recorder.calls[event["id"]] == wh_settings.event_max_attempts + 1


async def test_replay_many_by_status(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any, admin_headers: Any
) -> None:
    failing = [make_event("test.always_fails") for _ in range(3)]
    fine = make_event()
    for event in [*failing, fine]:
        await post_event(wh_client, event)
    await run_worker()
    recorder.heal = True
    response = await wh_client.post(
        "/admin/events/replay", json={"status": "dead", "type": "test.always_fails"}, headers=admin_headers
    )
    assert response.status_code == 202
    assert sorted(response.json()["replayed"]) == sorted(e["id"] for e in failing)
    await run_worker()
    for event in failing:
        assert (await stored(event["id"]) or {})["status"] == "processed"
    assert recorder.calls[fine["id"]] == 1


async def test_cli_replay_of_dead_events(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any, wh_settings: Any
) -> None:
    import os
    import subprocess
    import sys

    event = make_event("test.always_fails")
    await post_event(wh_client, event)
    await run_worker()
    assert (await stored(event["id"]) or {})["status"] == "dead"
    recorder.heal = True
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": wh_settings.database_url.reveal(),
        "REDIS_URL": wh_settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_cli_replay",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "marketplace.cli", "events", "replay", "--dead", "--type", "test.always_fails"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert event["id"] in done.stdout
    await run_worker()
    assert (await stored(event["id"]) or {})["status"] == "processed"
