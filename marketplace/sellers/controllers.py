"""Seller routes: sign-up, profile, connected account, onboarding and dashboard links, admin views."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import stripe
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect

from connect.accounts import SUPPORTED_COUNTRIES
from connect.fees import FeeOverride, FeePolicy
from connect.profiles import AccountStatus
from marketplace.auth.guards import admin_only, seller_only
from marketplace.auth.service import create_principal
from marketplace.auth.tables import Role
from marketplace.lib import ratelimit
from marketplace.lib.deps import ArqDep, SettingsDep, StripeDep
from marketplace.lib.problems import NotFound, Problem, TooManyRequests, Unavailable, UpstreamError
from marketplace.lib.schemas import Offset
from marketplace.lib.settings import Settings
from marketplace.lib.stripe_errors import problem_from_stripe
from marketplace.sellers import accounts, errors, fees, links, sync, urls
from marketplace.sellers.accounts import AccountRow, SellerRow
from marketplace.sellers.deps import CURRENT_SELLER, CurrentSellerDep
from marketplace.sellers.schemas import (
    AdminSellerOut,
    ConnectedAccountOut,
    FeeOverrideIn,
    FeeOverrideOut,
    FeePolicyOut,
    LinkOut,
    Requirements,
    SellerFeePolicyOut,
    SellerOut,
    SellerProfile,
    SellerSignup,
    SellerSignupResult,
)
from marketplace.sellers.tables import Seller

log = logging.getLogger("marketplace.sellers")

BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]


def seller_out(row: SellerRow) -> SellerOut:
    return SellerOut(
        id=row.id,
        display_name=row.display_name,
        email=row.email,
        country=row.country,
        business_type=row.business_type,
        account_profile=row.account_profile,
        created_at=row.created_at,
    )


def account_out(row: AccountRow) -> ConnectedAccountOut:
    req = row.requirements
    return ConnectedAccountOut(
        account_id=row.stripe_account_id,
        profile=row.profile,
        status=row.status,
        charges_enabled=row.charges_enabled,
        payouts_enabled=row.payouts_enabled,
        details_submitted=row.details_submitted,
        requirements=Requirements(
            currently_due=req.get("currently_due") or [],
            past_due=req.get("past_due") or [],
            eventually_due=req.get("eventually_due") or [],
            pending_verification=req.get("pending_verification") or [],
            disabled_reason=req.get("disabled_reason"),
            current_deadline=req.get("current_deadline"),
        ),
        capabilities=row.capabilities,
        dashboard=row.dashboard,
        synced_at=row.synced_at,
        synced_from=row.synced_from,
        disconnected_at=row.disconnected_at,
    )


class SellerSignupController(Controller):
    path = "/sellers"
    tags = ["sellers"]

    @post(
        "/",
        operation_id="signUpSeller",
        status_code=201,
        summary="Sign up as a seller; returns the token once",
        description=(
            "Creates the seller and a seller bearer token, answered once in `token` (only its hash is stored). "
            "400 `validation-error` for a country Stripe Connect does not support. The connected account "
            "comes next, with `POST /sellers/me/stripe-account`."
        ),
    )
    async def sign_up(self, data: JSONBody[SellerSignup], settings: SettingsDep) -> SellerSignupResult:
        if data.country not in SUPPORTED_COUNTRIES:
            raise Problem(
                f"Stripe Connect does not support sellers in {data.country}.",
                slug="validation-error",
                title="Bad request",
                errors=[{"key": "country", "message": "not a Stripe Connect country", "source": "body"}],
            )
        async with Seller._meta.db.transaction():
            principal_id, token = await create_principal(Role.seller, data.display_name, data.email)
            row = SellerRow(
                id=uuid.uuid4(),
                principal=principal_id,
                display_name=data.display_name,
                email=data.email,
                country=data.country,
                business_type=data.business_type,
                account_profile=data.account_profile if settings.allow_seller_account_profile else None,
                created_at=datetime.now(UTC),
            )
            await Seller.insert(Seller(**asdict(row)))
        return SellerSignupResult(seller=seller_out(row), token=token)


class SellerMeController(Controller):
    path = "/sellers/me"
    tags = ["sellers"]
    guards = [seller_only]
    security = BEARER
    dependencies = CURRENT_SELLER

    @get(
        "/",
        operation_id="getMySellerProfile",
        summary="The seller's profile and connected-account state",
        description=(
            "The seller's profile and their connected account as last synced from Stripe (status, "
            "requirements, capabilities); `connected_account` is null until one is created."
        ),
    )
    async def me(self, seller: CurrentSellerDep) -> SellerProfile:
        account = await accounts.account_for_seller(seller.id)
        return SellerProfile(seller=seller_out(seller), connected_account=account_out(account) if account else None)

    @post(
        "/stripe-account",
        operation_id="createMyConnectedAccount",
        summary="Create the seller's Stripe connected account, or return the current one",
        description=(
            "201 with a new account the first time, and again after the current account was disconnected "
            "(the seller connects a new one); 200 with the current account otherwise."
        ),
        status_code=200,
        responses={201: ResponseSpec(data_container=ConnectedAccountOut, description="A new connected account.")},
        raises=[errors.UnsupportedAccount, UpstreamError, Unavailable],
    )
    async def create_account(
        self, seller: CurrentSellerDep, stripe_client: StripeDep, settings: SettingsDep
    ) -> Response[ConnectedAccountOut]:
        row, created = await accounts.ensure_connected_account(stripe_client, settings, seller)
        return Response(account_out(row), status_code=201 if created else 200)

    @post(
        "/onboarding-link",
        operation_id="createMyOnboardingLink",
        summary="A fresh hosted onboarding link (single use, expires within minutes)",
        description=(
            "Mints a Stripe Account Link: send the seller's browser to `url` before `expires_at`; Stripe "
            "sends it back to the onboarding redirects. 409 when there is no connected account yet or it "
            "was disconnected; 502 when Stripe refuses."
        ),
        status_code=201,
        raises=[errors.AccountNotCreated, errors.AccountDisconnected, UpstreamError, Unavailable],
    )
    async def onboarding_link(
        self, seller: CurrentSellerDep, stripe_client: StripeDep, settings: SettingsDep
    ) -> LinkOut:
        url, expires_at = await links.mint_onboarding_link(stripe_client, settings, seller.id)
        return LinkOut(url=url, expires_at=expires_at)

    @post(
        "/dashboard-link",
        operation_id="createMyDashboardLink",
        summary="An Express dashboard login link (platform-managed accounts only)",
        description=(
            "A single-use login link to the seller's Stripe Express dashboard. 409 when there is no connected "
            "account, it was disconnected, its dashboard is not Express, or onboarding is not complete; 502 "
            "when Stripe refuses."
        ),
        status_code=201,
        raises=[
            errors.AccountNotCreated,
            errors.DashboardLinkUnavailable,
            errors.AccountDisconnected,
            errors.OnboardingIncomplete,
            UpstreamError,
            Unavailable,
        ],
    )
    async def dashboard_link(self, seller: CurrentSellerDep, stripe_client: StripeDep) -> LinkOut:
        return LinkOut(url=await links.mint_dashboard_link(stripe_client, seller.id))


def _seller_page(settings: Settings, **query: str) -> Redirect:
    """Redirect to the platform's seller page (an allowed origin by construction of the settings)."""
    separator = "&" if "?" in settings.seller_return_url else "?"
    return Redirect(path=f"{settings.seller_return_url}{separator}{urlencode(query)}", status_code=303)


class OnboardingRedirectController(Controller):
    """Where Stripe sends the seller's browser back; no bearer token here, the URL's state is the key.

    A browser is on the other end: every outcome, errors included, is a redirect to the seller page
    with `onboarding=<outcome>` (never a JSON problem), and failures are logged (without the state).
    The one exception is the rate limit (`marketplace.lib.ratelimit`): a 429 problem, before Stripe is called.
    """

    path = urls.ONBOARDING_REDIRECTS
    tags = ["sellers"]

    @get(
        urls.ONBOARDING_REFRESH,
        operation_id="refreshOnboardingLink",
        summary="Mint a fresh onboarding link and redirect to it (the state is single use)",
        description=(
            "303 to a new hosted onboarding link; the state in this URL is consumed and the new link's "
            "state keeps its deadline. Otherwise 303 to the seller page with `onboarding=link_expired` "
            "(unknown, used or expired state), `disconnected`, `no_account` or `error` (Stripe failed). "
            "429 `too-many-requests` past 10 requests per state or 30 per client address in a minute."
        ),
        status_code=303,
        raises=[TooManyRequests],
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        link_state: FromPath[uuid.UUID],
        stripe_client: StripeDep,
        settings: SettingsDep,
        arq: ArqDep,
    ) -> Redirect:
        await ratelimit.limit_onboarding_redirect(arq, request, link_state)
        try:
            minted = await links.refresh_onboarding_link(stripe_client, settings, link_state)
        except errors.AccountDisconnected:
            return _seller_page(settings, onboarding="disconnected")
        except errors.AccountNotCreated:
            return _seller_page(settings, onboarding="no_account")
        except Problem as exc:  # Stripe failed (problem_from_stripe logged the details)
            log.warning("onboarding refresh failed: %s", exc.slug)
            return _seller_page(settings, onboarding="error")
        if minted is None:
            return _seller_page(settings, onboarding="link_expired")
        url, _ = minted
        return Redirect(path=url, status_code=303)

    @get(
        urls.ONBOARDING_RETURN,
        operation_id="returnFromOnboarding",
        summary="Re-read the account from Stripe, then redirect to the seller page with its status",
        description=(
            "303 to the seller page with `onboarding=returned&status=<status>`, or with "
            "`onboarding=link_expired`, `disconnected`, `no_account` or `error` (Stripe failed). "
            "429 `too-many-requests` past 10 requests per state or 30 per client address in a minute."
        ),
        status_code=303,
        raises=[TooManyRequests],
    )
    async def return_(
        self,
        request: Request[Any, Any, Any],
        link_state: FromPath[uuid.UUID],
        stripe_client: StripeDep,
        settings: SettingsDep,
        arq: ArqDep,
    ) -> Redirect:
        await ratelimit.limit_onboarding_redirect(arq, request, link_state)
        try:
            outcome = await links.return_from_onboarding(stripe_client, link_state)
        except stripe.StripeError as exc:
            log.warning(
                "reading the account on return from onboarding failed: %s (code=%s, request=%s)",
                type(exc).__name__,
                getattr(exc, "code", None),
                getattr(exc, "request_id", None),
            )
            return _seller_page(settings, onboarding="error")
        if outcome in ("link_expired", "no_account", "disconnected"):
            return _seller_page(settings, onboarding=outcome)
        return _seller_page(settings, onboarding="returned", status=outcome)


def fee_policy_out(settings: Settings, seller_id: uuid.UUID, override: FeeOverride | None) -> SellerFeePolicyOut:
    """The seller's override and effective policy; a conflict with the platform policy is reported, not raised."""
    override_out = None
    if override is not None:
        override_out = FeeOverrideOut(
            basis_points=override.basis_points,
            fixed=None if override.fixed is None else dict(override.fixed),
            minimum=None if override.minimum is None else dict(override.minimum),
            maximum=None if override.maximum is None else dict(override.maximum),
        )
    try:
        policy: FeePolicy = fees.combine(settings, seller_id, override)
    except fees.FeePolicyConflict as exc:
        return SellerFeePolicyOut(seller_id=seller_id, override=override_out, effective=None, conflict=exc.detail)
    effective = FeePolicyOut(
        basis_points=policy.basis_points,
        fixed=dict(policy.fixed),
        minimum=dict(policy.minimum),
        maximum=dict(policy.maximum),
    )
    return SellerFeePolicyOut(seller_id=seller_id, override=override_out, effective=effective)


class AdminSellerController(Controller):
    path = "/admin/sellers"
    tags = ["admin"]
    guards = [admin_only]
    security = BEARER

    @get(
        "/",
        operation_id="adminListSellers",
        summary="Sellers with a connected account, by account status",
        description=(
            "Each seller's current connected account (one replaced by a reconnection is not listed), newest "
            "first, optionally only those in one `status`; paginated with `limit` and `offset`."
        ),
    )
    async def list_sellers(
        self,
        status: Annotated[
            AccountStatus | None,
            QueryParameter(name="status"),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        offset: Offset = 0,
    ) -> list[AdminSellerOut]:
        listed = await accounts.accounts_by_status(status, limit, offset)
        return [
            AdminSellerOut(
                seller_id=item.account.seller,
                display_name=item.display_name,
                email=item.email,
                connected_account=account_out(item.account),
            )
            for item in listed
        ]

    @post(
        "/{seller_id:uuid}/sync",
        operation_id="adminSyncSeller",
        summary="Re-read a seller's account from Stripe",
        description=(
            "Fetches the connected account from Stripe now, stores what it says (status, requirements, "
            "capabilities) and answers the result. 404 when the seller has no connected account; 502 when "
            "Stripe refuses."
        ),
        status_code=200,
        raises=[UpstreamError, Unavailable],
    )
    async def sync(self, seller_id: FromPath[uuid.UUID], stripe_client: StripeDep) -> ConnectedAccountOut:
        account = await accounts.account_for_seller(seller_id)
        if account is None or not account.stripe_account_id:
            raise NotFound(f"No connected account for seller {seller_id}.")
        try:
            await sync.sync_connected_account(stripe_client, account.stripe_account_id, source="admin")
        except stripe.StripeError as exc:
            raise problem_from_stripe(exc, "read the connected account") from exc
        fresh = await accounts.account_for_seller(seller_id)
        assert fresh is not None
        return account_out(fresh)

    @get(
        "/{seller_id:uuid}/fee-policy",
        operation_id="adminGetSellerFeePolicy",
        summary="A seller's fee override and the fee policy their charges get",
        description=(
            "The seller's override (null when none) and the effective policy: the platform's fee policy "
            "with the override's fields in place. When the two cannot combine, `effective` is null and "
            "`conflict` says why (the override needs replacing)."
        ),
        raises=[NotFound],
    )
    async def fee_policy(self, seller_id: FromPath[uuid.UUID], settings: SettingsDep) -> SellerFeePolicyOut:
        try:
            override = await fees.fee_override_for(seller_id)
        except fees.FeePolicyConflict as exc:  # an unreadable stored override: say so, an admin replaces it
            return SellerFeePolicyOut(seller_id=seller_id, override=None, effective=None, conflict=exc.detail)
        return fee_policy_out(settings, seller_id, override)

    @put(
        "/{seller_id:uuid}/fee-override",
        operation_id="adminSetSellerFeeOverride",
        summary="Set a seller's fee override (each field given replaces the platform's whole field)",
        description=(
            "Replaces any earlier override and answers the seller's fee policy with it; new checkouts use it. "
            "400 `validation-error` lists every field (and currency) that is invalid on its own or combined "
            "with the platform fee policy; 404 for an unknown seller."
        ),
        status_code=200,
        raises=[NotFound],
    )
    async def set_fee_override(
        self, seller_id: FromPath[uuid.UUID], data: JSONBody[FeeOverrideIn], settings: SettingsDep
    ) -> SellerFeePolicyOut:
        override = fees.validated_override(
            settings, basis_points=data.basis_points, fixed=data.fixed, minimum=data.minimum, maximum=data.maximum
        )
        await fees.set_fee_override(seller_id, override)
        return fee_policy_out(settings, seller_id, override)

    @delete(
        "/{seller_id:uuid}/fee-override",
        operation_id="adminClearSellerFeeOverride",
        summary="Clear a seller's fee override: the platform fee policy applies",
        description=(
            "204 whether or not there was an override; new checkouts use the platform fee policy. "
            "404 for an unknown seller."
        ),
        status_code=204,
        raises=[NotFound],
    )
    async def clear_fee_override(self, seller_id: FromPath[uuid.UUID]) -> None:
        await fees.set_fee_override(seller_id, None)
