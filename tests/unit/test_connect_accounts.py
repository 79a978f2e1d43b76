"""Account profiles, creation parameters and the derived account status (pure rules)."""

from __future__ import annotations

from typing import Any

import pytest

from connect.accounts import (
    AccountSnapshot,
    account_create_params,
    controller_for,
    derive_status,
    snapshot_from_account,
)
from connect.idempotency import account_key


def stripe_rejects(controller: Any) -> list[str]:
    """Why Stripe's API (the pinned version, 2026-10-28.endive) would refuse these controller properties.

    Stripe's documented rules for `accounts.create` `controller`, with its defaults (full dashboard, the
    account pays fees, Stripe carries losses, Stripe collects requirements):
    - the platform can carry losses (`losses.payments=application`) only if it pays the fees;
    - the platform can collect requirements (`requirement_collection=application`) only for accounts
      without a Stripe dashboard (`stripe_dashboard.type=none`);
    - an account without the full Stripe Dashboard (express or none) needs the platform to pay its fees.
    Later API versions relax some of these; this is the version the SDK pins.
    """
    dashboard = controller.get("stripe_dashboard", {}).get("type", "full")
    payer = controller.get("fees", {}).get("payer", "account")
    losses = controller.get("losses", {}).get("payments", "stripe")
    collection = controller.get("requirement_collection", "stripe")
    problems = []
    if losses == "application" and payer != "application":
        problems.append("platform losses need platform fees")
    if collection == "application" and dashboard != "none":
        problems.append("platform requirement collection needs no dashboard")
    if dashboard != "full" and payer != "application":
        problems.append("an account without the full dashboard needs platform fees")
    return problems


@pytest.mark.parametrize(
    "controller",
    [
        {"stripe_dashboard": {"type": "express"}},  # the account would pay fees
        {"losses": {"payments": "application"}},  # platform losses, account fees
        {"requirement_collection": "application"},  # with the default full dashboard
    ],
)
def test_the_documented_rules_refuse_invalid_combinations(controller: Any) -> None:
    assert stripe_rejects(controller)


@pytest.mark.parametrize("profile", ["platform_managed", "seller_managed"])
def test_both_profiles_are_combinations_stripe_accepts(profile: Any) -> None:
    assert stripe_rejects(controller_for(profile)) == []


def test_platform_managed_is_express_with_the_platform_paying_fees_and_carrying_losses() -> None:
    """Destination charges: the platform is the merchant and pays for it (docs/onboarding.md)."""
    controller = controller_for("platform_managed")
    assert controller.get("stripe_dashboard", {}).get("type") == "express"
    assert controller.get("fees", {}).get("payer") == "application"
    assert controller.get("losses", {}).get("payments") == "application"
    assert controller.get("requirement_collection", "stripe") == "stripe"  # hosted onboarding


def test_seller_managed_is_full_dashboard_paying_its_own_fees_and_losses_with_stripe() -> None:
    """Direct charges: the seller is the merchant, pays Stripe's fees, and Stripe covers its losses."""
    controller = controller_for("seller_managed")
    assert controller.get("stripe_dashboard", {}).get("type", "full") == "full"
    assert controller.get("fees", {}).get("payer", "account") == "account"
    assert controller.get("losses", {}).get("payments", "stripe") == "stripe"
    assert controller.get("requirement_collection", "stripe") == "stripe"


def test_create_params_request_both_capabilities_and_carry_the_seller() -> None:
    params = account_create_params(
        seller_id="s-1", email="a@example.com", country="FR", business_type="company", profile="platform_managed"
    )
    assert params["capabilities"] == {"card_payments": {"requested": True}, "transfers": {"requested": True}}
    assert params["country"] == "FR"
    assert params.get("metadata") == {"seller_id": "s-1", "account_profile": "platform_managed"}
    assert "type" not in params  # controller properties replace the legacy type


@pytest.mark.parametrize(("country", "business_type"), [("XX", "individual"), ("US", "llc"), ("us", "individual")])
def test_create_params_refuse_unsupported_country_or_business_type(country: str, business_type: str) -> None:
    with pytest.raises(ValueError, match="not"):
        account_create_params(
            seller_id="s", email="a@example.com", country=country, business_type=business_type, profile="seller_managed"
        )


def test_account_key_is_deterministic_per_seller_and_connection() -> None:
    import uuid

    seller = uuid.uuid4()
    assert account_key(seller) == account_key(seller, 1) == f"account:{seller}"  # the first account
    assert account_key(seller, 2) == f"account:{seller}:2"  # after a disconnect, a new account
    assert len({account_key(seller, n) for n in range(1, 5)}) == 4
    with pytest.raises(ValueError, match="generation"):
        account_key(seller, 0)


def snap(**overrides: Any) -> AccountSnapshot:
    base: dict[str, Any] = {
        "account_id": "acct_1",
        "charges_enabled": False,
        "payouts_enabled": False,
        "details_submitted": False,
    }
    base.update(overrides)
    return AccountSnapshot(**base)


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({}, "onboarding"),
        ({"details_submitted": True, "currently_due": ["external_account"]}, "restricted"),
        ({"details_submitted": True, "charges_enabled": True}, "restricted"),
        ({"details_submitted": True, "charges_enabled": True, "payouts_enabled": True}, "active"),
        ({"details_submitted": True, "disabled_reason": "rejected.fraud"}, "disabled"),
        (
            {
                "details_submitted": True,
                "charges_enabled": True,
                "payouts_enabled": True,
                "disabled_reason": "rejected.other",
            },
            "disabled",
        ),
    ],
)
def test_derive_status(overrides: dict[str, Any], status: str) -> None:
    assert derive_status(snap(**overrides)) == status


def test_leaving_onboarding_early_is_restricted_not_onboarding() -> None:
    """Stripe leaves details_submitted false when the seller leaves the form early; coming back through
    our return URL is what says the seller has been through onboarding."""
    left_early = snap(currently_due=["external_account"], disabled_reason="requirements.past_due")
    assert derive_status(left_early, seller_has_been_through_onboarding=True) == "restricted"


def test_an_account_nobody_has_been_through_onboarding_for_is_still_onboarding() -> None:
    """The same requirements before the seller ever opened the form are just the form to fill in."""
    never_opened = snap(currently_due=["external_account"], disabled_reason="requirements.past_due")
    assert derive_status(never_opened, seller_has_been_through_onboarding=False) == "onboarding"


def test_snapshot_reads_stripe_account_shape() -> None:
    account = {
        "id": "acct_123",
        "object": "account",
        "charges_enabled": True,
        "payouts_enabled": False,
        "details_submitted": True,
        "controller": {"stripe_dashboard": {"type": "express"}},
        "capabilities": {"card_payments": "active", "transfers": "pending"},
        "requirements": {
            "currently_due": ["external_account"],
            "past_due": [],
            "eventually_due": ["external_account", "individual.id_number"],
            "pending_verification": [],
            "disabled_reason": "requirements.past_due",
            "current_deadline": None,
            "errors": [],
        },
    }
    snapshot = snapshot_from_account(account)
    assert snapshot.status() == "restricted"
    assert snapshot.dashboard == "express"
    assert snapshot.capabilities == {"card_payments": "active", "transfers": "pending"}
    assert snapshot.requirements()["currently_due"] == ["external_account"]
    assert snapshot.requirements()["disabled_reason"] == "requirements.past_due"
