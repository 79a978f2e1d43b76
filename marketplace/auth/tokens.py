"""Token minting and hashing.

Tokens carry 256 bits of randomness, so a fast keyed-free SHA-256 is the right hash: there is nothing
to brute-force, and lookups stay one indexed equality. The role prefix only helps humans and secret
scanners recognise a leaked token.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "mkt_"


def mint_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 200


ORDER_TOKEN_PREFIX = "ord_"


def mint_order_token() -> str:
    """A guest's credential for one order (sent as `X-Order-Token`)."""
    return ORDER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_order_token(value: str) -> bool:
    return value.startswith(ORDER_TOKEN_PREFIX) and 20 <= len(value) <= 200
