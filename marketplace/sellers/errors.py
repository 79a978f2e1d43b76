"""The problems seller onboarding and the who-may-sell rules answer with (each maps to one HTTP problem)."""

from __future__ import annotations

from marketplace.lib.problems import Conflict, Problem


class AccountNotCreated(Conflict):
    """The seller has no connected account yet: create it with `POST /sellers/me/stripe-account`."""

    slug = "no-connected-account"
    title = "No connected account yet"


class AccountDisconnected(Conflict):
    """The connected account was disconnected from the platform; create a new one to sell again."""

    slug = "account-disconnected"
    title = "Account disconnected"


class DashboardLinkUnavailable(Conflict):
    """Only platform-managed (Express dashboard) accounts get a login link."""

    slug = "dashboard-link-unavailable"
    title = "No Express dashboard"


class OnboardingIncomplete(Conflict):
    """Stripe opens the Express dashboard only for accounts that completed onboarding."""

    slug = "onboarding-incomplete"
    title = "Onboarding incomplete"


class UnsupportedAccount(Problem):
    """The seller's country or business type cannot have a connected account."""

    status = 422
    slug = "unsupported-account"
    title = "Unsupported account details"


class SellerCannotSell(Conflict):
    """The seller's account cannot take a new checkout (`seller_status` says why)."""

    slug = "seller-cannot-sell"
    title = "Seller cannot take payments"
