"""Accounts, capabilities, account links and the onboarding page, login links, deauthorization."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from sandbox.control import SandboxControl
from sandbox.server import RunningSandbox

from .helpers import error_of, onboarded_account


async def test_create_with_controller_properties(client: stripe.StripeClient) -> None:
    acct = await client.v1.accounts.create_async(
        params={
            "controller": {
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "stripe_dashboard": {"type": "express"},
            },
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "email": "s@example.com",
            "metadata": {"seller_id": "7"},
        },
        options={"idempotency_key": "account:7"},
    )
    assert acct.id.startswith("acct_")
    assert acct.type == "express"
    assert acct.controller is not None
    assert acct.controller.stripe_dashboard is not None
    assert acct.controller.stripe_dashboard.type == "express"
    assert acct.capabilities is not None
    assert acct.capabilities.to_dict() == {"card_payments": "inactive", "transfers": "inactive"}
    assert (acct.charges_enabled, acct.payouts_enabled, acct.details_submitted) == (False, False, False)
    assert acct.requirements is not None
    assert "tos_acceptance.date" in (acct.requirements.currently_due or [])
    assert acct.requirements.disabled_reason == "requirements.past_due"
    assert acct.default_currency == "usd"


async def test_legacy_type_and_conflicts(client: stripe.StripeClient) -> None:
    std = await client.v1.accounts.create_async(params={"type": "standard", "country": "FR"})
    assert std.controller is not None
    assert std.controller.fees is not None
    assert (std.type, std.controller.fees.payer, std.default_currency) == ("standard", "account", "eur")
    custom = await client.v1.accounts.create_async(
        params={"type": "custom", "capabilities": {"transfers": {"requested": True}}}
    )
    assert custom.controller is not None
    assert custom.controller.requirement_collection == "application"
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.accounts.create_async(
            params={"type": "express", "controller": {"stripe_dashboard": {"type": "express"}}}
        )
    assert info.value.param == "controller"


async def test_retrieve_update_list_delete(client: stripe.StripeClient) -> None:
    a = await client.v1.accounts.create_async(params={"type": "express"})
    b = await client.v1.accounts.create_async(params={"type": "express"})
    updated = await client.v1.accounts.update_async(a.id, params={"email": "new@example.com", "metadata": {"k": "v"}})
    assert updated.email == "new@example.com"
    assert (await client.v1.accounts.retrieve_async(a.id)).metadata.to_dict() == {"k": "v"}  # type: ignore[union-attr]
    listed = await client.v1.accounts.list_async()
    assert [x.id for x in listed.data] == [b.id, a.id]
    events = await client.v1.events.list_async(options={"stripe_account": a.id})
    assert [e.type for e in events.data] == ["account.updated"]
    assert events.data[0].account == a.id
    assert events.data[0].data.previous_attributes is not None
    assert events.data[0].data.previous_attributes.to_dict()["email"] is None
    deleted = await client.v1.accounts.delete_async(a.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.accounts.retrieve_async(a.id)


async def _link(client: stripe.StripeClient, acct: str, link_type: str = "account_onboarding") -> Any:
    return await client.v1.account_links.create_async(
        params={
            "account": acct,
            "type": link_type,
            "refresh_url": "https://app.example/refresh",
            "return_url": "https://app.example/return",
        }
    )


async def test_onboarding_page_complete(client: stripe.StripeClient, http: httpx.AsyncClient) -> None:
    acct = await client.v1.accounts.create_async(
        params={
            "type": "express",
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        }
    )
    link = await _link(client, acct.id)
    assert link.expires_at - link.created <= 600
    page = await http.get(link.url)
    assert page.status_code == 200
    action = page.text.split("action='")[1].split("'")[0]
    resp = await http.post(action, data={"action": "complete"})
    assert resp.status_code == 303
    assert resp.headers["location"] == "https://app.example/return"
    a = await client.v1.accounts.retrieve_async(acct.id)
    assert (a.charges_enabled, a.payouts_enabled, a.details_submitted) == (True, True, True)
    assert a.requirements is not None
    assert a.requirements.currently_due == []
    # A used link goes to refresh_url.
    again = await http.get(link.url)
    assert again.status_code == 303
    assert again.headers["location"] == "https://app.example/refresh"
    types = [e.type for e in (await client.v1.events.list_async(options={"stripe_account": acct.id})).data]
    assert sorted(types) == ["account.updated", "capability.updated", "capability.updated"]


async def test_onboarding_page_incomplete_and_expired_link(
    client: stripe.StripeClient, http: httpx.AsyncClient, running: RunningSandbox
) -> None:
    acct = await client.v1.accounts.create_async(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    link = await _link(client, acct.id)
    page = await http.get(link.url)
    action = page.text.split("action='")[1].split("'")[0]
    resp = await http.post(action, data={"action": "incomplete"})
    assert resp.headers["location"] == "https://app.example/return"
    a = await client.v1.accounts.retrieve_async(acct.id)
    assert a.charges_enabled is False
    assert a.requirements is not None
    assert a.requirements.currently_due
    assert a.details_submitted is False
    # Expired: the link is past expires_at (time travel by editing the record in-process).
    link2 = await _link(client, acct.id)
    token = link2.url.rsplit("/", 1)[1]
    running.sandbox.store.records[token]["obj"]["expires_at"] = 0
    resp = await http.get(link2.url)
    assert resp.status_code == 303
    assert resp.headers["location"] == "https://app.example/refresh"


async def test_account_update_links_need_platform_collection(client: stripe.StripeClient) -> None:
    express = await client.v1.accounts.create_async(params={"type": "express"})
    with pytest.raises(stripe.InvalidRequestError):
        await _link(client, express.id, "account_update")
    custom = await client.v1.accounts.create_async(params={"type": "custom"})
    assert (await _link(client, custom.id, "account_update")).url


async def test_login_links(client: stripe.StripeClient, control: SandboxControl, http: httpx.AsyncClient) -> None:
    express = await client.v1.accounts.create_async(
        params={"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        await client.v1.accounts.login_links.create_async(express.id)
    assert "not completed onboarding" in str(info.value.user_message)
    await control.complete_onboarding(express.id)
    link = await client.v1.accounts.login_links.create_async(express.id)
    assert link.object == "login_link"
    assert (await http.get(link.url)).status_code == 200
    full = await onboarded_account(client, control, dashboard="full")
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.accounts.login_links.create_async(full)


async def test_restrict_and_deauthorize(client: stripe.StripeClient, control: SandboxControl) -> None:
    acct = await onboarded_account(client, control)
    restricted = await control.restrict_onboarding(acct, currently_due=["individual.verification.document"])
    assert restricted["charges_enabled"] is False
    a = await client.v1.accounts.retrieve_async(acct)
    assert a.requirements is not None
    assert a.requirements.currently_due == ["individual.verification.document"]
    assert a.capabilities is not None
    assert a.capabilities.to_dict() == {"card_payments": "inactive", "transfers": "inactive"}
    cap_events = await client.v1.events.list_async(
        params={"type": "capability.updated"}, options={"stripe_account": acct}
    )
    assert {e.data.object["status"] for e in cap_events.data} == {"active", "inactive"}
    await control.deauthorize(acct)
    with pytest.raises(stripe.PermissionError) as info:
        await client.v1.balance.retrieve_async(options={"stripe_account": acct})
    assert info.value.http_status == 403
    assert info.value.json_body is not None
    assert error_of(info.value)["code"] == "account_invalid"
    with pytest.raises(stripe.PermissionError):
        await client.v1.accounts.retrieve_async(acct)
    assert acct not in [a.id for a in (await client.v1.accounts.list_async()).data]
    deauth = await client.v1.events.list_async(params={"type": "account.application.deauthorized"})
    assert deauth.data == []  # it is the connected account's event, not the platform's


async def test_controller_defaults_and_rules_of_the_api_reference(client: stripe.StripeClient) -> None:
    """Defaults: full dashboard, fees paid by the account, Stripe liable for losses, Stripe collects."""
    plain = await client.v1.accounts.create_async(params={"controller": {}})
    assert plain.controller is not None
    assert plain.controller.to_dict() == {
        "fees": {"payer": "account"},
        "is_controller": True,
        "losses": {"payments": "stripe"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "full"},
        "type": "application",
    }
    assert plain.type == "standard"
    # The defaults do not combine with an Express dashboard in this API version: say who pays, and who is liable.
    for controller, param in (
        ({"stripe_dashboard": {"type": "express"}}, "controller[fees][payer]"),
        ({"losses": {"payments": "application"}}, "controller[fees][payer]"),
    ):
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.accounts.create_async(params={"controller": controller})  # type: ignore[typeddict-item]
        assert info.value.param == param


async def test_malformed_values_get_stripes_error_not_a_crash(
    client: stripe.StripeClient, http: httpx.AsyncClient
) -> None:
    acct = await client.v1.accounts.create_async(params={"type": "custom"})
    auth = {"Authorization": "Bearer sk_test_sandbox_0123456789", "Content-Type": "application/x-www-form-urlencoded"}
    for body, param in (
        ("tos_acceptance[date]=abc", "tos_acceptance[date]"),
        ("tos_acceptance[date][x]=1", "tos_acceptance[date]"),
        ("capabilities[transfers][requested]=maybe", "capabilities[transfers][requested]"),
        ("metadata[k][x]=1", "metadata[k]"),
        ("email[x]=1", "email"),
    ):
        resp = await http.post(f"/v1/accounts/{acct.id}", content=body, headers=auth)
        assert resp.status_code == 400, (body, resp.text)
        err = resp.json()["error"]
        assert (err["type"], err["param"]) == ("invalid_request_error", param)
    ok = await client.v1.accounts.update_async(
        acct.id, params={"tos_acceptance": {"date": 1700000000, "ip": "1.2.3.4"}}
    )
    assert ok.tos_acceptance is not None
    assert (ok.tos_acceptance.date, ok.tos_acceptance.ip) == (1700000000, "1.2.3.4")
    bad_decimal = await http.post(
        "/v1/prices", content="currency=usd&unit_amount_decimal=inf&product_data[name]=x", headers=auth
    )
    assert (bad_decimal.status_code, bad_decimal.json()["error"]["param"]) == (400, "unit_amount_decimal")


async def test_only_a_platform_collecting_requirements_records_terms_acceptance(client: stripe.StripeClient) -> None:
    """Stripe takes `tos_acceptance` only where the platform collects requirements (Custom accounts)."""
    tos = {"date": 1700000000, "ip": "1.2.3.4"}
    express = await client.v1.accounts.create_async(params={"type": "express"})
    with pytest.raises(stripe.InvalidRequestError) as on_update:
        await client.v1.accounts.update_async(express.id, params={"tos_acceptance": tos})
    assert on_update.value.param == "tos_acceptance"
    with pytest.raises(stripe.InvalidRequestError) as on_create:
        await client.v1.accounts.create_async(params={"type": "standard", "tos_acceptance": tos})
    assert on_create.value.param == "tos_acceptance"
    unchanged = await client.v1.accounts.retrieve_async(express.id)
    assert unchanged.tos_acceptance is None or unchanged.tos_acceptance.date is None
    custom = await client.v1.accounts.create_async(params={"type": "custom", "tos_acceptance": tos})
    assert custom.tos_acceptance is not None
    assert custom.tos_acceptance.date == 1700000000
