"""Durable work: everything done after a commit and retried until done, on one mechanism.

A kind of work is a table of rows, declared once as a `Queue` (`queue.py`): a row is claimed with a
lease (a compare-and-set for one row, `FOR UPDATE SKIP LOCKED` for a batch), finished only by its
lease holder, a failed attempt backed off (`backoff`), an expired lease counted as a failed attempt,
and `dead` after the declared number of attempts: kept, counted and replayable by an operator. The
time budgets every holder keeps are in `budget.py`; the operator surface (list, show, replay, over
HTTP) in `operator.py`. Stripe events (`webhooks.store`) and outbox messages
(`marketplace.outbox.service`) run on it; Redis only says "look now", PostgreSQL says what is owed.

This package's `__init__` imports nothing, so that `marketplace.lib.settings` can use `budget`.
"""
