"""Sellers: the marketplace profile of a seller principal. Connected-account state lives beside it."""

from __future__ import annotations

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Integer, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.db import DB


class Seller(Table, tablename="sellers", db=DB):
    id = UUID(primary_key=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, unique=True, index=True)
    display_name = Varchar(length=200)
    email = Varchar(length=320)
    country = Varchar(length=2)
    business_type = Varchar(length=32)
    # None: the platform's default account profile applies when the connected account is created.
    account_profile = Varchar(length=32, null=True, default=None)
    created_at = Timestamptz()


class ConnectedAccount(Table, tablename="connected_accounts", db=DB):
    """A seller's Stripe connected account and the state last read from Stripe.

    The row is written before Stripe is called (`stripe_account_id` still null), so the idempotency key
    `account:{seller_id}` always names the one account this seller can ever get.
    """

    id = UUID(primary_key=True)
    seller = ForeignKey(references=Seller, on_delete=OnDelete.cascade, unique=True, index=True)
    stripe_account_id = Varchar(length=255, null=True, default=None, unique=True)
    profile = Varchar(length=32)
    status = Varchar(length=16, default="onboarding", index=True)
    status_version = Integer(default=0)
    charges_enabled = Boolean(default=False)
    payouts_enabled = Boolean(default=False)
    details_submitted = Boolean(default=False)
    requirements = JSONB(default={})
    capabilities = JSONB(default={})
    dashboard = Varchar(length=16, null=True, default=None)
    disconnected_at = Timestamptz(null=True, default=None)
    # First time the seller's browser came back through our onboarding return URL.
    onboarding_returned_at = Timestamptz(null=True, default=None)
    # When the state above was read from Stripe, and by whom; an older read never overwrites a newer one.
    synced_at = Timestamptz(null=True, default=None)
    synced_from = Varchar(length=255, null=True, default=None)
    created_at = Timestamptz()


class AccountLinkRequest(Table, tablename="account_link_requests", db=DB):
    """One request for a hosted link (onboarding, update or Express dashboard login).

    Written before Stripe is called; its id is the link's idempotency key and, for onboarding links,
    the unguessable state in the refresh/return URLs that the seller's browser comes back through.
    The link URL itself is a credential and is never stored.
    """

    id = UUID(primary_key=True)
    seller = ForeignKey(references=Seller, on_delete=OnDelete.cascade, index=True)
    account = ForeignKey(references=ConnectedAccount, on_delete=OnDelete.cascade)
    kind = Varchar(length=32)
    created_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
