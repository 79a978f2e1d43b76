"""Stateful property tests of the one door to paid, over the real stack (issue 13).

A hypothesis `RuleBasedStateMachine` drives, per example, a fresh listing with small stock and one to
three guest orders of one seller (a destination or a direct charge), each with a scenario: card paid,
declined then card, bank debit that settles, bank debit that fails, 100 % off with a promotion code,
expiry. More paying orders than stock is the oversell. Its rules interleave, in any order and any
number of times:

- `advance`: the next step of one order's scenario, done on the sandbox as a buyer would (the sandbox
  signs and delivers the checkout events for real), optionally with the sandbox duplicating or
  delaying its deliveries, and optionally raced at once by the callers below (`…_and_race_…`);
- `pay_together`: every order whose next step is a payment pays at the same moment, so that their
  confirmations race each other for the stock;
- `redeliver`: one of the order's stored checkout events again: through the real handler
  (`checkout_session_changed` with a `StoredEvent` built from the `stripe_events` row), POSTed again
  signed with the endpoint's secret (same id: a duplicate; a new id: a second event for one change),
  on the wrong endpoint (as delivered there, and as the wrong endpoint would carry it: not ours), or
  with the other endpoint's secret (400);
- `poke`: `POST /orders/{id}/verify`, `follow_session` / `confirm_order` with the session re-read by
  `retrieve_session`, or all of them at once, racing each other and the webhook;
- `deliver_outbox`: one `deliver_due` run with the worker's router (refunds are made there).

The model is Stripe's side: what each session is (open, processing, paid, failed, expired) and, for
a paid one, whether its order got the stock, decided when the payment happened, in payment order (the
machine waits for every earlier payment to be confirmed before making the next one, so the winner of
the stock is determined); for payments made together, the outcome must be the one of *some* order of
their confirmations (each finds the stock the earlier ones left). After every step the database must
be on the way to the model's state (`invariant`); at the end of each example (after the scenario
steps the rules did not get to: each order runs its whole scenario, or stops one step short, as
drawn) it must equal it: statuses, stock (initial - paid quantities, never negative), refunds
(exactly one per oversold order that paid something, made with Stripe; none otherwise), the outbox
rows per order (paid: receipt, sale, fulfil; oversold: the buyer's and the seller's notices, plus
`refund.create` when something was paid; none otherwise), every stored checkout event handled.

Runs derandomized (a fixed seed: CI sees the same examples every run); `CONFIRM_PROPERTY_EXAMPLES`
changes the number of examples, `CONFIRM_PROPERTY_RANDOM=1` draws them at random (reproduce with
pytest's `--hypothesis-seed=N`, printed on failure). A failure prints the shrunk steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import core as hypothesis_core
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from connect.checkout import retrieve_session
from marketplace.lib.db import connection
from marketplace.orders.confirm import confirm_order, follow_session, is_paid
from marketplace.outbox.service import KindRouter, SendResources, build_router, deliver_due
from tests.e2e.conftest import Stack
from tests.e2e.test_checkout import active_seller, checkout, listing
from webhooks.handlers.checkout import checkout_session_changed
from webhooks.registry import ENDPOINT_PATHS, HandlerContext, NotOurs, StoredEvent

pytestmark = pytest.mark.integration

T = TypeVar("T")

EXAMPLES = int(os.environ.get("CONFIRM_PROPERTY_EXAMPLES", "25"))
RANDOM = bool(os.environ.get("CONFIRM_PROPERTY_RANDOM"))  # then `--hypothesis-seed=N` picks the seed
DECLINED_CARD = "4000000000000002"
UNIT_AMOUNT = 2500

# Each scenario's steps on the sandbox; an example may stop anywhere along them.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "card": ("card",),
    "declined_then_card": ("decline", "card"),
    "debit_settles": ("debit", "settle"),
    "debit_fails": ("debit", "fail_debit"),
    "free": ("free",),
    "expires": ("expire",),
}
PAYING_STEPS = {"card", "settle", "free"}

# What the database may show while it catches up with the model (webhooks are asynchronous).
ON_THE_WAY: dict[str, set[str]] = {
    "pending": {"pending"},
    "processing": {"pending", "processing"},
    "paid": {"pending", "processing", "paid"},
    "oversold": {"pending", "processing", "oversold"},
    "failed": {"pending", "processing", "failed"},
    "expired": {"pending", "expired"},
}
SETTLED = {"paid", "oversold", "failed", "expired"}


# ---- the world the machine runs in (set up once per test) ------------------------------------------


@dataclass
class Seller:
    profile: str
    charge_type: str
    auth: dict[str, str]
    account_id: str
    promo_code: str

    @property
    def lives_on(self) -> str | None:
        return self.account_id if self.charge_type == "direct" else None


@dataclass
class World:
    stack: Stack
    loop: asyncio.AbstractEventLoop
    sellers: dict[str, Seller]
    promo_api: httpx.AsyncClient  # an API process with promotion codes allowed (the 100 %-off orders)
    browser: httpx.AsyncClient  # the buyer on the hosted Checkout page
    router: KindRouter  # the worker's outbox router: notifications, and refund.create to Stripe
    seen: Counter[str] = field(default_factory=Counter)  # what the examples covered (printed at the end)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
        """Run `coro` on the test's event loop (where the stack lives) from hypothesis's thread."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


async def build_world(stack: Stack, loop: asyncio.AbstractEventLoop, exits: contextlib.AsyncExitStack) -> World:
    sellers: dict[str, Seller] = {}
    for profile, charge_type in (("platform_managed", "destination"), ("seller_managed", "direct")):
        auth, _, account_id = await active_seller(stack, profile)
        options: Any = {"stripe_account": account_id} if charge_type == "direct" else {}
        coupon = await stack.stripe.v1.coupons.create_async(params={"percent_off": 100.0}, options=options)
        code = f"PROP{uuid.uuid4().hex[:10].upper()}"
        await stack.stripe.v1.promotion_codes.create_async(
            params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": code}, options=options
        )
        sellers[charge_type] = Seller(profile, charge_type, auth, account_id, code)
    promo_api = await exits.enter_async_context(stack.api_with(checkout_allow_promotion_codes=True))
    browser = await exits.enter_async_context(httpx.AsyncClient(timeout=30))
    router = build_router(SendResources(stripe=stack.stripe))
    return World(stack, loop, sellers, promo_api, browser, router)


# ---- the model -------------------------------------------------------------------------------------


@dataclass
class ModelOrder:
    id: str
    token: str
    session_id: str
    checkout_url: str
    quantity: int
    total: int
    scenario: str
    stop: int  # how many of the scenario's steps this example makes (all, or one short)
    done: int = 0  # steps of the scenario made on the sandbox
    stripe: str = "open"  # open | processing | paid | failed | expired: the session as Stripe holds it
    # For a paid session: whether its confirmation found the stock (None: paid at the same time as others,
    # decided when their confirmations are in, as one of the orders they could have been made in).
    got_stock: bool | None = None

    @property
    def steps(self) -> tuple[str, ...]:
        return SCENARIOS[self.scenario]

    @property
    def next_step(self) -> str | None:
        return self.steps[self.done] if self.done < self.stop else None

    @property
    def free(self) -> bool:
        return self.scenario == "free"

    @property
    def expected(self) -> str:
        if self.stripe == "open":
            return "pending"
        if self.stripe == "paid":
            return "paid|oversold" if self.got_stock is None else "paid" if self.got_stock else "oversold"
        return self.stripe

    @property
    def acceptable(self) -> set[str]:
        """What a caller applying Stripe's state may answer now."""
        return {"paid", "oversold"} if self.expected == "paid|oversold" else {self.expected}

    @property
    def on_the_way(self) -> set[str]:
        """What the database may show while it catches up (webhooks are asynchronous)."""
        if self.expected == "paid|oversold":
            return {"pending", "processing", "paid", "oversold"}
        return ON_THE_WAY[self.expected]

    @property
    def amount_paid(self) -> int:
        return 0 if self.free else self.total

    def expected_side_effects(self, status: str) -> list[str]:
        if status == "paid":
            return ["order.fulfil", "order.receipt", "order.sale"]
        if status == "oversold":
            told = ["order.oversold", "order.oversold_seller"]
            return told if self.amount_paid == 0 else [*told, "refund.create"]
        return []

    def expected_refunds(self, status: str) -> int:
        return 1 if status == "oversold" and self.amount_paid > 0 else 0

    def describe(self) -> str:
        progress = f"done={self.done}/{self.stop} stripe={self.stripe}"
        return f"{self.scenario} x{self.quantity} {progress} expected={self.expected}"


# ---- database reads --------------------------------------------------------------------------------


async def db_state(order_ids: list[str], listing_id: str) -> tuple[int | None, dict[str, dict[str, Any]]]:
    """The listing's stock, and per order: status, quantity, side-effect kinds, refunds."""
    ids = [uuid.UUID(i) for i in order_ids]
    # One snapshot: an order's status, its outbox rows and its refund are committed together, and must be
    # read together (four statements outside a transaction could straddle a confirmation).
    async with connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        stock = await conn.fetchval("SELECT stock FROM listings WHERE id = $1", uuid.UUID(listing_id))
        orders = await conn.fetch(
            "SELECT id, status, amount_paid, payment_intent_id FROM orders WHERE id = ANY($1::uuid[])", ids
        )
        effects = await conn.fetch(
            """
            SELECT o.id AS order_id, m.kind, m.status FROM orders o JOIN outbox_messages m
                ON m.dedupe_key LIKE 'order:' || o.id::text || ':%' OR m.payload->>'order_id' = o.id::text
                OR m.payload->>'refund_id' IN (SELECT r.id::text FROM refunds r WHERE r."order" = o.id)
             WHERE o.id = ANY($1::uuid[])
            """,
            ids,
        )
        refund_rows = await conn.fetch('SELECT * FROM refunds WHERE "order" = ANY($1::uuid[])', ids)
    state: dict[str, dict[str, Any]] = {
        str(r["id"]): dict(r) | {"effects": [], "effect_statuses": [], "refunds": []} for r in orders
    }
    for e in effects:
        state[str(e["order_id"])]["effects"].append(e["kind"])
        state[str(e["order_id"])]["effect_statuses"].append(e["status"])
    for r in refund_rows:
        state[str(r["order"])]["refunds"].append(dict(r))
    for s in state.values():
        s["effects"].sort()
    return stock, state


def summary(value: tuple[int | None, dict[str, dict[str, Any]]]) -> object:
    """`db_state` in short, for failure messages: the stock, and per order its status, effects, refunds."""
    stock, state = value
    return stock, {
        k[:8]: (s["status"], s["effects"], [(r["amount"], r["status"]) for r in s["refunds"]]) for k, s in state.items()
    }


async def checkout_events(session_id: str) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM stripe_events WHERE type LIKE 'checkout.session.%'"
            " AND payload->'data'->'object'->>'id' = $1 ORDER BY received_at, id",
            session_id,
        )
    return [dict(r) for r in rows]


def greedy(stock: int, orders: tuple[ModelOrder, ...]) -> dict[str, bool]:
    """Who gets the stock when `orders` are confirmed one after the other in this order."""
    got: dict[str, bool] = {}
    for o in orders:
        got[o.id] = stock >= o.quantity
        if got[o.id]:
            stock -= o.quantity
    return got


def stored_event(row: dict[str, Any], *, endpoint: str | None = None, account: Any = ...) -> StoredEvent:
    payload = row["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    return StoredEvent(
        id=row["id"],
        type=row["type"],
        account=row["account"] if account is ... else account,
        endpoint=endpoint or ("connect" if row["account"] else "platform"),  # type: ignore[arg-type]
        livemode=row["livemode"],
        api_version=row["api_version"],
        created=row["created"],
        payload=payload,
    )


def signature(body: str, secret: str) -> str:
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    what: str,
    timeout: float = 60,
    hopeless: Callable[[T], bool] = lambda _: False,
    show: Callable[[T], object] = lambda v: v,
) -> T:
    """Poll `probe` until `accept`; fail at once when `hopeless` (a final state other than the wanted one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if hopeless(value):
            raise AssertionError(f"{what}: settled elsewhere: {show(value)!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s; last value: {show(value)!r}")
        await asyncio.sleep(0.05)


# ---- the machine -----------------------------------------------------------------------------------


class ConfirmMachine(RuleBasedStateMachine):
    world: World  # set on the subclass made per test

    def __init__(self) -> None:
        super().__init__()
        self.seller: Seller | None = None
        self.listing_id = ""
        self.initial_stock = 0
        self.stock = 0  # the model's stock
        self.orders: list[ModelOrder] = []
        self.injected: dict[str, str] = {}  # event id we POSTed → the status it must end in
        self.broken = False
        self.faults_set = False

    # -- plumbing --
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self.world.run(coro)
        except BaseException:
            self.broken = True
            raise

    @property
    def stack(self) -> Stack:
        return self.world.stack

    def order(self, index: int) -> ModelOrder:
        return self.orders[index % len(self.orders)]

    def headers(self, order: ModelOrder) -> dict[str, str]:
        return {"X-Order-Token": order.token}

    # -- setup --
    @initialize(
        charge_type=st.sampled_from(["destination", "direct"]),
        stock=st.integers(1, 3),
        # Per order: its scenario, its quantity, and whether the example stops one step short of its end.
        plan=st.lists(
            st.tuples(st.sampled_from(sorted(SCENARIOS)), st.integers(1, 2), st.booleans()), min_size=1, max_size=3
        ),
        # The oversell: one more buyer paying by card for the whole stock (whoever pays second is short).
        oversell=st.booleans(),
    )
    def setup(self, charge_type: str, stock: int, plan: list[tuple[str, int, bool]], oversell: bool) -> None:
        self.seller = self.world.sellers[charge_type]
        self.initial_stock = self.stock = stock
        if oversell:
            plan = [*plan, ("card", stock, False)]
        self.run(self._setup(plan))

    async def _setup(self, plan: list[tuple[str, int, bool]]) -> None:
        assert self.seller is not None
        item = await listing(self.stack, self.seller.auth, stock=self.initial_stock, unit_amount=UNIT_AMOUNT)
        self.listing_id = item["id"]
        for scenario, wanted, short in plan:
            quantity = min(wanted, self.initial_stock)  # checkout refuses more than the stock
            api = self.world.promo_api if scenario == "free" else None
            email = f"prop-{uuid.uuid4().hex[:12]}@example.com"
            response = await checkout(self.stack, [(item["id"], quantity)], api=api, email=email)
            assert response.status_code == 201, response.text
            body = response.json()
            async with connection() as conn:
                session_id = await conn.fetchval(
                    "SELECT checkout_session_id FROM orders WHERE id = $1", uuid.UUID(body["order"]["id"])
                )
            assert session_id, body
            self.orders.append(
                ModelOrder(
                    id=body["order"]["id"],
                    token=body["access_token"],
                    session_id=session_id,
                    checkout_url=body["checkout_url"],
                    quantity=quantity,
                    total=quantity * UNIT_AMOUNT,
                    scenario=scenario,
                    stop=len(SCENARIOS[scenario]) - int(short),
                )
            )

    # -- scenario steps on the sandbox --
    def _remaining(self) -> bool:
        return any(o.next_step is not None for o in self.orders)

    @precondition(lambda self: self._remaining())
    @rule(index=st.integers(0, 3), fault=st.sampled_from(["none", "duplicate", "delay"]))
    def advance(self, index: int, fault: str) -> None:
        candidates = [o for o in self.orders if o.next_step is not None]
        self.world.seen[f"advance ({fault})"] += 1
        self.run(self._advance(candidates[index % len(candidates)], fault))

    @precondition(lambda self: self._remaining())
    @rule(index=st.integers(0, 3), fault=st.sampled_from(["none", "duplicate", "delay"]))
    def advance_and_race_the_webhook(self, index: int, fault: str) -> None:
        """The next step, then at once the success page, a re-read follow and a confirm, all concurrently
        with the webhook the step set off (delayed or duplicated by the sandbox, as drawn)."""
        candidates = [o for o in self.orders if o.next_step is not None]
        order = candidates[index % len(candidates)]
        self.world.seen[f"advance and race ({fault})"] += 1

        async def both() -> None:
            await self._advance(order, fault)
            await self._poke(order, "race")

        self.run(both())

    @precondition(lambda self: len(self._paying_next()) >= 2)
    @rule(fault=st.sampled_from(["none", "duplicate", "delay"]), race=st.booleans())
    def pay_together(self, fault: str, race: bool) -> None:
        """Every order whose next step is a payment pays at once: their confirmations race for the stock."""
        group = self._paying_next()
        self.world.seen[f"pay together ({len(group)} orders)"] += 1

        async def together() -> None:
            await self._settle_payments()
            await self._faults(fault)
            try:
                await asyncio.gather(*(self._advance(o, "none", together=True) for o in group))
            finally:
                await self._faults("none")
            if race:
                await asyncio.gather(*(self._poke(o, "race") for o in group))

        self.run(together())

    def _paying_next(self) -> list[ModelOrder]:
        return [o for o in self.orders if o.next_step in PAYING_STEPS]

    async def _settle_payments(self) -> None:
        """Every payment made so far is confirmed, so the next one's confirmation finds the stock they left;
        payments made together must have been confirmed in some order, each finding what the ones before left."""
        waiting = [o for o in self.orders if o.stripe == "paid"]
        if not waiting:
            return
        _, state = await eventually(
            lambda: db_state([o.id for o in waiting], self.listing_id),
            lambda s: all(s[1][o.id]["status"] in ("paid", "oversold") for o in waiting),
            "earlier payments confirmed",
            hopeless=lambda s: any(s[1][o.id]["status"] in SETTLED - o.acceptable for o in waiting),
            show=summary,
        )
        for o in waiting:
            assert state[o.id]["status"] in o.acceptable, (o.describe(), state[o.id]["status"])
        group = [o for o in waiting if o.got_stock is None]
        if not group:
            return
        outcome = {o.id: state[o.id]["status"] == "paid" for o in group}
        assert any(greedy(self.stock, order) == outcome for order in itertools.permutations(group)), (
            f"no order of confirmation gives {outcome} from stock {self.stock}: "
            + "; ".join(o.describe() for o in group)
        )
        for o in group:
            o.got_stock = outcome[o.id]
            if o.got_stock:
                self.stock -= o.quantity

    async def _faults(self, fault: str) -> None:
        """The sandbox duplicates its next deliveries, or delays them (so the other callers come first)."""
        if fault == "duplicate":
            await self.stack.control.set_delivery_faults(duplicate=4)
            self.faults_set = True
        elif fault == "delay":
            await self.stack.control.set_delivery_faults(delay=0.3)
            self.faults_set = True
        else:
            await self.stack.control.set_delivery_faults(duplicate=0, delay=0.0)

    async def _advance(self, order: ModelOrder, fault: str, *, together: bool = False) -> None:
        step = order.next_step
        assert step is not None
        assert self.seller is not None
        on = self.seller.lives_on
        control = self.stack.control
        if step in PAYING_STEPS and not together:
            await self._settle_payments()
        if fault != "none":
            await self._faults(fault)
        try:
            if step == "card":
                outcome = await control.complete_checkout(order.session_id, stripe_account=on)
                assert outcome["outcome"] == "succeeded", outcome
            elif step == "decline":
                outcome = await control.complete_checkout(order.session_id, card=DECLINED_CARD, stripe_account=on)
                assert outcome["outcome"] == "declined", outcome
            elif step == "debit":
                await control.pay_with_bank_debit(order.session_id, stripe_account=on)
            elif step == "settle":
                await control.settle_bank_debit(order.session_id, stripe_account=on)
            elif step == "fail_debit":
                await control.fail_bank_debit(order.session_id, stripe_account=on)
            elif step == "expire":
                await control.expire_session(order.session_id, stripe_account=on)
            elif step == "free":
                applied = await self.world.browser.post(
                    f"{order.checkout_url}/promo", data={"code": self.seller.promo_code}
                )
                assert applied.status_code in (302, 303), applied.text
                free = await self.world.browser.post(f"{order.checkout_url}/free", data={"email": "free@example.com"})
                assert free.status_code == 303, free.text
            else:  # pragma: no cover
                raise AssertionError(step)
        finally:
            if fault != "none":
                await self._faults("none")
        order.done += 1
        if step in PAYING_STEPS:
            order.stripe = "paid"
            if not together:
                order.got_stock = self.stock >= order.quantity
                if order.got_stock:
                    self.stock -= order.quantity
        elif step == "debit":
            order.stripe = "processing"
        elif step == "fail_debit":
            order.stripe = "failed"
        elif step == "expire":
            order.stripe = "expired"

    # -- the event again, and where it does not belong --
    @rule(
        index=st.integers(0, 3),
        pick=st.integers(0, 7),
        how=st.sampled_from(
            [
                "handler",
                "handler_wrong_endpoint",
                "post_same_id",
                "post_new_id",
                "post_wrong_endpoint_same_id",
                "post_wrong_endpoint_new_id",
                "post_wrong_endpoint_as_foreign",
                "post_other_secret",
            ]
        ),
    )
    def redeliver(self, index: int, pick: int, how: str) -> None:
        self.world.seen[f"redeliver {how}"] += 1
        self.run(self._redeliver(self.order(index), pick, how))

    async def _redeliver(self, order: ModelOrder, pick: int, how: str) -> None:
        assert self.seller is not None
        rows = [r for r in await checkout_events(order.session_id) if r["id"] not in self.injected]
        if not rows:
            return  # nothing delivered for this session yet
        row = rows[pick % len(rows)]
        lives_on = self.seller.lives_on
        right = "connect" if lives_on else "platform"
        wrong = "platform" if lives_on else "connect"
        # What an event of the wrong endpoint carries: the Connect endpoint's name an account, the platform's none.
        foreign_account = None if lives_on else self.seller.account_id
        if how == "handler":
            ctx = HandlerContext(stripe=self.stack.stripe, settings=self.stack.settings, arq=None)
            await checkout_session_changed(ctx, stored_event(row))
            return
        if how == "handler_wrong_endpoint":
            ctx = HandlerContext(stripe=self.stack.stripe, settings=self.stack.settings, arq=None)
            with pytest.raises(NotOurs):
                await checkout_session_changed(ctx, stored_event(row, endpoint=wrong, account=foreign_account))
            return
        payload = row["payload"]
        event = json.loads(payload) if isinstance(payload, str) else dict(payload)
        endpoint = right
        outcome = "stored"
        if how in ("post_same_id", "post_wrong_endpoint_same_id"):
            outcome = "duplicate"
        else:
            event["id"] = f"evt_prop{uuid.uuid4().hex[:20]}"
        if how.startswith("post_wrong_endpoint"):
            endpoint = wrong
        if how == "post_wrong_endpoint_as_foreign":
            if foreign_account is None:
                event.pop("account", None)
            else:
                event["account"] = foreign_account
        secrets = {
            "platform": self.stack.settings.webhook_secrets_platform[0].reveal(),
            "connect": self.stack.settings.webhook_secrets_connect[0].reveal(),
        }
        secret = secrets[wrong if how == "post_other_secret" else endpoint]
        body = json.dumps(event)
        response = await self.stack.api.post(
            ENDPOINT_PATHS[endpoint],  # type: ignore[index]
            content=body.encode(),
            headers={"Stripe-Signature": signature(body, secret), "Content-Type": "application/json"},
        )
        if how == "post_other_secret":
            assert response.status_code == 400, response.text
            return
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == outcome, (how, response.text)
        if outcome == "stored":
            self.injected[event["id"]] = "not_ours" if how == "post_wrong_endpoint_as_foreign" else "processed"

    # -- the other callers: the success page, and follow_session / confirm_order with a re-read --
    @rule(index=st.integers(0, 3), how=st.sampled_from(["verify", "follow", "confirm", "race"]))
    def poke(self, index: int, how: str) -> None:
        self.world.seen[f"poke {how}"] += 1
        self.run(self._poke(self.order(index), how))

    async def _verify(self, order: ModelOrder) -> None:
        response = await self.stack.api.post(
            f"/orders/{order.id}/verify", json={"session_id": order.session_id}, headers=self.headers(order)
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] in order.acceptable, (order.describe(), response.json()["status"])

    async def _follow(self, order: ModelOrder) -> None:
        assert self.seller is not None
        session = await retrieve_session(self.stack.stripe, order.session_id, self.seller.lives_on)
        after = await follow_session(uuid.UUID(order.id), session, "property:follow")
        assert after.status.value in order.acceptable, (order.describe(), after.status.value)

    async def _confirm(self, order: ModelOrder) -> None:
        assert self.seller is not None
        session = await retrieve_session(self.stack.stripe, order.session_id, self.seller.lives_on)
        done = await confirm_order(uuid.UUID(order.id), session, "property:confirm")
        if is_paid(session):
            assert done.order.status.value in order.acceptable, (order.describe(), done.order.status.value)
        else:
            assert not done.won, order.describe()
            assert done.order.status.value in order.on_the_way, (order.describe(), done.order.status.value)

    async def _poke(self, order: ModelOrder, how: str) -> None:
        if how == "verify":
            await self._verify(order)
        elif how == "follow":
            await self._follow(order)
        elif how == "confirm":
            await self._confirm(order)
        else:
            await asyncio.gather(self._verify(order), self._follow(order), self._confirm(order), self._follow(order))

    @rule()
    def deliver_outbox(self) -> None:
        self.run(deliver_due(self.world.router, send_timeout=20.0, lease_seconds=60.0))

    # -- what must hold after every step --
    @invariant()
    def on_the_way_to_the_model(self) -> None:
        if not self.orders or self.broken:
            return
        stock, state = self.run(db_state([o.id for o in self.orders], self.listing_id))
        try:
            self.check_consistent(stock, state, final=False)
        except BaseException:
            self.broken = True
            raise

    def check_consistent(self, stock: int | None, state: dict[str, dict[str, Any]], *, final: bool) -> None:
        assert stock is not None
        assert stock >= 0, stock
        paid_quantity = sum(o.quantity for o in self.orders if state[o.id]["status"] == "paid")
        assert stock == self.initial_stock - paid_quantity, (stock, self.initial_stock, paid_quantity)
        for o in self.orders:
            status = state[o.id]["status"]
            if final:
                assert status == o.expected, (o.describe(), status)
            else:
                assert status in o.on_the_way, (o.describe(), status)
            # Written in the transaction that moved the order: exact at every moment.
            assert state[o.id]["effects"] == o.expected_side_effects(status), (o.describe(), state[o.id]["effects"])
            assert len(state[o.id]["refunds"]) == o.expected_refunds(status), (o.describe(), state[o.id]["refunds"])

    # -- the end of an example --
    def teardown(self) -> None:
        try:
            if not self.broken and self.orders:
                while self._remaining():  # the steps the rules did not get to, in order
                    order = next(o for o in self.orders if o.next_step is not None)
                    self.run(self._advance(order, "none"))
                self.run(self._final())
        finally:
            if self.faults_set:
                self.world.run(self.stack.control.set_delivery_faults(duplicate=0, delay=0.0))

    async def _final(self) -> None:
        ids = [o.id for o in self.orders]
        await self._settle_payments()
        # The webhooks alone bring every order to the model's status.
        await eventually(
            lambda: db_state(ids, self.listing_id),
            lambda s: all(s[1][o.id]["status"] == o.expected for o in self.orders),
            "every order at the model's status: " + "; ".join(o.describe() for o in self.orders),
            hopeless=lambda s: any(s[1][o.id]["status"] in SETTLED - {o.expected} for o in self.orders),
            show=summary,
        )
        await self.stack.quiesce(timeout=30)

        async def delivered() -> tuple[int | None, dict[str, dict[str, Any]]]:
            await deliver_due(self.world.router, send_timeout=20.0, lease_seconds=60.0)
            return await db_state(ids, self.listing_id)

        stock, state = await eventually(
            delivered,
            lambda s: all(
                all(x == "sent" for x in s[1][o.id]["effect_statuses"])
                and all(r["status"] == "created" for r in s[1][o.id]["refunds"])
                for o in self.orders
            ),
            "every outbox message sent and every refund made",
            show=summary,
        )
        self.check_consistent(stock, state, final=True)
        self.world.seen["examples checked"] += 1
        for o in self.orders:
            self.world.seen[f"final {o.expected}{' (free)' if o.free else ''}"] += 1
        assert stock == self.stock, (stock, self.stock)
        assert self.seller is not None
        options: Any = {"stripe_account": self.seller.lives_on} if self.seller.lives_on else {}
        for o in self.orders:
            row = state[o.id]
            if o.expected in ("paid", "oversold"):
                assert row["amount_paid"] == o.amount_paid, (o.describe(), row["amount_paid"])
                assert (row["payment_intent_id"] is None) == o.free, (o.describe(), row["payment_intent_id"])
            for refund in row["refunds"]:
                assert (refund["amount"], refund["reason"]) == (o.total, "oversold"), refund
                assert refund["payment_intent_id"] == row["payment_intent_id"], refund
                made = await self.stack.stripe.v1.refunds.retrieve_async(refund["stripe_refund_id"], options=options)
                assert (made.amount, made.payment_intent) == (o.total, row["payment_intent_id"]), made
            # Every checkout event stored for the session was handled: processed, or not ours where injected so.
            for event in await checkout_events(o.session_id):
                wanted = self.injected.get(event["id"], "processed")
                assert event["status"] == wanted, (o.describe(), event["id"], event["type"], event["status"], wanted)
                assert event["endpoint"] in ("platform", "connect")


def run_machine(world: World) -> None:
    machine = type("ConfirmMachineForThisRun", (ConfirmMachine,), {"world": world})
    options = settings(
        max_examples=EXAMPLES,
        stateful_step_count=20,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        report_multiple_bugs=False,  # shrink one failure well rather than several in the shrinking budget
        suppress_health_check=list(HealthCheck),
    )
    try:
        run_state_machine_as_test(machine, settings=options)
    except BaseException:
        seed = getattr(hypothesis_core, "global_force_seed", None)
        mode = f"random, --hypothesis-seed={seed}" if RANDOM else "derandomized (the same examples every run)"
        print(f"hypothesis: {EXAMPLES} examples, {mode}; the shrunk steps are printed above")
        raise


@pytest.mark.timeout(600)
async def test_every_interleaving_of_confirmations_ends_where_the_model_does(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as exits:
        world = await build_world(stack, loop, exits)
        try:
            await asyncio.to_thread(run_machine, world)
        finally:
            print("covered:", ", ".join(f"{k}: {n}" for k, n in sorted(world.seen.items())))
            await stack.control.set_delivery_faults(duplicate=0, delay=0.0)
