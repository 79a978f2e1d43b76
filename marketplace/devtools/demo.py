"""`marketplace demo`: the whole story against a running stack, over HTTP only, one line per step.

Two sellers sign up and onboard through the sandbox's hosted form (one of each account profile when
the stack lets sellers choose), each lists an item with stock 3, and guests buy: a card payment whose
success page (`POST /orders/{id}/verify`) arrives before the webhook, a 100%-off order, a declined
card then a good one, a bank debit that settles later, and two buyers for the last unit (one is
oversold and refunded). It ends with a table of the orders and the listings' stock.

Only the doors a platform's users have are used: the public API, the sandbox's hosted pages posted
as a browser would, Stripe's API on the sandbox (the coupon and promotion code a platform would make
in its dashboard), and the sandbox's control API where no browser can act (settling a bank debit,
holding webhook deliveries back for two seconds, reading what was delivered). Nothing here imports
`sandbox`: it is one more HTTP client.

Which stack: by default the one this checkout's `make run` describes in `.data/stack.json` (the same
file every CLI command reads, `marketplace.devtools.devstack`); `--base-url` for another API, `--sandbox-url`
for its sandbox (default: the origin of the hosted pages that API hands out). Every run makes new
sellers, listings and buyers, so it can run again and again against the same stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from connect.profiles import ChargeType, account_of
from marketplace.devtools.devstack import data_dir, fill_from_stack

Json = dict[str, Any]
Say = Callable[[str], None]
T = TypeVar("T")

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
UNIT_AMOUNT = 2500  # 25.00 USD
STOCK = 3
FINAL_REFUND = ("succeeded", "failed", "canceled")  # Stripe's refund statuses that no longer change
HOLD_WEBHOOKS_SECONDS = 2.0  # long enough for the success page to come first, short enough to watch
# The sandbox takes any test-mode key as its one platform's; used only when the stack's own key is not
# known for the sandbox the demo talks to (a real key is never sent to it).
ANY_SANDBOX_KEY = "sk_test_marketplace_demo"
PROFILE_WORDS = {
    "platform_managed": "platform-managed (Express dashboard)",
    "seller_managed": "seller-managed (full dashboard)",
}


class DemoError(Exception):
    """A failure the demo reports as one line (the stack is not running, a step was refused, ...)."""


@dataclass(frozen=True)
class Target:
    """Where the demo walks: the API, its sandbox (None: learnt from the first hosted page), a test key."""

    api_url: str
    sandbox_url: str | None
    stripe_key: str


def resolve_target(
    base_url: str | None = None, sandbox_url: str | None = None, env: Mapping[str, str] | None = None
) -> Target:
    """The stack to walk: the options, else the running `make run` stack of this checkout.

    The environment is completed from `.data/stack.json` exactly as for every CLI command (development
    only); nothing is changed in the process's own environment.
    """
    values = dict(os.environ if env is None else env)
    fill_from_stack(values)
    api = base_url or values.get("PUBLIC_BASE_URL")
    if not api:
        raise DemoError(
            f"no running `make run` stack found in {data_dir(values)}: start `make run` in another terminal "
            "of this checkout, or pass --base-url (and --sandbox-url)"
        )
    known_sandbox = (values.get("STRIPE_API_BASE") or "").rstrip("/") or None
    sandbox = sandbox_url or (known_sandbox if base_url is None else None)
    if sandbox is None and base_url is None:
        raise DemoError(
            "the running stack uses real Stripe (no STRIPE_API_BASE): the demo needs the Stripe sandbox "
            "(`make run` without STRIPE_SECRET_KEY), or pass --sandbox-url"
        )
    key = values.get("STRIPE_SECRET_KEY") or ""
    if not (key.startswith("sk_test_") and sandbox is not None and sandbox.rstrip("/") == known_sandbox):
        key = ANY_SANDBOX_KEY
    return Target(api_url=api.rstrip("/"), sandbox_url=sandbox.rstrip("/") if sandbox else None, stripe_key=key)


@dataclass
class Seller:
    name: str
    auth: dict[str, str]
    account_id: str
    profile: str
    charge_type: ChargeType
    listing_id: str = ""
    listing_title: str = ""


@dataclass
class Order:
    """A guest's order: what `POST /checkout` answered, and the guest's credential for it."""

    label: str
    seller: Seller
    email: str
    token: str
    body: Json
    session_id: str = ""

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def short(self) -> str:
        return self.id[:8]

    @property
    def checkout_url(self) -> str:
        return str(self.body["checkout_url"])

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Order-Token": self.token}


@dataclass
class Result:
    """What the demo did: the orders as the API shows them at the end, the listings' stock, what it skipped."""

    orders: list[tuple[str, Json]] = field(default_factory=list)  # (what the order shows, the order)
    stock: dict[str, int | None] = field(default_factory=dict)  # listing title → stock
    skipped: list[str] = field(default_factory=list)


def money(amount: int | None) -> str:
    """Cents as dollars (every listing of the demo is in USD), with integer arithmetic only."""
    if amount is None:
        return "-"
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def _problem(response: httpx.Response) -> str:
    """A short reason from an error answer: a problem's detail or title, Stripe's error message, or the text."""
    try:
        body = response.json()
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", response.text)
        return " ".join(text.split())[:160]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "title"):
            if body.get(key):
                return str(body[key])
    return str(body)[:160]


class Demo:
    """One run of the story. Every call is plain HTTP; `say` receives one readable line per step."""

    def __init__(self, target: Target, say: Say, client: httpx.AsyncClient) -> None:
        self.target = target
        self.say = say
        self.http = client
        self.sandbox_url = target.sandbox_url
        self.tag = secrets.token_hex(3)  # new sellers, listings and buyer emails on every run
        self.step = 0
        self.buyers = 0
        self.promotion_codes: bool | None = None  # learnt from the first hosted Checkout page
        self.result = Result()
        self.orders: list[Order] = []

    # ---- plumbing ------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.step += 1
        self.say(f"{self.step:>2}. {text}")

    async def call(
        self, method: str, url: str, what: str, expect: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
            raise DemoError(
                f"{what}: nothing answers at {origin} ({type(exc).__name__}); is the stack (`make run`) up?"
            ) from None
        if response.status_code not in expect:
            raise DemoError(
                f"{what}: {method} {urlsplit(url).path} answered {response.status_code}: {_problem(response)}"
            )
        return response

    async def api(self, method: str, path: str, what: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Json:
        response = await self.call(method, self.target.api_url + path, what, expect, **kwargs)
        body: Json = response.json()
        return body

    async def control(self, method: str, path: str, what: str, body: Json | None = None) -> Json:
        """The sandbox's control API (`/_sandbox/...`): what a test or a demo drives where no browser can."""
        response = await self.call(method, f"{self.sandbox()}/_sandbox{path}", what, json=body or {})
        answer: Json = response.json()
        return answer

    async def stripe(self, path: str, what: str, data: dict[str, str], account: str | None) -> Json:
        """A POST to Stripe's API on the sandbox, form-encoded as Stripe takes it, as the platform."""
        headers = {"Authorization": f"Bearer {self.target.stripe_key}"}
        if account:
            headers["Stripe-Account"] = account
        response = await self.call("POST", f"{self.sandbox()}/v1{path}", what, data=data, headers=headers)
        answer: Json = response.json()
        return answer

    def sandbox(self) -> str:
        if self.sandbox_url is None:
            raise DemoError("the sandbox's URL is not known yet; pass --sandbox-url")
        return self.sandbox_url

    async def until(
        self, probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], what: str, timeout: float = 30.0
    ) -> T:
        """Poll `probe` until `accept` holds: webhooks and the worker are asynchronous."""
        deadline = time.monotonic() + timeout
        while True:
            value = await probe()
            if accept(value):
                return value
            if time.monotonic() > deadline:
                raise DemoError(f"waited {timeout:.0f} s for {what}; is the worker running (`make run`)?")
            await asyncio.sleep(0.1)

    # ---- the stack -----------------------------------------------------------------------------
    async def preflight(self) -> None:
        ready = await self.call("GET", self.target.api_url + "/health/ready", "the API", expect=(200, 503))
        if ready.status_code != 200:
            raise DemoError(f"the API at {self.target.api_url} is not ready: {_problem(ready)}")
        if self.sandbox_url is not None:
            await self.check_sandbox()

    async def check_sandbox(self) -> None:
        response = await self.call(
            "GET", f"{self.sandbox()}/_sandbox/health", "the Stripe sandbox", expect=(200, 403, 404)
        )
        if response.status_code != 200:
            raise DemoError(
                f"{self.sandbox()} is not a Stripe sandbox with its control API on (HTTP {response.status_code}); "
                "the demo needs the sandbox `make run` starts"
            )

    async def learn_sandbox(self, hosted_url: str) -> None:
        """With only `--base-url`: the sandbox is where the API sends browsers (its hosted pages)."""
        if self.sandbox_url is None:
            self.sandbox_url = "{0.scheme}://{0.netloc}".format(urlsplit(hosted_url))
            await self.check_sandbox()

    # ---- sellers -------------------------------------------------------------------------------
    async def seller(self, name: str, slug: str, wanted: str) -> Seller:
        display = f"{name} {self.tag}"
        email = f"{slug}-{self.tag}@example.com"
        signup = await self.api(
            "POST",
            "/sellers",
            f"sign-up of {display}",
            expect=(201,),
            json={"display_name": display, "email": email, "country": "US", "account_profile": wanted},
        )
        auth = {"Authorization": f"Bearer {signup['token']}"}
        account = await self.api(
            "POST", "/sellers/me/stripe-account", f"{display}'s connected account", expect=(200, 201), headers=auth
        )
        profile = str(account["profile"])
        charge_type: ChargeType = "destination" if profile == "platform_managed" else "direct"
        seller = Seller(display, auth, str(account["account_id"]), profile, charge_type)
        chosen = signup["seller"]["account_profile"] is not None
        how = "chosen at sign-up" if chosen else "the platform's default"
        self.line(
            f"{display} signs up ({email}) and gets connected account {seller.account_id}: "
            f"{PROFILE_WORDS.get(profile, profile)}, {how} → {charge_type} charges"
        )
        if profile != wanted:
            note = (
                f"this stack does not let sellers choose their profile (ALLOW_SELLER_ACCOUNT_PROFILE is not true; "
                f"`make run` leaves it false): {display} is {profile.replace('_', '-')} too, so every order below "
                f"is a {charge_type} charge"
            )
            self.result.skipped.append(note)
            self.say(f"    note: {note}")
        await self.onboard(seller)
        return seller

    async def onboard(self, seller: Seller) -> None:
        link = await self.api(
            "POST",
            "/sellers/me/onboarding-link",
            f"{seller.name}'s onboarding link",
            expect=(201,),
            headers=seller.auth,
        )
        url = str(link["url"])
        await self.learn_sandbox(url)
        page = await self.call("GET", url, "the hosted onboarding page")
        match = re.search(r"<form method='post' action='([^']+)'", page.text)
        if match is None:
            raise DemoError(f"the hosted onboarding page at {url} shows no form")
        action = match.group(1)
        target = action if action.startswith("http") else self.sandbox() + action
        submitted = await self.call(
            "POST",
            target,
            "the onboarding form",
            expect=(302, 303),
            data={"url": "https://seller.example", "action": "complete"},
        )
        back = await self.call("GET", submitted.headers["location"], "the onboarding return URL", expect=(302, 303))
        landed = parse_qs(urlsplit(back.headers["location"]).query)

        async def state() -> Json:
            profile = await self.api("GET", "/sellers/me", f"{seller.name}'s profile", headers=seller.auth)
            account: Json = profile["connected_account"] or {}
            return account

        account = await self.until(
            state,
            lambda a: a.get("status") == "active" and all(v == "active" for v in a.get("capabilities", {}).values()),
            f"{seller.name}'s account to become active",
        )
        self.line(
            f"{seller.name} fills in the sandbox's hosted onboarding form; back on the seller page with "
            f"status={landed.get('status', ['?'])[0]} (charges {'on' if account['charges_enabled'] else 'off'}, "
            f"payouts {'on' if account['payouts_enabled'] else 'off'})"
        )

    async def list_item(self, seller: Seller, title: str) -> None:
        listing = await self.api(
            "POST",
            "/sellers/me/listings",
            f"{seller.name}'s listing",
            expect=(201,),
            headers=seller.auth,
            json={"title": f"{title} {self.tag}", "unit_amount": UNIT_AMOUNT, "currency": "usd", "stock": STOCK},
        )
        seller.listing_id, seller.listing_title = str(listing["id"]), str(listing["title"])
        self.line(f"{seller.name} lists “{seller.listing_title}” at {money(UNIT_AMOUNT)} USD, stock {listing['stock']}")

    async def stock(self, seller: Seller) -> int | None:
        listing = await self.api(
            "GET", f"/sellers/me/listings/{seller.listing_id}", "the listing's stock", headers=seller.auth
        )
        value: int | None = listing["stock"]
        return value

    # ---- buyers --------------------------------------------------------------------------------
    async def checkout(self, seller: Seller, label: str) -> Order:
        self.buyers += 1
        email = f"buyer{self.buyers}-{self.tag}@example.com"
        answer = await self.api(
            "POST",
            "/checkout",
            f"the checkout of the {label} order",
            expect=(201,),
            json={"lines": [{"listing_id": seller.listing_id, "quantity": 1}], "email": email},
        )
        order = Order(label, seller, email, str(answer["access_token"]), answer["order"])
        self.orders.append(order)
        body = order.body
        self.line(
            f"guest {email} checks out one “{seller.listing_title}”: order {order.short} {body['status']}, "
            f"{body['charge_type']} charge, total {money(body['total'])}, platform fee {money(body['application_fee'])}"
        )
        await self.learn_sandbox(order.checkout_url)
        page = await self.call("GET", order.checkout_url, "the hosted Checkout page")
        if self.promotion_codes is None:
            self.promotion_codes = f"{urlsplit(order.checkout_url).path}/promo'" in page.text
        return order

    async def pay_card(self, order: Order, card: str) -> httpx.Response:
        return await self.call(
            "POST",
            f"{order.checkout_url}/card",
            "paying on the hosted Checkout page",
            expect=(303, 402),
            data={"email": order.email, "card": card, "name": "Demo Buyer"},
        )

    def success_page(self, order: Order, redirect: httpx.Response) -> None:
        """Where the hosted page sends the browser: our success page, carrying the session id."""
        location = redirect.headers["location"]
        order.session_id = parse_qs(urlsplit(location).query).get("session_id", [""])[0]
        if not order.session_id:
            raise DemoError(f"the hosted page sent the browser to {location}, without a session id")

    async def verify(self, order: Order) -> Json:
        """What the success page does: `POST /orders/{id}/verify` with the guest's token and the session id."""
        return await self.api(
            "POST",
            f"/orders/{order.id}/verify",
            f"the success page of order {order.short}",
            headers=order.headers,
            json={"session_id": order.session_id},
        )

    async def order(self, order: Order) -> Json:
        return await self.api("GET", f"/orders/{order.id}", f"order {order.short}", headers=order.headers)

    async def until_status(self, order: Order, wanted: str, what: str) -> Json:
        return await self.until(lambda: self.order(order), lambda o: o["status"] == wanted, what)

    async def sales_of(self, order: Order) -> list[Json]:
        page = await self.api(
            "GET", "/me/notifications", "the seller's notifications", headers=order.seller.auth, params={"limit": 100}
        )
        items: list[Json] = page["items"]
        return [n for n in items if n["kind"] == "order.sale" and n["payload"].get("order_id") == order.id]

    async def delivered(self, order: Order) -> Json:
        """The sandbox's delivery of the session's `checkout.session.completed`, once an endpoint took it."""

        async def deliveries() -> list[Json]:
            query = {"type": "checkout.session.completed"}
            if (on := account_of(order.seller.charge_type, order.seller.account_id)) is not None:
                query["account"] = on
            answer = await self.call(
                "GET", f"{self.sandbox()}/_sandbox/deliveries", "the webhook deliveries", params=query
            )
            items: list[Json] = answer.json()["data"]
            return [
                d
                for d in items
                if json.loads(d["payload"])["data"]["object"]["id"] == order.session_id and d["status"] == "succeeded"
            ]

        found = await self.until(deliveries, bool, f"the webhook of order {order.short}")
        return found[0]

    # ---- the story -----------------------------------------------------------------------------
    async def success_page_first(self, seller: Seller) -> None:
        order = await self.checkout(seller, "success-page-first")
        await self.control("POST", "/faults/deliveries", "holding webhooks back", {"delay": HOLD_WEBHOOKS_SECONDS})
        try:
            redirect = await self.pay_card(order, GOOD_CARD)
            if redirect.status_code != 303:
                raise DemoError(f"card {GOOD_CARD} was refused on the hosted page: {_problem(redirect)}")
            self.success_page(order, redirect)
            self.line(
                f"card {GOOD_CARD} accepted; the sandbox holds its webhooks {HOLD_WEBHOOKS_SECONDS:.0f} s, so the "
                "browser's success page comes first"
            )
            answer = await self.verify(order)
        finally:
            await self.control("POST", "/faults/deliveries", "releasing webhooks", {"delay": 0.0})
        self.line(
            f"success page: POST /orders/{order.short}…/verify → {answer['status']}, "
            f"charged {money(answer['amount_paid'])}; stock of “{seller.listing_title}” now {await self.stock(seller)}"
        )
        delivery = await self.delivered(order)
        await self.until(lambda: self.sales_of(order), bool, f"the seller's sale notice of {order.short}")
        await asyncio.sleep(1.0)  # the worker handles the late event; let it, then look again
        after, sales = await self.order(order), await self.sales_of(order)
        path = urlsplit(str(delivery.get("url") or "")).path or "our webhook endpoint"
        self.line(
            f"then the webhook checkout.session.completed reaches {path} (HTTP "
            f"{(delivery.get('attempts') or [{}])[-1].get('status_code')}) and changes nothing: order still "
            f"{after['status']}, {seller.name}'s notifications list {len(sales)} sale (“{sales[0]['subject']}”)"
        )

    async def free_order(self, seller: Seller) -> None:
        if not self.promotion_codes:
            note = (
                "the 100%-off order: this stack's Checkout takes no promotion codes (CHECKOUT_ALLOW_PROMOTION_CODES "
                "is not true; `make run` leaves it false)"
            )
            self.result.skipped.append(note)
            self.line(f"skipped: {note}")
            return
        on = account_of(seller.charge_type, seller.account_id)
        where = f"on {seller.account_id}" if on else "on the platform"
        coupon = await self.stripe("/coupons", "creating a 100%-off coupon", {"percent_off": "100"}, on)
        code = f"FREE{self.tag.upper()}"
        params = {"promotion[type]": "coupon", "promotion[coupon]": str(coupon["id"]), "code": code}
        await self.stripe("/promotion_codes", "creating a promotion code", params, on)
        self.line(f"Stripe API: coupon {coupon['id']} (100% off) and promotion code {code} created {where}")
        order = await self.checkout(seller, "100%-off")
        await self.call(
            "POST", f"{order.checkout_url}/promo", f"applying {code}", expect=(302, 303), data={"code": code}
        )
        page = await self.call("GET", order.checkout_url, "the hosted Checkout page")
        if "No payment is required" not in page.text:
            raise DemoError(f"the hosted page took {code} but still asks for a payment")
        redirect = await self.call(
            "POST",
            f"{order.checkout_url}/free",
            "completing the free order",
            expect=(303,),
            data={"email": order.email},
        )
        self.success_page(order, redirect)
        answer = await self.verify(order)
        self.line(
            f"code {code} applied on the hosted page (total 0.00, “No payment is required”), order completed; "
            f"success page → {answer['status']}, charged {money(answer['amount_paid'])}, "
            f"discount {money(answer['amount_discount'])}"
        )

    async def declined_then_good(self, seller: Seller) -> None:
        order = await self.checkout(seller, "declined-then-paid")
        refused = await self.pay_card(order, DECLINED_CARD)
        if refused.status_code != 402:
            raise DemoError(f"card {DECLINED_CARD} was not declined (HTTP {refused.status_code})")
        message = re.search(r"role='alert'>([^<]*)<", refused.text)
        pending = await self.order(order)
        self.line(
            f"card {DECLINED_CARD} declined on the hosted page (“{message.group(1) if message else 'declined'}”); "
            f"order {order.short} stays {pending['status']}"
        )
        redirect = await self.pay_card(order, GOOD_CARD)
        if redirect.status_code != 303:
            raise DemoError(f"card {GOOD_CARD} was refused on the hosted page: {_problem(redirect)}")
        self.success_page(order, redirect)
        answer = await self.verify(order)
        self.line(
            f"the buyer tries {GOOD_CARD}: success page → {answer['status']}, charged {money(answer['amount_paid'])}"
        )

    async def bank_debit(self, seller: Seller) -> None:
        order = await self.checkout(seller, "bank-debit")
        redirect = await self.call(
            "POST", f"{order.checkout_url}/bank", "paying by bank debit", expect=(303,), data={"email": order.email}
        )
        self.success_page(order, redirect)
        answer = await self.verify(order)
        self.line(
            f"the buyer pays by US bank debit on the hosted page: success page → {answer['status']} "
            f"(the money is on its way); stock still {await self.stock(seller)}"
        )
        on = account_of(seller.charge_type, seller.account_id)
        await self.control(
            "POST", f"/checkout/sessions/{order.session_id}/settle", "settling the bank debit", {"stripe_account": on}
        )
        started = time.monotonic()
        paid = await self.until_status(order, "paid", f"order {order.short} to be paid after the debit settled")
        self.line(
            f"sandbox control API: the debit settles; the webhook makes order {order.short} {paid['status']} "
            f"{time.monotonic() - started:.1f} s later; stock now {await self.stock(seller)}"
        )

    async def oversell(self, seller: Seller) -> None:
        self.line(
            f"two guests want the last “{seller.listing_title}” (stock {await self.stock(seller)}): checkout only "
            "checks the stock, the payment's confirmation takes it"
        )
        first = await self.checkout(seller, "last-unit")
        second = await self.checkout(seller, "oversold-refunded")
        for order in (first, second):
            redirect = await self.pay_card(order, GOOD_CARD)
            if redirect.status_code != 303:
                raise DemoError(f"card {GOOD_CARD} was refused on the hosted page: {_problem(redirect)}")
            self.success_page(order, redirect)
            answer = await self.verify(order)
            self.line(
                f"{order.email} pays {GOOD_CARD}: success page → {answer['status']}; "
                f"stock now {await self.stock(seller)}"
            )

        def refunded(o: Json) -> bool:
            # Made with Stripe, and Stripe's answer is final (a refund may stay `pending` a while).
            return bool(o["refunds"]) and all(r["stripe_status"] in FINAL_REFUND for r in o["refunds"])

        late = await self.until(lambda: self.order(second), refunded, f"the refund of order {second.short}")
        refund = late["refunds"][0]
        self.line(
            f"order {second.short} is oversold: the worker refunds {money(refund['amount'])} in full with Stripe "
            f"(Stripe's refund status: {refund['stripe_status']})"
        )

    async def run(self) -> Result:
        await self.preflight()
        where = f"sandbox {self.sandbox_url}" if self.sandbox_url else "its sandbox"
        self.say(f"marketplace demo (run {self.tag}) against the API at {self.target.api_url} and {where}")
        ada = await self.seller("Ada's Pottery", "ada", "platform_managed")
        bo = await self.seller("Bo's Prints", "bo", "seller_managed")
        await self.list_item(ada, "Hand-thrown mug")
        await self.list_item(bo, "Risograph print")
        await self.success_page_first(ada)
        await self.success_page_first(bo)
        await self.free_order(bo)
        await self.declined_then_good(ada)
        await self.bank_debit(bo)
        await self.oversell(ada)
        self.result.orders = [(o.label, await self.order(o)) for o in self.orders]
        self.result.stock = {s.listing_title: await self.stock(s) for s in (ada, bo)}
        self.table()
        return self.result

    def table(self) -> None:
        self.say("")
        self.say(
            f"{'order':<9} {'story':<20} {'charge':<12} {'status':<10} {'total':>7} {'fee':>6} {'paid':>7}  refund"
        )
        for label, body in self.result.orders:
            refunds = body.get("refunds") or []
            # Stripe's status once Stripe has the refund (what the line above said); ours until then.
            refund = ", ".join(f"{money(r['amount'])} {r['stripe_status'] or r['status']}" for r in refunds) or "-"
            # Once paid, the fee Stripe took (none on a 100 %-off order); before, the fee as decided.
            fee = body.get("application_fee_charged")
            fee = body["application_fee"] if fee is None else fee
            self.say(
                f"{str(body['id'])[:8]:<9} {label:<20} {body['charge_type']:<12} {body['status']:<10} "
                f"{money(body['total']):>7} {money(fee):>6} {money(body.get('amount_paid')):>7}  "
                f"{refund}"
            )
        self.say("")
        self.say(f"{'stock':>5}  listing (each started with {STOCK})")
        for title, stock in self.result.stock.items():
            self.say(f"{'unlimited' if stock is None else stock:>5}  {title}")
        if self.result.skipped:
            self.say("")
            for note in self.result.skipped:
                self.say(f"not shown: {note}")
            self.say(
                "to see it all: stop `make run`, start it again as "
                "`ALLOW_SELLER_ACCOUNT_PROFILE=true CHECKOUT_ALLOW_PROMOTION_CODES=true make run`, run the demo again"
            )


async def run_demo(target: Target, say: Say = print) -> Result:
    """Walk the story against `target`, telling `say` each step; raises `DemoError` on a failed step."""
    async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as client:
        return await Demo(target, say, client).run()


def main(base_url: str | None = None, sandbox_url: str | None = None) -> int:
    """The `marketplace demo` command: 0 when the whole story ran; `DemoError` for the CLI's one line."""
    target = resolve_target(base_url, sandbox_url)
    asyncio.run(run_demo(target, lambda text: print(text, flush=True)))
    return 0
