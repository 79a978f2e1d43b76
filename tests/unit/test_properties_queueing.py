"""Properties of the queueing rules: arq job ids of event attempts, and the retry backoff."""

from __future__ import annotations

import random
import string
from contextlib import AbstractContextManager
from datetime import timedelta
from unittest import mock

from arq.constants import job_key_prefix
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketplace.lib.durable.queue import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, backoff
from webhooks.queueing import job_id_for

PROPERTY = settings(max_examples=200, deadline=None, database=None)

# Stripe event ids: "evt_" and base62 (the only ids that can be signed with our endpoint secrets).
event_ids = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40).map(lambda s: "evt_" + s)
attempt_counts = st.integers(min_value=0, max_value=10**6)

# ---- job ids ---------------------------------------------------------------------------------------------


def attempt_of(job_id: str) -> tuple[str, int]:
    """The (event id, attempts) a job id names, read the way the module docstring writes it."""
    event_id, sep, attempts = job_id.rpartition(":")
    return (event_id, int(attempts)) if sep else (job_id, 0)


@PROPERTY
@given(event_id=event_ids, attempts=attempt_counts)
def test_a_job_id_is_deterministic_and_names_its_event_and_attempt(event_id: str, attempts: int) -> None:
    job_id = job_id_for(event_id, attempts)
    assert job_id == job_id_for(event_id, attempts)
    assert attempt_of(job_id) == (event_id, attempts)  # so distinct attempts never share an id


NEIGHBOURS = ["evt_1", "evt_11", "evt_1a", "evt_A", "evt_a"]  # prefixes of each other, a case apart


@PROPERTY
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(NEIGHBOURS), st.integers(min_value=0, max_value=12)),
        min_size=2,
        max_size=40,
        unique=True,
    )
)
def test_distinct_attempts_have_distinct_job_ids(pairs: list[tuple[str, int]]) -> None:
    """Among near neighbours too: an id that prefixes another, attempts of one or two digits."""
    assert len({job_id_for(*pair) for pair in pairs}) == len(pairs)


@PROPERTY
@given(event_id=event_ids, attempts=st.lists(attempt_counts, min_size=2, max_size=20, unique=True))
def test_every_attempt_of_one_event_gets_its_own_id(event_id: str, attempts: list[int]) -> None:
    """A retry is never refused by arq because the job of an earlier attempt still holds its id."""
    assert len({job_id_for(event_id, a) for a in attempts}) == len(attempts)


@PROPERTY
@given(event_id=event_ids)
def test_the_first_attempt_is_queued_under_the_event_id_itself(event_id: str) -> None:
    """The batch enqueuer writes `job_key_prefix + event_id`; the sweeper checks `job_id_for(id, 0)`: one key."""
    assert job_key_prefix + job_id_for(event_id, 0) == job_key_prefix + event_id


@PROPERTY
@given(event_id=event_ids, attempts=attempt_counts)
def test_a_job_id_is_a_plain_redis_key(event_id: str, attempts: int) -> None:
    job_id = job_id_for(event_id, attempts)
    assert job_id.isascii()
    assert job_id.isprintable()
    assert not any(c.isspace() for c in job_id)
    assert job_id.startswith(event_id)
    assert len(job_id) <= len(event_id) + 1 + len(str(attempts))


# ---- backoff ---------------------------------------------------------------------------------------------

JITTER = (0.8, 1.2)
MICROSECOND = 1e-6  # timedelta's resolution
# A float overflows at 2**1024: see test_the_backoff_is_capped_for_any_number_of_attempts for beyond.
attempts_in_range = st.integers(min_value=0, max_value=1023)
bases = st.floats(min_value=0, max_value=86400)
caps = st.floats(min_value=0, max_value=7 * 86400)
# Where in its range the random draw falls (0: the lowest value it can return, 1: the highest).
draws = st.floats(min_value=0, max_value=1)


class FixedDraw(random.Random):
    """`random` whose every draw lands at `at` of its range (uniform(a, b) = a + (b - a)·at).

    Hypothesis reseeds the global `random` identically for every example, so the real jitter would be
    one and the same value throughout a test: the draw is chosen by Hypothesis instead.
    """

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at

    def random(self) -> float:
        return self.at


def jitter_drawn_at(at: float) -> AbstractContextManager[object]:
    return mock.patch("marketplace.lib.durable.queue.random", FixedDraw(at))


def nominal(attempts: int, base: float, cap: float) -> float:
    """The documented delay before jitter: base·2^(n-1), capped (n = 0 waits like n = 1)."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


@PROPERTY
@given(attempts=attempts_in_range, base=bases, cap=caps, at=draws)
def test_the_backoff_is_the_capped_doubling_within_its_jitter(
    attempts: int, base: float, cap: float, at: float
) -> None:
    with jitter_drawn_at(at):
        delay = backoff(attempts, base=base, cap=cap).total_seconds()
    expected = nominal(attempts, base, cap)
    assert delay >= 0
    assert expected * JITTER[0] - MICROSECOND <= delay <= expected * JITTER[1] + MICROSECOND
    assert delay <= cap * JITTER[1] + MICROSECOND


@PROPERTY
@given(attempts=attempts_in_range, at=draws)
def test_the_default_backoff_starts_at_the_base_and_stops_at_the_cap(attempts: int, at: float) -> None:
    with jitter_drawn_at(at):
        delay = backoff(attempts).total_seconds()
    assert BACKOFF_BASE_SECONDS * JITTER[0] - MICROSECOND <= delay <= BACKOFF_CAP_SECONDS * JITTER[1] + MICROSECOND


@PROPERTY
@given(attempts=st.integers(min_value=0, max_value=1), base=bases, at=draws)
def test_the_first_retry_waits_the_base(attempts: int, base: float, at: float) -> None:
    """A replayed event (0 attempts) or the first retry waits base, whatever the base (below the cap)."""
    with jitter_drawn_at(at):
        delay = backoff(attempts, base=base, cap=base + 1).total_seconds()
    assert base * JITTER[0] - MICROSECOND <= delay <= base * JITTER[1] + MICROSECOND


@PROPERTY
@given(attempts=attempts_in_range, base=bases, cap=caps, at=draws)
def test_for_one_jitter_the_backoff_never_shrinks_with_more_attempts(
    attempts: int, base: float, cap: float, at: float
) -> None:
    with jitter_drawn_at(at):
        now = backoff(attempts, base=base, cap=cap)
        later = backoff(attempts + 1, base=base, cap=cap)
    assert timedelta(0) <= now <= later


@PROPERTY
@given(attempts=attempts_in_range, base=st.floats(min_value=0.001, max_value=3600), cap=caps, at=draws)
def test_the_delay_scales_with_the_base_until_the_cap(attempts: int, base: float, cap: float, at: float) -> None:
    """Doubling the base doubles the delay as long as neither is capped."""
    with jitter_drawn_at(at):
        single = backoff(attempts, base=base, cap=cap).total_seconds()
        double = backoff(attempts, base=2 * base, cap=cap).total_seconds()
    if nominal(attempts, 2 * base, cap) < cap:
        assert abs(double - 2 * single) <= 2 * MICROSECOND
    else:
        assert single <= double <= cap * JITTER[1] + MICROSECOND


@PROPERTY
@example(attempts=1025, at=0.5)
@given(attempts=st.integers(min_value=0, max_value=10**6), at=draws)
def test_the_backoff_is_capped_for_any_number_of_attempts(attempts: int, at: float) -> None:
    """EVENT_MAX_ATTEMPTS has no upper bound in settings, so any count of failed attempts may reach here."""
    with jitter_drawn_at(at):
        delay = backoff(attempts).total_seconds()
    assert 0 <= delay <= BACKOFF_CAP_SECONDS * JITTER[1] + MICROSECOND
