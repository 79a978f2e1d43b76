"""From delivery to handler: exactly-once effects under storms, outages, dead workers and failures."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from marketplace.lib.durable.queue import backoff
from marketplace.lib.queue import arq_pool
from tests.support.metrics import metric_value
from tests.webhooks.conftest import WorkerProcesses, count_events, make_event, post_event, stored
from webhooks import store
from webhooks.queueing import enqueue_event, enqueuer_for
from webhooks.registry import handles, unregister
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


async def test_unknown_type_is_kept_as_unhandled_not_done(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    event = make_event("test.nobody_handles_this")
    await post_event(wh_client, event)
    await run_worker()
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "unhandled"
    assert row["last_error"] == "no handler for this event type in the worker that took it"
    assert row["attempts"] == 0  # meeting a worker without the handler is not an attempt
    assert row["processed_at"] is None


async def test_a_deliberately_ignored_type_is_finished_as_ignored(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    event = make_event("customer.created")
    await post_event(wh_client, event)
    await run_worker()
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "ignored"
    assert row["last_error"].startswith("deliberately ignored: ")


async def test_an_unhandled_event_is_processed_once_a_worker_with_its_handler_starts(
    wh_client: Any, redis_pool: Any, run_worker: Any, admin_headers: Any
) -> None:
    event = make_event("test.arrives_before_its_handler")
    await post_event(wh_client, event)
    await run_worker()
    assert (await stored(event["id"]) or {})["status"] == "unhandled"
    listed = await wh_client.get("/admin/events", params={"status": "unhandled"}, headers=admin_headers)
    assert [item["id"] for item in listed.json()["items"]] == [event["id"]]
    assert "webhook_events_unhandled 1" in (await wh_client.get("/metrics")).text

    seen: list[str] = []

    @handles("test.arrives_before_its_handler", endpoints={"platform"})
    async def late(ctx: Any, stored_event: Any) -> None:
        seen.append(stored_event.id)

    try:
        await run_worker()  # nothing is queued: its start-up re-offers the event to its own handler
    finally:
        unregister("test.arrives_before_its_handler")
    assert seen == [event["id"]]
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("processed", 1)


async def test_retention_never_deletes_an_unhandled_event(wh_client: Any, redis_pool: Any, run_worker: Any) -> None:
    unhandled, done = make_event("test.nobody_handles_this"), make_event("customer.created")
    for event in (unhandled, done):
        await post_event(wh_client, event)
    await run_worker()
    async with store.connection() as conn:
        await conn.execute("UPDATE stripe_events SET received_at = now() - interval '400 days'")
    assert await store.prune(30) == 1
    assert (await stored(unhandled["id"]) or {})["status"] == "unhandled"
    assert await stored(done["id"]) is None


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
    assert row["status"] == "unhandled"
    assert "not expected on the platform endpoint" in row["last_error"]


async def test_redis_down_loses_nothing_once_it_is_back(
    wh_client: Any, wh_app: Any, private_redis: Any, redis_pool: Any, recorder: Any, run_worker: Any, worker_ctx: Any
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
    counts = await queue_due({**worker_ctx, "redis": redis_pool}, pending_grace=timedelta(0))
    assert counts["pending"] == 5
    await run_worker()
    assert {e["id"]: recorder.calls[e["id"]] for e in events} == {e["id"]: 1 for e in events}


async def test_redis_losing_queued_jobs_loses_nothing(
    wh_client: Any, wh_app: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    events = [make_event() for _ in range(4)]
    for event in events:
        assert (await post_event(wh_client, event)).status_code == 200
    await enqueuer_for(wh_app.state.arq).flush()
    assert await redis_pool.zcard("arq:queue") == 4
    await redis_pool.flushdb()  # Redis restarts empty (or fails over to a replica that had not got them)
    async with store.connection() as conn:  # …and the sweeper's grace for never-queued events passes
        await conn.execute("UPDATE stripe_events SET next_attempt_at = now() - interval '6 seconds'")
    await run_worker()  # the production worker: its sweeper runs at start-up and re-queues them
    assert {e["id"]: recorder.calls[e["id"]] for e in events} == {e["id"]: 1 for e in events}
    for event in events:
        assert (await stored(event["id"]) or {})["status"] == "processed"


async def test_worker_killed_mid_event_is_reclaimed_and_processed_once(
    wh_client: Any, wh_app: Any, redis_pool: Any, worker_processes: WorkerProcesses, worker_ctx: dict[str, Any]
) -> None:
    """A real worker process hangs inside a handler and is killed (SIGKILL); once its lease expires,
    another worker's sweeper records the lost attempt as failed, retries it, and the handler's side
    effect happens exactly once."""
    event = make_event("test.hangs_once")
    obj = event["data"]["object"]["id"]
    await redis_pool.set(f"test:hang:{event['id']}", "1")
    # A short lease needs Stripe calls that fit under it (settings refuse the default 40 s budget).
    lease = {"EVENT_LEASE_SECONDS": "5", "STRIPE_TIMEOUT_SECONDS": "1", "STRIPE_MAX_NETWORK_RETRIES": "0"}
    doomed = worker_processes.start(**lease)
    assert (await post_event(wh_client, event)).status_code == 200

    async def wait_for(probe: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await probe():
            assert time.monotonic() < deadline, worker_processes.logs()
            await asyncio.sleep(0.05)

    await wait_for(lambda: redis_pool.exists(f"test:started:{event['id']}"), 30)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("processing", 1)

    worker_processes.start(**lease)

    async def processed() -> bool:
        return ((await stored(event["id"])) or {}).get("status") == "processed"

    await wait_for(processed, 40)  # lease (5 s) + the next sweep (every 10 s) + the backoff
    row = await stored(event["id"])
    assert row is not None
    assert row["attempts"] == 2
    assert await redis_pool.get(f"test:effects:{obj}") == b"1"  # the side effect happened once
    # arq re-runs the dead worker's job once its in-progress key expires: that run finds the work done.
    assert await process_event({**worker_ctx, "redis": redis_pool}, event["id"]) == "skipped"
    assert await redis_pool.get(f"test:effects:{obj}") == b"1"
    failed = 'webhook_events_processed_total{outcome="failed",type="test.hangs_once"}'
    processed = 'webhook_events_processed_total{outcome="processed",type="test.hangs_once"}'

    async def counted() -> bool:  # a running worker shares its counts within half a second
        metrics = (await wh_client.get("/metrics")).text
        return (metric_value(metrics, failed), metric_value(metrics, processed)) == (1, 1)

    await wait_for(counted, 30)


async def test_expired_lease_counts_as_a_failed_attempt_and_ends_dead(
    wh_client: Any, redis_pool: Any, recorder: Any, worker_ctx: dict[str, Any], wh_settings: Any
) -> None:
    """An event whose worker dies every time (a lease taken, never completed) is retried with backoff
    and parked dead after the maximum, with the reason, instead of being retaken forever."""
    event = make_event()
    await post_event(wh_client, event)
    ctx = {**worker_ctx, "redis": redis_pool}

    async def worker_takes_it_and_dies() -> None:
        assert await store.claim(event["id"], wh_settings.event_lease_seconds) is not None
        async with store.connection() as conn:  # …and its lease runs out
            await conn.execute(
                "UPDATE stripe_events SET lease_until = now() - interval '1 second' WHERE id = $1", event["id"]
            )

    async def make_due() -> None:
        async with store.connection() as conn:
            await conn.execute("UPDATE stripe_events SET next_attempt_at = now() WHERE id = $1", event["id"])

    await worker_takes_it_and_dies()
    # A job for the event (arq re-running the dead worker's job) finds the expired lease first.
    assert await process_event(ctx, event["id"]) == "lease_expired"
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"] == store.LEASE_EXPIRED_ERROR
    assert row["next_attempt_at"] > row["received_at"]
    assert await process_event(ctx, event["id"]) == "skipped"  # not due yet: the backoff holds

    for attempt in range(2, wh_settings.event_max_attempts + 1):
        await make_due()
        await worker_takes_it_and_dies()
        counts = await queue_due(ctx, pending_grace=timedelta(0))  # or the sweeper finds it first
        assert counts["processing"] == 1
        row = await stored(event["id"])
        assert row is not None
        assert row["attempts"] == attempt
        assert row["last_error"] == store.LEASE_EXPIRED_ERROR
    assert row["status"] == "dead"
    assert row["next_attempt_at"] is None
    assert recorder.calls[event["id"]] == 0
    await make_due()
    assert await process_event(ctx, event["id"]) == "skipped"  # dead stays dead until replayed


async def test_failed_event_is_not_claimed_before_its_retry_is_due(
    wh_client: Any, redis_pool: Any, recorder: Any, worker_ctx: dict[str, Any]
) -> None:
    event = make_event("test.always_fails")
    await post_event(wh_client, event)
    ctx = {**worker_ctx, "webhook_backoff_base": 10.0}
    before = datetime.now(UTC)
    assert await process_event(ctx, event["id"]) == "failed"
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("failed", 1)
    delay = (row["next_attempt_at"] - before).total_seconds()
    assert 8 - 1 <= delay <= 12 + 1  # the first retry: base · 2^0 ± 20 %

    # A stray or duplicate job before then changes nothing.
    assert await process_event(ctx, event["id"]) == "skipped"
    row = await stored(event["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert recorder.calls[event["id"]] == 1

    async with store.connection() as conn:
        await conn.execute("UPDATE stripe_events SET next_attempt_at = now() WHERE id = $1", event["id"])
    assert await process_event(ctx, event["id"]) == "failed"  # due now: the second attempt runs
    row = await stored(event["id"])
    assert row is not None
    assert row["attempts"] == 2
    delay = (row["next_attempt_at"] - datetime.now(UTC)).total_seconds()
    assert 16 - 1 <= delay <= 24 + 1  # base · 2^1 ± 20 %


def test_backoff_doubles_from_the_base_with_jitter_and_is_capped() -> None:
    for attempts, nominal in [(1, 30), (2, 60), (3, 120), (4, 240), (8, 3600), (20, 3600)]:
        delays = [backoff(attempts).total_seconds() for _ in range(200)]
        assert all(nominal * 0.8 <= d <= nominal * 1.2 for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) - min(delays) > nominal * 0.1  # jittered, so retries of many events spread out
    assert backoff(0).total_seconds() <= 36  # a replayed event (0 attempts) waits like a first retry


async def test_two_workers_never_run_one_event(
    wh_client: Any, redis_pool: Any, recorder: Any, worker_ctx: dict[str, Any]
) -> None:
    event = make_event("test.slow")
    await post_event(wh_client, event)
    recorder.block = asyncio.Event()
    first = asyncio.create_task(process_event(worker_ctx, event["id"]))
    await asyncio.wait_for(recorder.started.wait(), 30)
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


def _cli(wh_settings: Any, *args: str) -> Any:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": wh_settings.database_url.reveal(),
        "REDIS_URL": wh_settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_cli_replay",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "marketplace.server.cli", "events", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_replay_of_dead_events(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any, wh_settings: Any
) -> None:
    event = make_event("test.always_fails")
    await post_event(wh_client, event)
    await run_worker()
    assert (await stored(event["id"]) or {})["status"] == "dead"
    recorder.heal = True
    done = _cli(wh_settings, "--dead", "--type", "test.always_fails")
    assert done.returncode == 0, done.stderr
    assert event["id"] in done.stdout
    await run_worker()
    assert (await stored(event["id"]) or {})["status"] == "processed"


async def test_cli_replay_of_one_event_and_of_failed_events(
    wh_client: Any, wh_app: Any, redis_pool: Any, recorder: Any, run_worker: Any, wh_settings: Any, worker_ctx: Any
) -> None:
    done_once, failing = make_event(), make_event("test.always_fails")
    await post_event(wh_client, done_once)
    await run_worker()
    assert (await stored(done_once["id"]) or {})["status"] == "processed"
    await post_event(wh_client, failing)
    await enqueuer_for(wh_app.state.arq).flush()
    assert await process_event({**worker_ctx, "webhook_backoff_base": 60.0}, failing["id"]) == "failed"
    assert (await stored(failing["id"]) or {})["status"] == "failed"  # its retry is a minute away

    one = _cli(wh_settings, done_once["id"])  # a processed event, run again on demand
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == [done_once["id"]]
    recorder.heal = True
    failed = _cli(wh_settings, "--failed")  # the retry now, not in a minute
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.split() == [failing["id"]]
    row = await stored(failing["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 0)
    await run_worker()
    assert recorder.calls[done_once["id"]] == 2
    assert (await stored(failing["id"]) or {})["status"] == "processed"

    missing = _cli(wh_settings, "evt_not_stored")
    assert missing.returncode == 1
    assert "no stored event evt_not_stored" in missing.stderr


async def test_bulk_replay_of_ignored_events_leaves_the_other_livemode_alone(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any, admin_headers: Any
) -> None:
    unknown = make_event("customer.created")  # deliberately ignored
    other_mode = make_event("test.recorded", livemode=True)  # the suite runs with a test-mode key
    for event in (unknown, other_mode):
        await post_event(wh_client, event)
    await run_worker()
    assert (await stored(other_mode["id"]) or {})["status"] == "ignored"
    response = await wh_client.post("/admin/events/replay", json={"status": "ignored"}, headers=admin_headers)
    assert response.status_code == 202
    assert response.json()["replayed"] == [unknown["id"]]
    one = await wh_client.post(f"/admin/events/{other_mode['id']}/replay", headers=admin_headers)
    assert one.status_code == 409
    assert "livemode" in one.json()["detail"]
    await run_worker()
    assert recorder.calls[other_mode["id"]] == 0
    row = await stored(other_mode["id"])
    assert row is not None
    assert (row["status"], row["attempts"]) == ("ignored", 0)


async def test_worker_refuses_an_event_of_the_other_livemode(
    wh_client: Any, redis_pool: Any, recorder: Any, run_worker: Any
) -> None:
    event = make_event("test.recorded", livemode=True)
    await post_event(wh_client, event)
    async with store.connection() as conn:  # however it got there (an older replay, a manual fix)
        await conn.execute("UPDATE stripe_events SET status = 'pending' WHERE id = $1", event["id"])
    await enqueue_event(redis_pool, event["id"], attempts=0)
    await run_worker()
    assert recorder.calls[event["id"]] == 0
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "ignored"
    assert "livemode" in row["last_error"]


async def test_last_error_is_redacted_like_a_log_line(
    wh_client: Any, redis_pool: Any, run_worker: Any, wh_settings: Any, admin_headers: Any
) -> None:
    key = wh_settings.stripe_secret_key.reveal()

    @handles("test.leaks_a_secret", endpoints={"platform"})
    async def leaks(ctx: Any, event: Any) -> None:
        raise RuntimeError(f"request failed with api_key={key} and secret whsec_abcdefABCDEF0123 for acct_1")

    try:
        event = make_event("test.leaks_a_secret")
        await post_event(wh_client, event)
        await run_worker()
    finally:
        unregister("test.leaks_a_secret")
    row = await stored(event["id"])
    assert row is not None
    assert row["status"] == "dead"
    assert row["last_error"].startswith("RuntimeError: request failed with api_key=")
    assert key not in row["last_error"]
    assert "whsec_abcdef" not in row["last_error"]
    assert "acct_1" in row["last_error"]  # ids are not secrets: an operator needs them
    listed = await wh_client.get("/admin/events", params={"status": "dead"}, headers=admin_headers)
    assert listed.json()["items"][0]["last_error"] == row["last_error"]


async def test_worker_outcomes_by_type_and_lag_show_on_the_api_metrics(
    wh_client: Any, wh_app: Any, redis_pool: Any, worker_processes: WorkerProcesses
) -> None:
    """The worker runs in a process of its own (as in production); the API's /metrics shows its counts."""
    counted = [make_event("test.counted") for _ in range(2)]
    failing = make_event("test.always_fails")
    unknown = make_event("test.nobody_handles_this")
    for event in [*counted, failing, unknown]:
        assert (await post_event(wh_client, event)).status_code == 200
    await enqueuer_for(wh_app.state.arq).flush()
    worker = worker_processes.start("--burst")
    await asyncio.to_thread(worker.wait, 60)
    assert worker.returncode == 0, worker_processes.logs()

    metrics = (await wh_client.get("/metrics")).text
    processed = "webhook_events_processed_total"
    assert f"# TYPE {processed} counter" in metrics
    assert f"# HELP {processed} " in metrics
    assert metric_value(metrics, processed + '{outcome="processed",type="test.counted"}') == 2
    assert metric_value(metrics, processed + '{outcome="failed",type="test.always_fails"}') == 2
    assert metric_value(metrics, processed + '{outcome="dead",type="test.always_fails"}') == 1
    assert metric_value(metrics, processed + '{outcome="unhandled",type="test.nobody_handles_this"}') == 1
    assert "# TYPE webhook_processing_lag_seconds_sum counter" in metrics
    assert metric_value(metrics, "webhook_processing_lag_seconds_count") == 2
    lag = metric_value(metrics, "webhook_processing_lag_seconds_sum")
    assert lag is not None
    assert 0 < lag < 120
    assert metric_value(metrics, "metrics_shared_counters_available") == 1


async def test_metrics_report_when_redis_cannot_give_the_worker_counts(
    wh_client: Any, private_redis: Any, redis_pool: Any
) -> None:
    private_redis.stop()
    try:
        response = await wh_client.get("/metrics")
    finally:
        private_redis.start()
    assert response.status_code == 200  # the rest of the page is still served…
    assert metric_value(response.text, "metrics_shared_counters_available") == 0  # …and says what is missing
    assert metric_value(response.text, "webhook_events_dead") == 0


async def test_worker_counts_refused_by_redis_are_added_once_it_answers(
    wh_client: Any, private_redis: Any, redis_pool: Any
) -> None:
    """A worker's counts gathered while Redis is down are kept and shared with the next flush."""
    from webhooks.metrics import count_outcome, flush_counts

    series = 'webhook_events_processed_total{outcome="processed",type="test.redis_outage"}'
    private_redis.stop()
    try:
        count_outcome(redis_pool, "test.redis_outage", "processed", lag_seconds=0.5)
        count_outcome(redis_pool, "test.redis_outage", "processed", lag_seconds=0.5)
        await flush_counts()  # Redis refuses: logged, and the counts stay gathered
    finally:
        private_redis.start()
    await flush_counts()
    assert metric_value((await wh_client.get("/metrics")).text, series) == 2


async def test_a_full_batch_of_worker_counts_is_shared_without_waiting_out_the_delay(
    wh_client: Any, redis_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUSH_AT counts are shared at once, not after the flush delay (made 60 s here)."""
    from marketplace.lib import observability
    from webhooks import metrics

    monkeypatch.setattr(observability, "FLUSH_DELAY_SECONDS", 60.0)
    series = 'webhook_events_processed_total{outcome="processed",type="test.full_batch"}'
    for _ in range(observability.FLUSH_AT):
        metrics.count_outcome(redis_pool, "test.full_batch", "processed")
    deadline = time.monotonic() + 30
    while metric_value((await wh_client.get("/metrics")).text, series) != observability.FLUSH_AT:
        assert time.monotonic() < deadline, "the full batch was not shared"
        await asyncio.sleep(0.05)


def test_build_worker_runs_the_pipeline_crons_with_timeouts_from_the_lease(wh_settings: Any) -> None:
    from dataclasses import replace

    from marketplace.server.worker import build_worker

    worker = build_worker(wh_settings, redis_pool=arq_pool(wh_settings.redis_url.reveal()))
    crons = {c.name: c for c in worker.cron_jobs}
    assert {"webhooks_sweep", "webhooks_prune"} <= set(crons)
    assert crons["webhooks_sweep"].run_at_startup
    assert crons["webhooks_sweep"].unique
    assert crons["webhooks_sweep"].second == set(range(0, 60, 10))
    assert crons["webhooks_prune"].unique
    assert worker.keep_result_s == 0
    process = worker.functions["process_event"]
    assert process.keep_result_s == 0
    assert process.timeout_s is not None
    assert process.timeout_s > wh_settings.event_lease_seconds  # arq never cancels a job holding its lease

    long_lease = replace(wh_settings, event_lease_seconds=600)
    assert build_worker(long_lease).functions["process_event"].timeout_s > 600
    with pytest.raises(ValueError, match="EVENT_LEASE_SECONDS"):
        build_worker(long_lease, job_timeout=120)


async def test_a_rolling_deploy_loses_no_event_an_old_worker_cannot_handle(
    wh_client: Any, wh_app: Any, redis_pool: Any, worker_processes: WorkerProcesses
) -> None:
    """An old worker (no checkout.session.completed handler) runs beside a new one that has it: every
    such event ends processed by the new one, exactly once, whichever worker took it first."""
    old = worker_processes.start("--without", "checkout.session.completed")
    events = [
        make_event("checkout.session.completed", obj={"id": f"cs_test_rolling_{i}", "object": "checkout.session"})
        for i in range(12)
    ]
    for event in events[:6]:  # only the old worker runs: it parks them all
        assert (await post_event(wh_client, event)).status_code == 200
    await enqueuer_for(wh_app.state.arq).flush()
    await _wait_for(lambda: _statuses(events[:6]), {"unhandled"}, worker_processes)

    new = worker_processes.start("--counted-as", "checkout.session.completed")
    for event in events[6:]:  # both run: either may take each of these
        assert (await post_event(wh_client, event)).status_code == 200
    await enqueuer_for(wh_app.state.arq).flush()
    await _wait_for(lambda: _statuses(events), {"processed"}, worker_processes, timeout=60)
    assert old.poll() is None, worker_processes.logs()
    assert new.poll() is None, worker_processes.logs()
    effects = [await redis_pool.get(f"test:effects:{e['data']['object']['id']}") for e in events]
    assert effects == [b"1"] * len(events)


async def _statuses(events: list[dict[str, Any]]) -> set[str]:
    return {(await stored(e["id"]) or {}).get("status", "missing") for e in events}


async def _wait_for(read: Any, want: set[str], workers: WorkerProcesses, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await read()) != want:
        assert time.monotonic() < deadline, f"statuses {seen}, wanted {want}\n{workers.logs()}"
        await asyncio.sleep(0.2)
