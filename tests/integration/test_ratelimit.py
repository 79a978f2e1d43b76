"""The onboarding redirects (no bearer token, a Stripe call each) are rate limited per state and per address.

The app runs in-process against the sandbox; each test calls it from addresses of its own (the ASGI
client address), so the per-address counters in the shared test Redis never meet another test's.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from litestar import Litestar

from marketplace.lib.ratelimit import ONBOARDING_PER_ADDRESS, ONBOARDING_PER_STATE, redis_key
from marketplace.lib.settings import Settings
from marketplace.sellers.tables import AccountLinkRequest, ConnectedAccount
from marketplace.server.app import create_app
from tests.conftest import free_port, in_process, make_settings
from tests.support.factories import SellerSignupFactory, payload


def an_address() -> str:
    """A client address no other test uses (TEST-NET-style, random)."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def browser(app: Litestar, address: str) -> httpx.AsyncClient:
    """A client calling `app` in-process as if from `address` (the app's lifespan must be running)."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", follow_redirects=False)


@pytest.fixture(scope="module")
async def app(settings: Settings, sandbox: Any) -> AsyncIterator[Litestar]:
    served = create_app(settings)
    async with in_process(served):
        yield served


async def onboarding_state(app: Litestar) -> tuple[uuid.UUID, dict[str, Any]]:
    """A seller with a connected account (in the sandbox) and an onboarding link: the link's state, the account."""
    async with browser(app, an_address()) as api:
        signed_up = await api.post("/sellers", json=payload(SellerSignupFactory))
        assert signed_up.status_code == 201, signed_up.text
        auth = {"Authorization": f"Bearer {signed_up.json()['token']}"}
        created = await api.post("/sellers/me/stripe-account", headers=auth)
        assert created.status_code == 201, created.text
        linked = await api.post("/sellers/me/onboarding-link", headers=auth)
        assert linked.status_code == 201, linked.text
    seller_id = signed_up.json()["seller"]["id"]
    row = (
        await AccountLinkRequest.select()
        .where(AccountLinkRequest.seller == seller_id)
        .order_by(AccountLinkRequest.created_at, ascending=False)
        .first()
    )
    assert row is not None
    account = await ConnectedAccount.select().where(ConnectedAccount.id == row["account"]).first()
    assert account is not None
    return row["id"], dict(account)


async def link_rows(account: dict[str, Any]) -> int:
    rows: int = await AccountLinkRequest.count().where(AccountLinkRequest.account == account["id"])
    return rows


def sandbox_links(sandbox: Any, account: dict[str, Any]) -> int:
    """How many account links the sandbox (Stripe) created for the account: one per call that reached it."""
    links = sandbox.sandbox.store.all("account_link")
    return sum(1 for link in links if link["account"] == account["stripe_account_id"])


class Recorder(logging.Handler):
    """Keeps the records a logger emits."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def assert_too_many_requests(response: httpx.Response, path: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    body = response.json()
    assert body["type"] == "urn:marketplace:problem:too-many-requests"
    assert body["status"] == 429
    assert body["instance"] == path


async def test_the_eleventh_refresh_of_one_state_is_429_and_stripe_is_not_called(app: Litestar, sandbox: Any) -> None:
    state, account = await onboarding_state(app)
    path = f"/sellers/onboarding/{state}/refresh"
    async with browser(app, an_address()) as seller:
        first = await seller.get(path)
        assert first.status_code == 303
        assert urlsplit(first.headers["location"]).path.startswith("/setup/")  # a fresh link, minted by Stripe
        for _ in range(ONBOARDING_PER_STATE.limit - 1):  # the state is used up now: the seller page, no Stripe
            again = await seller.get(path)
            assert again.status_code == 303
            assert "onboarding=link_expired" in again.headers["location"]
        rows, links = await link_rows(account), sandbox_links(sandbox, account)

        refused = await seller.get(path)
    assert_too_many_requests(refused, path)
    assert await link_rows(account) == rows
    assert sandbox_links(sandbox, account) == links


async def test_a_states_limit_counts_both_routes_and_keeps_stripe_out(app: Litestar, sandbox: Any) -> None:
    """Ten returns (each reads the account from Stripe) use up the state's minute: a refresh of the still
    unused state is refused before a link is minted, and a return before the account is read."""
    state, account = await onboarding_state(app)
    async with browser(app, an_address()) as seller:
        for _ in range(ONBOARDING_PER_STATE.limit):
            returned = await seller.get(f"/sellers/onboarding/{state}/return")
            assert returned.status_code == 303
            assert "onboarding=returned" in returned.headers["location"]
        synced = await ConnectedAccount.select(ConnectedAccount.synced_at).where(ConnectedAccount.id == account["id"])
        rows, links = await link_rows(account), sandbox_links(sandbox, account)

        refresh = await seller.get(f"/sellers/onboarding/{state}/refresh")
        assert_too_many_requests(refresh, f"/sellers/onboarding/{state}/refresh")
        again = await seller.get(f"/sellers/onboarding/{state}/return")
        assert_too_many_requests(again, f"/sellers/onboarding/{state}/return")
    assert await link_rows(account) == rows
    assert sandbox_links(sandbox, account) == links
    unused = await AccountLinkRequest.select(AccountLinkRequest.used_at).where(AccountLinkRequest.id == state).first()
    assert unused == {"used_at": None}  # the refresh did nothing: the seller may use the state after the minute
    assert (
        await ConnectedAccount.select(ConnectedAccount.synced_at).where(ConnectedAccount.id == account["id"])
    ) == synced


async def test_different_states_from_one_address_hit_the_address_limit(app: Litestar) -> None:
    address = an_address()
    async with browser(app, address) as guesser:
        for _ in range(ONBOARDING_PER_ADDRESS.limit):
            guess = await guesser.get(f"/sellers/onboarding/{uuid.uuid4()}/refresh")
            assert guess.status_code == 303
            assert "onboarding=link_expired" in guess.headers["location"]
        fresh_state = uuid.uuid4()
        refused = await guesser.get(f"/sellers/onboarding/{fresh_state}/return")
        assert_too_many_requests(refused, f"/sellers/onboarding/{fresh_state}/return")
    async with browser(app, an_address()) as someone_else:  # the same state from elsewhere is not limited
        other = await someone_else.get(f"/sellers/onboarding/{fresh_state}/return")
    assert other.status_code == 303


async def test_redis_keys_hold_neither_the_state_nor_the_address(app: Litestar) -> None:
    address, state = an_address(), uuid.uuid4()
    async with browser(app, address) as seller:
        assert (await seller.get(f"/sellers/onboarding/{state}/refresh")).status_code == 303
    arq = app.state.arq
    keys = [key.decode() if isinstance(key, bytes) else key async for key in arq.scan_iter(match="ratelimit:*")]
    assert redis_key(ONBOARDING_PER_STATE, str(state)) in keys
    assert redis_key(ONBOARDING_PER_ADDRESS, address) in keys
    assert not [key for key in keys if str(state) in key or state.hex in key or address in key]
    assert 0 < await arq.ttl(redis_key(ONBOARDING_PER_STATE, str(state))) <= ONBOARDING_PER_STATE.window


async def test_redis_down_lets_onboarding_through_with_a_warning_that_names_no_state(
    database: str, sandbox: Any, app: Litestar
) -> None:
    state, account = await onboarding_state(app)
    dead_redis = make_settings(database, f"redis://127.0.0.1:{free_port()}/0")
    handler = Recorder(level=logging.WARNING)
    records = handler.records
    limiter_log = logging.getLogger("marketplace.lib.ratelimit")
    limiter_log.addHandler(handler)
    try:
        outage = create_app(dead_redis)
        async with in_process(outage), browser(outage, an_address()) as seller:
            answers = [await seller.get(f"/sellers/onboarding/{state}/return") for _ in range(3)]
            answers += [await seller.get(f"/sellers/onboarding/{state}/refresh")]  # mints a link: Stripe reached
            answers += [
                await seller.get(f"/sellers/onboarding/{state}/refresh")
                for _ in range(ONBOARDING_PER_STATE.limit + ONBOARDING_PER_ADDRESS.limit)
            ]
    finally:
        limiter_log.removeHandler(handler)
    assert [answer.status_code for answer in answers] == [303] * len(answers)
    assert all("onboarding=returned" in answer.headers["location"] for answer in answers[:3])
    assert urlsplit(answers[3].headers["location"]).path.startswith("/setup/")
    assert await link_rows(account) == 2
    warnings = [record for record in records if record.levelno == logging.WARNING]
    assert len(warnings) == len(answers)  # one per request let through unchecked
    for record in warnings:
        text = record.getMessage()
        assert "Redis" in text
        assert str(state) not in text
        assert state.hex not in text
