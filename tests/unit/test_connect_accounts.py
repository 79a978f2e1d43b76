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


def test_platform_managed_profile_is_express_with_platform_liability() -> None:
    controller = controller_for("platform_managed")
    assert controller == {
        "fees": {"payer": "application"},
        "losses": {"payments": "application"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "express"},
    }


def test_seller_managed_profile_is_full_dashboard_paying_its_own_fees() -> None:
    controller = controller_for("seller_managed")
    assert controller["stripe_dashboard"] == {"type": "full"}
    assert controller["fees"] == {"payer": "account"}
    assert controller["losses"] == {"payments": "stripe"}


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


def test_account_key_is_deterministic_per_seller() -> None:
    import uuid

    seller = uuid.uuid4()
    assert account_key(seller) == account_key(seller) == f"account:{seller}"


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
    left_early = snap(currently_due=["external_account"], disabled_reason="requirements.past_due")
    assert derive_status(left_early) == "onboarding"
    assert derive_status(left_early, seller_has_been_through_onboarding=True) == "restricted"


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
