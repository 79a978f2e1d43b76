"""The OpenAPI document: operation ids, the bearer scheme on every guarded route, problem responses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute

from connect.currencies import SUPPORTED_CURRENCIES, amount_step, charge_amount_problem, minimum_charge
from marketplace.lib.schemas import EVENT_CURSOR, MULTI_LINE, NOT_BLANK_LINE, ROW_CURSOR, CursorFormat
from marketplace.lib.settings import Settings
from marketplace.server.app import create_app
from tests.support.factories import BuyerSignupFactory, SellerSignupFactory, payload

Client = httpx.AsyncClient
METHODS = {"get", "put", "post", "delete", "patch"}
PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


@pytest.fixture(scope="module")
async def schema(client: Client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def guarded_operations(settings: Settings) -> set[tuple[str, str]]:
    """(path, method) of every documented route a guard protects, read from the app's own routes."""
    app = create_app(settings)
    return {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.resolve_guards() and handler.include_in_schema
        for method in handler.http_methods
    }


def test_every_operation_has_a_unique_operation_id(schema: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for operation in operations(schema).values()]
    assert all(ids), [key for key, op in operations(schema).items() if not op.get("operationId")]
    assert len(ids) == len(set(ids))


def test_every_guarded_operation_declares_the_bearer_scheme_and_no_other_does(
    schema: dict[str, Any], settings: Settings
) -> None:
    assert schema["components"]["securitySchemes"]["BearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from sign-up or `marketplace admin create-token`.",
    }
    documented = operations(schema)
    guarded = guarded_operations(settings)
    assert len(guarded) >= 10  # sellers, buyers, admin sellers, admin events: all of them, not one
    assert guarded <= set(documented)
    # A guest, or a bearer token:
    optional = {("/checkout", "post"), ("/orders/{order_id}", "get"), ("/orders/{order_id}/verify", "post")}
    for key, operation in documented.items():
        if key in guarded:
            assert operation.get("security") == [{"BearerToken": []}], key
            assert {"401", "403"} <= set(operation["responses"]), key
        elif key in optional:
            assert operation.get("security") == [{}, {"BearerToken": []}], key  # anonymous, or a token
            assert "401" in operation["responses"], key  # a token that is not one is refused, not ignored
        else:
            assert not operation.get("security"), key  # a public route does not ask for a token


def test_error_responses_are_problem_documents(schema: dict[str, Any], settings: Settings) -> None:
    problem = schema["components"]["schemas"]["ProblemDetails"]
    assert problem["required"] == ["type", "title", "status"]
    assert {"type", "title", "status", "detail", "instance", "request_id", "errors"} <= set(problem["properties"])
    guarded = guarded_operations(settings)
    for (path, method), operation in operations(schema).items():
        responses = operation["responses"]
        assert "default" in responses, (path, method)
        for status, response in responses.items():
            if status == "default" or int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, method, status)
                assert response["content"]["application/problem+json"]["schema"] == PROBLEM_REF
                assert response["description"]
        names_an_object = "{" in path or "me" in path.split("/")
        if (path, method) in guarded and names_an_object:
            assert {"401", "403", "404"} <= set(responses), (path, method)
        if "requestBody" in operation:
            assert "400" in responses, (path, method)
        if "{" in path and (path, method) in guarded:
            assert {"400", "401", "403", "404"} <= set(responses), (path, method)
    sign_up = schema["paths"]["/buyers"]["post"]["responses"]
    assert "Retry-After" in sign_up["503"]["headers"]
    assert "WWW-Authenticate" in schema["paths"]["/buyers/me"]["get"]["responses"]["401"]["headers"]
    ready = schema["paths"]["/health/ready"]["get"]["responses"]["503"]
    assert ready["content"]["application/problem+json"]["example"]["type"] == "urn:marketplace:problem:not-ready"


def test_every_operation_has_one_declared_tag_a_summary_and_a_description(schema: dict[str, Any]) -> None:
    """Swagger UI lists an operation once per tag: one tag each, declared (with a description) at the top."""
    declared = {tag["name"]: tag.get("description") for tag in schema["tags"]}
    assert all(declared.values()), declared
    assert set(declared) == {
        "sellers",
        "listings",
        "buyers",
        "checkout",
        "orders",
        "notifications",
        "webhooks",
        "admin",
        "health",
    }
    used: set[str] = set()
    for (path, method), operation in operations(schema).items():
        assert len(operation.get("tags", [])) == 1, (path, method, operation.get("tags"))
        assert operation["tags"][0] in declared, (path, method)
        assert operation.get("summary"), (path, method)
        assert operation.get("description"), (path, method)
        used.add(operation["tags"][0])
        if path.startswith("/admin/"):
            assert operation["tags"] == ["admin"], (path, method)
    assert used == set(declared)  # no tag declared for nothing
    assert schema["info"]["contact"]["name"]


async def test_the_statuses_the_api_answers_are_the_documented_ones(client: Client, schema: dict[str, Any]) -> None:
    """Real error answers of a guarded route and a sign-up, each documented for its operation."""
    buyer_me = schema["paths"]["/buyers/me"]["get"]["responses"]
    seller = (await client.post("/sellers", json=payload(SellerSignupFactory))).json()
    answers = {
        (await client.get("/buyers/me")).status_code,  # no token
        (await client.get("/buyers/me", headers={"Authorization": f"Bearer {seller['token']}"})).status_code,
    }
    assert answers == {401, 403}
    assert {str(status) for status in answers} <= set(buyer_me)
    malformed = await client.post("/buyers", content=b"{", headers={"content-type": "application/json"})
    invalid = await client.post("/buyers", json={**payload(BuyerSignupFactory), "email": 3})
    assert {malformed.status_code, invalid.status_code} == {400}
    assert "400" in schema["paths"]["/buyers"]["post"]["responses"]


async def test_webhook_refusals_and_account_creation_are_documented(client: Client, schema: dict[str, Any]) -> None:
    """A refused delivery answers a 400 problem its operation documents (with its type); a store
    outage is documented as `event-store-unavailable`; a newly created account as 201."""
    refused = await client.post("/webhooks/stripe", content=b"{}", headers={"content-type": "application/json"})
    assert refused.status_code == 400
    slug = refused.json()["type"].removeprefix("urn:marketplace:problem:")
    for path in ("/webhooks/stripe", "/webhooks/stripe/connect"):
        responses = schema["paths"][path]["post"]["responses"]
        assert f"`{slug}`" in responses["400"]["description"]
        assert "`webhook-too-large`" in responses["400"]["description"]
        assert "`event-store-unavailable`" in responses["503"]["description"]
    created = schema["paths"]["/sellers/me/stripe-account"]["post"]["responses"]
    assert {"200", "201"} <= set(created)
    assert created["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/ConnectedAccountOut")


async def test_an_unknown_onboarding_state_redirects_to_the_seller_page(client: Client) -> None:
    response = await client.get(f"/sellers/onboarding/{uuid.uuid4()}/refresh")
    assert response.status_code == 303
    assert "onboarding=link_expired" in response.headers["location"]


def test_onboarding_redirects_are_documented_with_the_status_they_answer(schema: dict[str, Any]) -> None:
    for action in ("refresh", "return"):
        responses = schema["paths"][f"/sellers/onboarding/{{link_state}}/{action}"]["get"]["responses"]
        assert "303" in responses
        assert "location" in {name.lower() for name in responses["303"]["headers"]}
        assert not [status for status in responses if status.startswith("2")]


# ---- the document states what the decoder checks (docs/problems.md, "Hostile input") -------------------

PAGED = {
    ("/admin/events", EVENT_CURSOR),
    ("/admin/outbox", ROW_CURSOR),
    ("/sellers/me/listings", ROW_CURSOR),
    ("/sellers/me/orders", ROW_CURSOR),
    ("/buyers/me/orders", ROW_CURSOR),
    ("/listings", ROW_CURSOR),
}


def _parameter(schema: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    parameters = schema["paths"][path]["get"]["parameters"]
    found: dict[str, Any] = next(p["schema"] for p in parameters if p["name"] == name)
    return found


@pytest.mark.parametrize(("path", "cursor"), sorted(PAGED, key=lambda p: p[0]), ids=[p for p, _ in sorted(PAGED)])
async def test_a_page_cursor_has_the_codecs_format_and_every_string_of_it_decodes(
    client: Client, schema: dict[str, Any], path: str, cursor: CursorFormat[Any]
) -> None:
    declared = _parameter(schema, path, "cursor")
    assert (declared["pattern"], declared["minLength"], declared["maxLength"]) == (
        cursor.pattern,
        cursor.min_length,
        cursor.max_length,
    )
    # The shortest and longest strings of the pattern, and a handed-out one, are cursors: a page, not a 400.
    key = "a" * cursor.key_length[1] if cursor is EVENT_CURSOR else "f" * 32
    shortest = "0." + ("e" if cursor is EVENT_CURSOR else "0" * 32)
    for sent in (shortest, "9" * 16 + "." + key, cursor.encode(datetime.now(UTC), cursor.parse_key(key))):
        assert len(sent) <= cursor.max_length
        assert cursor.decode(sent) is not None, sent
    for refused in ("0", "0.", "A" * 40, shortest + "\n", "-1." + key):
        assert cursor.decode(refused) is None, refused
    if path == "/listings":  # public: the route itself answers a page for any of them
        for sent in (shortest, "9" * 16 + "." + key):
            response = await client.get(path, params={"cursor": sent})
            assert response.status_code == 200, response.text


def test_currencies_are_an_enum_of_the_supported_ones(schema: dict[str, Any]) -> None:
    supported = sorted(SUPPORTED_CURRENCIES)
    components = schema["components"]["schemas"]
    for name in ("ListingCreate", "ListingUpdate"):
        assert sorted(components[name]["properties"]["currency"]["enum"]) == sorted(
            supported + [c.upper() for c in supported]
        )
    browse = _parameter(schema, "/listings", "currency")
    assert set(browse["enum"]) - {None} == {*supported, *(c.upper() for c in supported)}
    for field in ("fixed", "minimum", "maximum"):
        amounts = components["FeeOverrideIn"]["properties"][field]["anyOf"][0]
        assert amounts["propertyNames"] == {"enum": supported}  # fee policies: Stripe's lowercase only
        assert amounts["additionalProperties"]["minimum"] == 0
        assert amounts["properties"]["kwd"]["multipleOf"] == 10


def test_bounds_of_zero_and_text_rules_are_stated(schema: dict[str, Any]) -> None:
    """Litestar drops a bound of 0 on an optional field (openapi_rules.bodies_as_decoded puts it back)."""
    components = schema["components"]["schemas"]
    assert components["ListingUpdate"]["properties"]["stock"]["anyOf"][0]["minimum"] == 0
    assert components["FeeOverrideIn"]["properties"]["basis_points"]["anyOf"][0]["minimum"] == 0
    assert components["ListingCreate"]["properties"]["title"]["pattern"] == NOT_BLANK_LINE
    assert components["ListingCreate"]["properties"]["description"]["pattern"] == MULTI_LINE


def test_a_listings_amount_suits_its_currency_in_the_schema(schema: dict[str, Any]) -> None:
    """One rule per (minimum charge, step): the lowest amount the schema allows in each currency is the
    one `connect.currencies` takes, and one less (or off the step) is refused by both."""
    rules = schema["components"]["schemas"]["ListingCreate"]["anyOf"]
    for code in SUPPORTED_CURRENCIES:
        (rule,) = [r for r in rules if code in r["properties"]["currency"]["enum"]]
        amount = rule["properties"]["unit_amount"]
        assert amount["minimum"] == minimum_charge(code)
        assert amount.get("multipleOf", 1) == amount_step(code)
        assert charge_amount_problem(minimum_charge(code), code) is None
        assert charge_amount_problem(minimum_charge(code) - amount_step(code), code) is not None


def test_the_checkout_body_says_who_must_give_an_email(schema: dict[str, Any]) -> None:
    checkout = schema["components"]["schemas"]["CheckoutIn"]
    assert "guest" in checkout["description"]
    assert "Required for a guest" in checkout["properties"]["email"]["description"]
    responses = schema["paths"]["/checkout"]["post"]["responses"]
    assert {"400", "401", "403", "409", "422"} <= set(responses)
