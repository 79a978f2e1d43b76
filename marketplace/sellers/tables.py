"""Sellers: the marketplace profile of a seller principal. Connected-account state lives beside it."""

from __future__ import annotations

from piccolo.columns import JSONB, UUID, BigInt, Boolean, ForeignKey, Integer, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.auth.tables import Principal
from marketplace.lib.db import DB


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
    # None: the platform fee policy applies as configured. Otherwise the seller's connect.fees.FeeOverride
    # as {"basis_points": …, "fixed": {…}, "minimum": {…}, "maximum": {…}}, a key only where it is set
    # (marketplace.sellers.fees).
    fee_override = JSONB(null=True, default=None)


class ConnectedAccount(Table, tablename="connected_accounts", db=DB):
    """One of a seller's Stripe connected accounts and the state last read from Stripe.

    A seller has one row per connection: generation 1 is the first account; a seller whose account was
    disconnected (deauthorized) connects again with a new row, generation n + 1 (unique per seller and
    generation, see the migration). The seller's current account is the row of the highest generation.
    The row is written before Stripe is called (`stripe_account_id` still null), with the exact creation
    parameters, so a retry sends the same parameters under the same idempotency key
    (`account:{seller_id}` for generation 1, `account:{seller_id}:{n}` after that).
    """

    id = UUID(primary_key=True)
    seller = ForeignKey(references=Seller, on_delete=OnDelete.cascade, index=True)
    generation = Integer(default=1)
    stripe_account_id = Varchar(length=255, null=True, default=None, unique=True)
    profile = Varchar(length=32)
    # The `accounts.create` parameters as first sent (null only on rows older than this column).
    create_params = JSONB(null=True, default=None)
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
    # When the state above was read from Stripe, and by whom (`create`, `return`, `event:evt_…`, `admin`),
    # and the ticket (from the `account_sync_tickets` sequence, taken before the read) of the read stored:
    # a read is stored only if its ticket is larger, so an older, slower read never overwrites a newer one.
    synced_at = Timestamptz(null=True, default=None)
    synced_from = Varchar(length=255, null=True, default=None)
    sync_ticket = BigInt(default=0)
    created_at = Timestamptz()


class AccountLinkRequest(Table, tablename="account_link_requests", db=DB):
    """One request for a hosted link (onboarding, update or Express dashboard login).

    Written before Stripe is called; its id is the link's idempotency key and, for onboarding links,
    the unguessable state in the refresh/return URLs that the seller's browser comes back through.
    The link URL itself is a credential and is never stored; so is the state: a refresh consumes it
    (`used_at`), and the state minted by a refresh keeps the `valid_until` of the one it replaced, so
    a chain of refreshes never outlives the lifetime granted when the seller asked for the first link.
    """

    id = UUID(primary_key=True)
    seller = ForeignKey(references=Seller, on_delete=OnDelete.cascade, index=True)
    account = ForeignKey(references=ConnectedAccount, on_delete=OnDelete.cascade)
    kind = Varchar(length=32)
    created_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)  # the Stripe link's own expiry (minutes)
    # Until when the refresh/return URLs carrying this id work (null on rows older than the column:
    # created_at + 24 h), and when a refresh consumed it.
    valid_until = Timestamptz(null=True, default=None)
    used_at = Timestamptz(null=True, default=None)
