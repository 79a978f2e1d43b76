"""`marketplace demo` against the e2e stack (the API on its own port, one arq worker, the sandbox, all over
real HTTP), run as a developer runs it: the CLI, its printed lines and its final table.

With a stack that lets sellers choose their profile and takes promotion codes, the whole story runs:
both charge types, the success page before the webhook, a 100%-off order, a declined card, a bank debit,
an oversell refunded. On a stack that allows neither (what `make run` starts by default) the demo says
so and skips those parts. Without a stack it is one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from marketplace.lib.db import connection
from marketplace.lib.settings import Settings
from marketplace.server.cli import main
from tests.conftest import free_port
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(settings: Settings, sandbox: Any, redis_url: str) -> AsyncIterator[Stack]:
    """The e2e stack (tests/e2e/conftest.py), for this module only: its worker sweeps the shared test
    database, so it must be gone before other suites start workers of their own."""
    async for running in e2e.stack.__wrapped__(settings, sandbox, redis_url):
        yield running


async def demo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """`marketplace demo ARGS` in a thread (the stack serves from this test's event loop meanwhile):
    its exit status, its stdout lines and stderr (where the in-process stack's own logs go too)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["demo", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def orders_table(lines: list[str]) -> list[tuple[str, ...]]:
    """The final table's rows: (story, charge, status, total, fee, paid, refund); the id is checked apart."""
    start = next(i for i, line in enumerate(lines) if line.startswith("order "))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        order_id, *rest = line.split(maxsplit=7)
        assert len(order_id) == 8, line
        rows.append(tuple(rest))
    return rows


def stock_table(lines: list[str]) -> list[tuple[int, str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith("stock "))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        stock, title = line.split(maxsplit=1)
        rows.append((int(stock), title))
    return rows


def order_ids(lines: list[str], story: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("order "))
    return [line.split()[0] for line in lines[start + 1 :] if line.split()[1:2] == [story]]


def paid(charge: str, story: str, amount: str = "25.00") -> tuple[str, ...]:
    """A paid row: the fee column is the fee Stripe took, none when nothing was charged (100 % off)."""
    return (story, charge, "paid", "25.00", "0.00" if amount == "0.00" else "2.50", amount, "-")


async def confirmed_by(short_id: str) -> str:
    async with connection() as conn:
        value: str = await conn.fetchval("SELECT confirmed_by FROM orders WHERE id::text LIKE $1", short_id + "%")
    return value


async def test_the_whole_story_on_a_stack_that_allows_it_all(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    async with stack.api_with(allow_seller_account_profile=True, checkout_allow_promotion_codes=True) as api:
        code, lines, err = await demo(capsys, "--base-url", str(api.base_url), "--sandbox-url", stack.sandbox_url)
    assert code == 0, "\n".join(lines) + err
    assert "marketplace demo:" not in err  # the stack's own log lines (in this process) may be there
    text = "\n".join(lines)
    assert orders_table(lines) == [
        paid("destination", "success-page-first"),
        paid("direct", "success-page-first"),
        paid("direct", "100%-off", amount="0.00"),
        paid("destination", "declined-then-paid"),
        paid("direct", "bank-debit"),
        paid("destination", "last-unit"),
        ("oversold-refunded", "destination", "oversold", "25.00", "2.50", "25.00", "25.00 succeeded"),
    ], text
    assert [stock for stock, _ in stock_table(lines)] == [0, 0], text
    # The success page came first, the webhook second on the endpoint where each session lives.
    for short_id in order_ids(lines, "success-page-first"):
        assert await confirmed_by(short_id) == "verify"
    assert "reaches /webhooks/stripe (HTTP 200) and changes nothing: order still paid" in text
    assert "reaches /webhooks/stripe/connect (HTTP 200) and changes nothing: order still paid" in text
    assert text.count("notifications list 1 sale") == 2
    assert "declined on the hosted page" in text
    assert "success page → processing" in text
    assert "skipped" not in text
    assert "not shown" not in text
    # Every step is one numbered line.
    story = lines[: next(i for i, line in enumerate(lines) if line.startswith("order "))]
    steps = [line for line in story if line[:3].strip().rstrip(".").isdigit()]
    assert [int(line.split(".")[0]) for line in steps] == list(range(1, len(steps) + 1))


async def test_a_stack_like_make_runs_default_is_shown_what_it_allows(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The e2e stack's own API has the defaults `make run` has: no profile choice, no promotion codes."""
    code, lines, err = await demo(capsys, "--base-url", stack.api_url)  # the sandbox: where its pages are
    assert code == 0, "\n".join(lines) + err
    assert "marketplace demo:" not in err  # the stack's own log lines (in this process) may be there
    text = "\n".join(lines)
    assert orders_table(lines) == [
        paid("destination", "success-page-first"),
        paid("destination", "success-page-first"),
        paid("destination", "declined-then-paid"),
        paid("destination", "bank-debit"),
        paid("destination", "last-unit"),
        ("oversold-refunded", "destination", "oversold", "25.00", "2.50", "25.00", "25.00 succeeded"),
    ], text
    assert [stock for stock, _ in stock_table(lines)] == [0, 1], text
    assert "ALLOW_SELLER_ACCOUNT_PROFILE is not true" in text
    assert "skipped: the 100%-off order" in text
    assert "CHECKOUT_ALLOW_PROMOTION_CODES is not true" in text


async def test_without_a_stack_it_is_one_line_and_a_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path))
    for name in ("PUBLIC_BASE_URL", "STRIPE_API_BASE", "STRIPE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    code, lines, err = await demo(capsys)
    assert (code, lines) == (1, [])
    assert err == (
        f"marketplace demo: no running `make run` stack found in {tmp_path}: start `make run` in another "
        "terminal of this checkout, or pass --base-url (and --sandbox-url)\n"
    )
    code, lines, err = await demo(capsys, "--base-url", f"http://127.0.0.1:{free_port()}")
    assert (code, lines) == (1, [])
    assert err.count("\n") == 1
    assert "nothing answers at http://127.0.0.1:" in err
