"""The time budgets of leased work, in one place (docs/architecture.md, "Budgets").

    one Stripe call (every attempt timing out, plus the SDK's sleeps between them)
    < the work's timeout (the lease minus LEASE_MARGIN_SECONDS, or a fifth of a shorter lease)
    < the lease
    < arq's job timeout (the lease plus JOB_TIMEOUT_SLACK_SECONDS), where an arq job holds the lease

So a slow Stripe makes a call fail (and the work retry) before the work is cut; a cut attempt's
failure is recorded before its lease could be taken over; arq never kills a job that still holds a
lease. Pure arithmetic: `marketplace.lib.settings` checks it at start, the queues' holders use it.
"""

from __future__ import annotations

LEASE_MARGIN_SECONDS = 5.0  # work is cut at least this long before its lease expires: time to record it
JOB_TIMEOUT_SLACK_SECONDS = 10  # arq's timeout of a job holding a lease: the lease plus this


def work_timeout(lease_seconds: float) -> float:
    """How long one attempt may run under a lease of `lease_seconds`: the lease minus the margin
    (a fifth of a lease shorter than 5 margins), so its outcome is recorded while the lease holds."""
    lease = float(lease_seconds)
    return lease - min(LEASE_MARGIN_SECONDS, lease / 5)


def lease_for(timeout_seconds: float, *, at_least: float) -> float:
    """A lease long enough for work cut after `timeout_seconds` (two margins more), and `at_least` that."""
    return max(at_least, timeout_seconds + 2 * LEASE_MARGIN_SECONDS)


def job_timeout(lease_seconds: int) -> int:
    """arq's timeout for a job that holds a lease: longer than the lease, so arq never cuts it first."""
    return lease_seconds + JOB_TIMEOUT_SLACK_SECONDS


def lease_problem(timeout_seconds: float, lease_seconds: float) -> str | None:
    """Why work cut after `timeout_seconds` does not fit its lease (None when it does)."""
    if timeout_seconds + LEASE_MARGIN_SECONDS <= lease_seconds:
        return None
    return (
        f"the timeout ({timeout_seconds:g} s) must end at least {LEASE_MARGIN_SECONDS:g} s before the lease "
        f"({lease_seconds:g} s): another holder could take the work over while it still runs"
    )
