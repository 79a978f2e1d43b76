"""Connected accounts on the Stripe side: profiles, creation, links, and reading an account's state.

Pure where possible: `account_create_params` and `snapshot_from_account` / `derive_status` take and
return plain data; the async functions are thin calls through the one `StripeClient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import stripe
from stripe.params import (
    AccountCreateParams,
    AccountCreateParamsController,
    AccountLinkCreateParams,
    AccountListParams,
)

from connect.profiles import AccountProfile, AccountStatus

BusinessType = Literal["individual", "company", "non_profit", "government_entity"]
LinkType = Literal["account_onboarding", "account_update"]

# Countries where Stripe supports Connect accounts (https://stripe.com/global).
_COUNTRIES = """
AE AT AU BE BG BR CA CH CY CZ DE DK EE ES FI FR GB GI GR HK HR HU IE IT JP LI LT LU LV MT MX MY NL
NO NZ PL PT RO SE SG SI SK TH US
"""
SUPPORTED_COUNTRIES = frozenset(_COUNTRIES.split())
BUSINESS_TYPES: frozenset[str] = frozenset({"individual", "company", "non_profit", "government_entity"})


def controller_for(profile: AccountProfile) -> AccountCreateParamsController:
    """Controller properties for an account profile (Stripe's replacement for `type`).

    platform_managed: Express dashboard; the platform pays Stripe's fees and carries negative
    balances; charged with destination charges. Under the API version this project pins
    (2026-10-28.endive) an account without the full Stripe Dashboard must have the platform pay its
    fees (`fees.payer=application`), and platform loss liability requires platform fees, hence the
    pairing; later API versions relax these rules, so re-check them when the pin moves.
    seller_managed: full Stripe dashboard; the seller pays fees and Stripe carries losses; direct charges.
    Stripe collects the requirements in both cases (hosted onboarding).
    """
    if profile == "platform_managed":
        return {
            "fees": {"payer": "application"},
            "losses": {"payments": "application"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express"},
        }
    return {
        "fees": {"payer": "account"},
        "losses": {"payments": "stripe"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "full"},
    }


def account_create_params(
    *, seller_id: str, email: str, country: str, business_type: str, profile: AccountProfile
) -> AccountCreateParams:
    """Parameters for `accounts.create`; validates country and business type first."""
    if country not in SUPPORTED_COUNTRIES:
        raise ValueError(f"country {country!r} is not supported for connected accounts")
    if business_type not in BUSINESS_TYPES:
        raise ValueError(f"business_type {business_type!r} is not one of {sorted(BUSINESS_TYPES)}")
    return {
        "country": country,
        "email": email,
        "business_type": business_type,
        "controller": controller_for(profile),
        "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        "metadata": {"seller_id": seller_id, "account_profile": profile},
    }


async def create_account(
    client: stripe.StripeClient, params: AccountCreateParams, idempotency_key: str
) -> dict[str, Any]:
    account = await client.v1.accounts.create_async(params=params, options={"idempotency_key": idempotency_key})
    return account.to_dict()


async def retrieve_account(client: stripe.StripeClient, account_id: str) -> dict[str, Any]:
    """The account as Stripe has it now.

    The platform reads its connected account directly (`GET /v1/accounts/{id}`, no `Stripe-Account`
    header). Errors are raised as they come: a 403 or 404 here is not proof that the seller left the
    platform (a wrong or rotated key, or a key of the other mode, answers the same way); only the
    `account.application.deauthorized` event is.
    """
    account = await client.v1.accounts.retrieve_async(account_id)
    return account.to_dict()


async def find_account_for_seller(
    client: stripe.StripeClient, *, seller_id: str, created_from: int, exclude: set[str]
) -> dict[str, Any] | None:
    """A connected account Stripe already holds for `seller_id` (its `metadata.seller_id`), if any.

    For a creation retried after Stripe may have forgotten its idempotency key (kept at least 24 h):
    the earlier attempt may have made an account we never recorded. Scans the platform's accounts
    created since `created_from` (unix seconds), skipping the ids in `exclude` (accounts already
    recorded, such as a disconnected earlier one). The oldest match wins.
    """
    params: AccountListParams = {"limit": 100, "created": {"gte": created_from}}
    page = await client.v1.accounts.list_async(params=params)
    found: list[dict[str, Any]] = []
    async for account in page.auto_paging_iter():
        data = account.to_dict()
        metadata = data.get("metadata") or {}
        if metadata.get("seller_id") == seller_id and data["id"] not in exclude:
            found.append(data)
    return min(found, key=lambda a: int(a.get("created") or 0)) if found else None


async def create_account_link(
    client: stripe.StripeClient,
    *,
    account_id: str,
    refresh_url: str,
    return_url: str,
    link_type: LinkType,
    idempotency_key: str,
) -> tuple[str, int]:
    """A single-use, short-lived hosted onboarding URL and its expiry (unix seconds)."""
    params: AccountLinkCreateParams = {
        "account": account_id,
        "refresh_url": refresh_url,
        "return_url": return_url,
        "type": link_type,
        "collection_options": {"fields": "eventually_due"},
    }
    link = await client.v1.account_links.create_async(params=params, options={"idempotency_key": idempotency_key})
    return str(link.url), int(link.expires_at)


async def create_login_link(client: stripe.StripeClient, account_id: str, idempotency_key: str) -> str:
    """An Express dashboard login link (Express-dashboard accounts only)."""
    link = await client.v1.accounts.login_links.create_async(account_id, options={"idempotency_key": idempotency_key})
    return str(link.url)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What we keep of a Stripe Account: enough to decide whether the seller can sell and be paid."""

    account_id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    currently_due: list[str] = field(default_factory=list)
    past_due: list[str] = field(default_factory=list)
    eventually_due: list[str] = field(default_factory=list)
    pending_verification: list[str] = field(default_factory=list)
    disabled_reason: str | None = None
    current_deadline: int | None = None
    capabilities: dict[str, str] = field(default_factory=dict)
    dashboard: str | None = None

    def status(self, *, seller_has_been_through_onboarding: bool = False) -> AccountStatus:
        return derive_status(self, seller_has_been_through_onboarding=seller_has_been_through_onboarding)

    def requirements(self) -> dict[str, Any]:
        return {
            "currently_due": self.currently_due,
            "past_due": self.past_due,
            "eventually_due": self.eventually_due,
            "pending_verification": self.pending_verification,
            "disabled_reason": self.disabled_reason,
            "current_deadline": self.current_deadline,
        }


def derive_status(snapshot: AccountSnapshot, *, seller_has_been_through_onboarding: bool = False) -> AccountStatus:
    """One word for the seller's state (disconnection is decided by us, not read from the account).

    - disabled: Stripe rejected the account (`requirements.disabled_reason` = `rejected.*`);
    - active: it can take charges and receive payouts;
    - onboarding: the seller has not been through hosted onboarding yet (nothing submitted, never
      came back from a link): the requirements Stripe lists are simply the form still to fill in;
    - restricted: charges or payouts are not (or no longer) enabled although the seller has been
      through onboarding (came back incomplete, or Stripe wants more after verification).

    Stripe leaves `details_submitted` false when a seller leaves the flow early, so "has been through
    onboarding" is also true when the seller came back through our return URL.
    """
    if snapshot.disabled_reason and snapshot.disabled_reason.startswith("rejected"):
        return "disabled"
    if snapshot.charges_enabled and snapshot.payouts_enabled:
        return "active"
    if not snapshot.details_submitted and not seller_has_been_through_onboarding:
        return "onboarding"
    return "restricted"


def _list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def snapshot_from_account(account: dict[str, Any]) -> AccountSnapshot:
    """Read an Account (as a plain dict, e.g. `StripeObject.to_dict()`) into a snapshot."""
    requirements = account.get("requirements") or {}
    capabilities = account.get("capabilities") or {}
    controller = account.get("controller") or {}
    dashboard = (controller.get("stripe_dashboard") or {}).get("type")
    return AccountSnapshot(
        account_id=str(account["id"]),
        charges_enabled=bool(account.get("charges_enabled")),
        payouts_enabled=bool(account.get("payouts_enabled")),
        details_submitted=bool(account.get("details_submitted")),
        currently_due=_list(requirements.get("currently_due")),
        past_due=_list(requirements.get("past_due")),
        eventually_due=_list(requirements.get("eventually_due")),
        pending_verification=_list(requirements.get("pending_verification")),
        disabled_reason=requirements.get("disabled_reason"),
        current_deadline=requirements.get("current_deadline"),
        capabilities={str(k): str(v) for k, v in capabilities.items()} if isinstance(capabilities, dict) else {},
        dashboard=str(dashboard) if dashboard else None,
    )
