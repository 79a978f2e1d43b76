"""Principals and their bearer tokens (only SHA-256 hashes are stored)."""

from __future__ import annotations

from enum import StrEnum

from piccolo.columns import UUID, ForeignKey, OnDelete, Timestamptz, Varchar
from piccolo.table import Table

from marketplace.lib.db import DB


class Role(StrEnum):
    seller = "seller"
    buyer = "buyer"
    admin = "admin"


class Principal(Table, tablename="principals", db=DB):
    """Anyone who calls the API with a bearer token."""

    id = UUID(primary_key=True)
    role = Varchar(length=16, choices=Role, index=True)
    display_name = Varchar(length=200)
    email = Varchar(length=320, null=True, default=None)
    created_at = Timestamptz()


class ApiToken(Table, tablename="api_tokens", db=DB):
    """A bearer token; the plaintext is shown once at issue and never stored."""

    id = UUID(primary_key=True)
    principal = ForeignKey(references=Principal, on_delete=OnDelete.cascade, index=True)
    token_hash = Varchar(length=64, unique=True)
    label = Varchar(length=100, default="")
    created_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
