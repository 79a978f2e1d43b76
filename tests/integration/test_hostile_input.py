"""Hostile input: every request here answers a 4xx problem document, never a 5xx, and stores nothing.

Found by hand and by schemathesis (tests/integration/test_schemathesis.py); docs/problems.md ("Hostile
input") says which mechanism refuses each kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from marketplace.auth.service import create_principal
from marketplace.auth.tables import Principal, Role
from marketplace.sellers.tables import Seller
from tests.conftest import PLATFORM_SECRET, free_port
from tests.support.api_process import api_process, stripe_signature
from webhooks.tables import StripeEvent

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
TYPE = "urn:marketplace:problem:"


async def _counts() -> tuple[int, int, int]:
    return await Seller.count(), await Principal.count(), await StripeEvent.count()


@pytest.fixture
async def nothing_stored(client: httpx.AsyncClient) -> AsyncIterator[None]:
    """Asserts after the test that no seller, principal or event row was written during it."""
    before = await _counts()
    yield
    assert await _counts() == before


@pytest.fixture(scope="module")
async def admin(client: httpx.AsyncClient) -> dict[str, str]:
    _, token = await create_principal(Role.admin, "hostile input admin")
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if slug is not None:
        assert body["type"] == TYPE + slug, body
    return body


def _signup(**fields: Any) -> dict[str, Any]:
    return {"display_name": "Hostile", "email": f"h-{uuid.uuid4().hex[:8]}@example.test"} | fields


@pytest.mark.usefixtures("nothing_stored")
async def test_json_nested_100000_deep_is_a_400_before_decoding(client: httpx.AsyncClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for body in (deep, '{"display_name": ' + deep + "}", '{"a":' * 50_000 + "1" + "}" * 50_000):
        response = await client.post("/sellers", content=body, headers={"Content-Type": "application/json"})
        problem = assert_problem(response, 400, "malformed-body")
        assert "deep" in problem["detail"]


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"])
async def test_a_control_character_in_any_string_field_is_a_400(client: httpx.AsyncClient, char: str) -> None:
    for route, body in [
        ("/sellers", _signup(display_name=f"evil{char}name")),
        ("/sellers", _signup(email=f"a{char}b@example.test")),
        ("/buyers", _signup(display_name=f"{char}")),
    ]:
        response = await client.post(route, json=body)
        problem = assert_problem(response, 400, "validation-error")
        assert problem["errors"], problem


@pytest.mark.usefixtures("nothing_stored")
async def test_nul_anywhere_in_a_json_body_is_refused_even_in_a_key(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/admin/events/replay", content='{"status": "dead", "type": "a\\u0000b"}', headers=admin | _json()
    )
    assert_problem(response, 400, "validation-error")
    response = await client.post("/sellers", content='{"display_name\\u0000": "x"}', headers=_json())
    assert_problem(response, 400, "validation-error")


@pytest.mark.usefixtures("nothing_stored")
async def test_a_body_of_the_wrong_types_is_refused_not_converted(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A string is not a number and 0 is not false (as the OpenAPI document says); 2.0 is an integer."""
    for body, key in [
        ({"status": "dead", "limit": "5"}, "limit"),
        ({"status": "dead", "limit": True}, "limit"),
        ({"status": "dead", "limit": 5.5}, "limit"),
    ]:
        problem = assert_problem(await client.post("/admin/events/replay", json=body, headers=admin), 400)
        assert problem["errors"][0]["key"] == key, problem
    assert_problem(await client.post("/sellers", json=_signup(display_name=12345)), 400, "validation-error")
    # Not JSON at all, though its start is a value of the wrong type (`6`, then garbage): a 400 too.
    for text in ("6Z", "[1] x", '"a" b'):
        response = await client.post("/sellers", content=text, headers={"Content-Type": "application/json"})
        assert_problem(response, 400)
    integral = await client.post("/admin/events/replay", json={"status": "dead", "limit": 5.0}, headers=admin)
    assert integral.status_code == 202, integral.text


async def test_an_escaped_backslash_before_u0000_is_text(client: httpx.AsyncClient) -> None:
    """The NUL scan reads JSON escapes: `\\\\u0000` is a backslash and "u0000", not a NUL."""
    response = await client.post(
        "/sellers", content='{"display_name": "a\\\\u0000", "email": "x@y.test"}', headers=_json()
    )
    assert response.status_code == 201, response.text  # an escaped backslash followed by "u0000": no NUL
    assert response.json()["seller"]["display_name"] == "a\\u0000"


@pytest.mark.usefixtures("nothing_stored")
async def test_an_offset_beyond_any_page_is_a_400(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for query in ("offset=" + "9" * 30, "offset=-1", "limit=" + "9" * 30, "offset=1000001"):
        response = await client.get(f"/admin/sellers?{query}", headers=admin)
        assert_problem(response, 400, "validation-error")
    assert (await client.get("/admin/sellers?offset=1000000", headers=admin)).status_code == 200


@pytest.mark.usefixtures("nothing_stored")
async def test_hostile_path_and_query_strings_are_a_400(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for path in ("/admin/events/%00", "/admin/events/a%01b", "/admin/events/" + "e" * 256):
        assert_problem(await client.get(path, headers=admin), 400, "validation-error")
        assert_problem(await client.post(path + "/replay", headers=admin), 400, "validation-error")
    assert_problem(await client.get("/admin/events/evt_missing", headers=admin), 404, "not-found")
    for query in ("type=a%00b", "cursor=%00", "cursor=" + "A" * 201):
        assert_problem(await client.get(f"/admin/events?{query}", headers=admin), 400, "validation-error")
    for query in ("cursor=%00", "cursor=" + "A" * 201):
        assert_problem(await client.get(f"/admin/outbox?{query}", headers=admin), 400, "validation-error")
    # A cursor not of the declared format (an old base64 one naming an event id with a NUL) is refused by
    # the format; any cursor of the format is a position, and gets a page (here: nothing after it).
    import base64

    forged = base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|evt\x00x").decode().rstrip("=")
    assert_problem(await client.get(f"/admin/events?cursor={forged}", headers=admin), 400, "validation-error")
    page = await client.get("/admin/events?cursor=0.evt_none", headers=admin)
    assert page.status_code == 200, page.text
    assert page.json()["items"] == []


def _event(**fields: Any) -> dict[str, Any]:
    event = {
        "id": f"evt_hostile_{uuid.uuid4().hex[:12]}",
        "object": "event",
        "type": "test.hostile",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {}},
    }
    return event | fields


def _signed(body: str) -> dict[str, str]:
    return {"Stripe-Signature": stripe_signature(body, PLATFORM_SECRET), "Content-Type": "application/json"}


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    "fields",
    [
        {"created": 10**15},
        {"created": -(10**12)},
        {"created": 2**64},
        {"created": -1},
        {"id": "evt_" + "x" * 252},
        {"type": "t" * 129},
        {"id": "evt_\x00nul"},
        {"type": "a\x00b"},
        {"account": "acct_" + "x" * 251},
        {"api_version": "\x00"},
    ],
    ids=repr,
)
async def test_a_signed_event_out_of_bounds_is_a_400_invalid_webhook(
    client: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    if "account" in fields:
        route = "/webhooks/stripe/connect"
        from tests.conftest import CONNECT_SECRET

        body = json.dumps(_event(**fields))
        headers = {"Stripe-Signature": stripe_signature(body, CONNECT_SECRET)}
    else:
        route, body = "/webhooks/stripe", json.dumps(_event(**fields))
        headers = _signed(body)
    response = await client.post(route, content=body, headers=headers)
    assert_problem(response, 400, "invalid-webhook")


@pytest.mark.usefixtures("nothing_stored")
async def test_a_signed_event_nested_too_deep_is_a_400(client: httpx.AsyncClient) -> None:
    body = json.dumps(_event(data={"object": {}})).replace('{"object": {}}', "[" * 100_000 + "]" * 100_000)
    assert_problem(await client.post("/webhooks/stripe", content=body, headers=_signed(body)), 400, "invalid-webhook")


async def test_the_bounds_still_take_a_stripe_event_at_its_limits(client: httpx.AsyncClient) -> None:
    event = _event(id="evt_" + "x" * 251, type="t" * 128, created=253402300799)
    body = json.dumps(event)
    headers = _signed(body) | {"Content-Type": "application/json; charset=utf-8"}  # what Stripe sends
    response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert await StripeEvent.exists().where(StripeEvent.id == event["id"])


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx"],
)
async def test_a_json_route_refuses_other_media_types_with_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    body = json.dumps(_signup()).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = client.build_request("POST", "/sellers", content=body, headers=headers)
    if content_type is None:
        request.headers.pop("Content-Type", None)
    assert ("content-type" in request.headers) == (content_type is not None)
    assert_problem(await client.send(request), 415, "unsupported-media-type")


async def test_json_media_types_are_taken(client: httpx.AsyncClient) -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        body = json.dumps(_signup())
        response = await client.post("/sellers", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 201, (content_type, response.text)


async def test_a_body_shorter_than_its_content_length_is_answered_and_closed(settings: Any) -> None:
    """A real `marketplace serve`: the client promises 100 bytes, sends 10 and waits. The server answers
    408 and closes the connection (its body timeout cuts the client), and serves the next request."""
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url.reveal(),
        "REDIS_URL": settings.redis_url.reveal(),
        "STRIPE_SECRET_KEY": "sk_test_slow_body",
        "STRIPE_WEBHOOK_SECRET_PLATFORM": PLATFORM_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    port = free_port()
    async with api_process(env, port) as api:
        for path in ("/sellers", "/webhooks/stripe"):
            before = await _counts()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Stripe-Signature: t=1,v1=00\r\nContent-Length: 100\r\n\r\n"
            )
            writer.write(head.encode() + b'{"display_')
            await writer.drain()
            # read() returns at EOF: the server closed the connection. The bound only ends a wait for a
            # server that never cuts the client; how soon it does is its body timeout plus the scheduler.
            answer = await asyncio.wait_for(reader.read(), timeout=50)
            writer.close()
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 408 Request Timeout", answer
            assert b"content-type: application/problem+json" in rest.lower(), answer
            assert json.loads(rest.partition(b"\r\n\r\n")[2])["type"] == TYPE + "request-timeout"
            assert await _counts() == before
        assert (await api.http.get("/health/live")).status_code == 200


# Names other people are shown (marketplace.lib.text) -----------------------------------------------------

INVISIBLE = ["\u200b\u200b\u200b", " \u200c\u2060\ufeff ", "\u3164", "\u2800", "\u0301", "\U000e0041\U000e0042"]
REORDERED = ["Shop \u202egnp.exe", "\u2067abc\u2069", "a\u200fb", "x\u061cy", "\u202a\u202bz\u202c"]


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("text", INVISIBLE + REORDERED)
async def test_a_name_of_nothing_visible_or_with_bidi_controls_is_refused_at_sign_up(
    client: httpx.AsyncClient, text: str
) -> None:
    """A shop (seller) or buyer name that would show as a blank, or display as another text, stores nothing."""
    for route in ("/sellers", "/buyers"):
        problem = assert_problem(await client.post(route, json=_signup(display_name=text)), 400, "validation-error")
        assert [e["key"] for e in problem["errors"]] == ["display_name"], problem


@pytest.mark.parametrize("text", INVISIBLE + REORDERED)
async def test_a_listing_title_or_description_of_nothing_visible_or_with_bidi_controls_is_refused(
    client: httpx.AsyncClient, text: str
) -> None:
    from marketplace.listings.tables import Listing

    signup = await client.post("/sellers", json=_signup())
    assert signup.status_code == 201, signup.text
    auth = {"Authorization": f"Bearer {signup.json()['token']}"}
    good = {"title": "Hand-thrown mug", "unit_amount": 2500, "currency": "usd", "description": "Blue."}
    before = await Listing.count()
    for field in ("title", "description"):
        response = await client.post("/sellers/me/listings", json=good | {field: text}, headers=auth)
        problem = assert_problem(response, 400, "validation-error")
        assert [e["key"] for e in problem["errors"]] == [field], problem
    assert await Listing.count() == before
    made = await client.post("/sellers/me/listings", json=good, headers=auth)
    assert made.status_code == 201, made.text
    for field in ("title", "description"):
        response = await client.patch(f"/sellers/me/listings/{made.json()['id']}", json={field: text}, headers=auth)
        assert_problem(response, 400, "validation-error")
    shown = await client.get(f"/sellers/me/listings/{made.json()['id']}", headers=auth)
    assert (shown.json()["title"], shown.json()["description"]) == ("Hand-thrown mug", "Blue.")


async def test_visible_text_with_invisible_characters_among_it_is_taken(client: httpx.AsyncClient) -> None:
    """A joiner inside an emoji sequence, an Arabic or Hebrew name, an empty description: all fine."""
    for name in (
        "\U0001f469\u200d\U0001f52c Lab",
        "\u0645\u062a\u062c\u0631 \u0646\u0648\u0631",
        "\u05d7\u05e0\u05d5\u05ea",
    ):
        response = await client.post("/sellers", json=_signup(display_name=name))
        assert response.status_code == 201, response.text
        assert response.json()["seller"]["display_name"] == name
    signup = await client.post("/sellers", json=_signup())
    auth = {"Authorization": f"Bearer {signup.json()['token']}"}
    listing = {"title": "Mug \u2615", "unit_amount": 2500, "currency": "usd", "description": ""}
    assert (await client.post("/sellers/me/listings", json=listing, headers=auth)).status_code == 201


# Email addresses (marketplace.lib.text.normalize_email) --------------------------------------------------

BAD_EMAILS = [
    "\u200b\u200b\u200b@example.com",
    "a\u2028b@example.com",
    "\ufffe@example.com",
    "buyer@[127.0.0.1]",
    "buyer@[IPv6:::1]",
    '"two words"@example.com',
    "a..b@example.com",
    "buyer@localhost",
    "buyer@host.local",
    "b\u00fcyer@example.com",
]


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("email", BAD_EMAILS)
async def test_an_address_no_mail_system_takes_is_refused_everywhere_before_anything_is_stored(
    client: httpx.AsyncClient, email: str
) -> None:
    from marketplace.orders.tables import Order

    orders = await Order.count()
    for route, body in [
        ("/sellers", _signup(email=email)),
        ("/buyers", _signup(email=email)),
        ("/checkout", {"lines": [{"listing_id": str(uuid.uuid4()), "quantity": 1}], "email": email}),
    ]:
        problem = assert_problem(await client.post(route, json=body), 400, "validation-error")
        assert [e["key"] for e in problem["errors"]] == ["email"], (route, problem)
    assert await Order.count() == orders


async def test_an_address_is_stored_with_its_domain_in_lowercase(client: httpx.AsyncClient) -> None:
    local = f"Mixed.Case+{uuid.uuid4().hex[:8]}"
    for route, role in (("/sellers", "seller"), ("/buyers", "buyer")):
        response = await client.post(route, json=_signup(email=f"{local}@Example.COM"))
        assert response.status_code == 201, response.text
        assert response.json()[role]["email"] == f"{local}@example.com"
        me = await client.get(f"{route}/me", headers={"Authorization": f"Bearer {response.json()['token']}"})
        stored = me.json()["seller"]["email"] if role == "seller" else me.json()["email"]
        assert stored == f"{local}@example.com"
