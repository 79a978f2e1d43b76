"""A seller's fee override, stored on the seller row, and the fee policy that applies to the seller.

The override is `sellers.fee_override` (JSONB): null when the platform policy applies unchanged,
otherwise an object with a key for each field the override sets (`basis_points`, `fixed`, `minimum`,
`maximum`); an absent key is left to the platform (`connect.fees.effective_policy`). The platform
policy is `Settings.fees`, read from the environment, so the two are combined at read time: an
override stored under one platform policy can conflict with a later one (an override minimum above a
new platform maximum); the seller's policy is then refused (`FeePolicyConflict`), never guessed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from connect.fees import FIELDS, FeeOverride, FeePolicy, effective_policy, fee_problems
from marketplace.lib.problems import NotFound, Problem
from marketplace.lib.settings import Settings
from marketplace.sellers.tables import Seller

log = logging.getLogger("marketplace.sellers.fees")


class FeePolicyConflict(Problem):
    """The seller's stored override and the platform policy no longer make a valid policy together."""

    status = 500
    slug = "fee-policy-conflict"
    title = "Fee policy conflict"


def override_to_json(override: FeeOverride) -> dict[str, Any]:
    """The stored form: a key for each field the override sets."""
    stored: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(override, name)
        if value is not None:
            stored[name] = value if isinstance(value, int) else dict(value)
    return stored


def override_from_json(stored: Mapping[str, Any]) -> FeeOverride:
    """The override a stored object describes; ValueError when it is not a valid one."""
    unknown = set(stored) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fee override fields: {', '.join(sorted(unknown))}")
    return FeeOverride(**{name: stored.get(name) for name in FIELDS})


def _decode(raw: object) -> FeeOverride | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"a stored fee override must be a JSON object, got {type(value).__name__}")
    return override_from_json(value)


async def fee_override_for(seller_id: uuid.UUID) -> FeeOverride | None:
    """The seller's override (None: none set). NotFound for an unknown seller."""
    row = await Seller.select(Seller.fee_override).where(Seller.id == seller_id).first()
    if row is None:
        raise NotFound(f"No seller {seller_id}.")
    return stored_override(seller_id, row["fee_override"])


def stored_override(seller_id: uuid.UUID, raw: object) -> FeeOverride | None:
    """The override as read from `sellers.fee_override`; FeePolicyConflict when what is stored is not one."""
    try:
        return _decode(raw)
    except ValueError as exc:
        log.error("seller %s has an invalid stored fee override: %s", seller_id, exc)
        raise FeePolicyConflict(f"The fee override stored for seller {seller_id} is not valid.") from exc


def combine(settings: Settings, seller_id: uuid.UUID, override: FeeOverride | None) -> FeePolicy:
    """`effective_policy` of the platform's and this override; FeePolicyConflict when they clash."""
    try:
        return effective_policy(settings.fees, override)
    except ValueError as exc:
        log.error("seller %s: the fee override conflicts with the platform fee policy: %s", seller_id, exc)
        raise FeePolicyConflict(
            f"The fee override of seller {seller_id} conflicts with the platform fee policy ({exc}); "
            "an admin must change or clear it."
        ) from exc


async def fee_policy_for(settings: Settings, seller_id: uuid.UUID) -> FeePolicy:
    """The fee policy for the seller's charges: the platform's (`settings.fees`) with the seller's
    override applied field by field. NotFound for an unknown seller; FeePolicyConflict (500) when the
    stored override no longer fits the platform policy, so no charge is made with a guessed fee."""
    return combine(settings, seller_id, await fee_override_for(seller_id))


async def set_fee_override(seller_id: uuid.UUID, override: FeeOverride | None) -> None:
    """Store the seller's override, replacing any earlier one; None clears it. NotFound for an
    unknown seller. The caller checks the override against the platform policy first (`combine`)."""
    stored = None if override is None else override_to_json(override)
    updated = await Seller.update({Seller.fee_override: stored}).where(Seller.id == seller_id).returning(Seller.id)
    if not updated:
        raise NotFound(f"No seller {seller_id}.")


def validated_override(
    settings: Settings,
    *,
    basis_points: int | None,
    fixed: Mapping[str, int] | None,
    minimum: Mapping[str, int] | None,
    maximum: Mapping[str, int] | None,
) -> FeeOverride:
    """The override an admin asked for, checked on its own and against the platform policy; a 400
    `validation-error` problem listing every reason (one entry per field and currency) otherwise."""
    fields: dict[str, Any] = {"basis_points": basis_points, "fixed": fixed, "minimum": minimum, "maximum": maximum}
    problems = fee_problems(**fields)
    if not problems:
        merged = {name: getattr(settings.fees, name) if fields[name] is None else fields[name] for name in FIELDS}
        problems = [
            (name, f"{message} (the override combined with the platform fee policy)")
            for name, message in fee_problems(**merged)
        ]
    if problems:
        raise Problem(
            "The fee override is not valid; see errors.",
            slug="validation-error",
            title="Bad request",
            errors=[{"key": name, "message": message, "source": "body"} for name, message in problems],
        )
    return FeeOverride(**fields)
