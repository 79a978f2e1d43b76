"""The seller area's URLs handed to Stripe, built from the route definitions (never written by hand).

The onboarding controller's paths are these constants, and the refresh/return URLs put in an Account
Link are built from the same constants, so renaming a route cannot leave Stripe sending sellers to a
path that no longer exists.
"""

from __future__ import annotations

import uuid

ONBOARDING_REDIRECTS = "/sellers/onboarding/{link_state:uuid}"
ONBOARDING_REFRESH = "/refresh"
ONBOARDING_RETURN = "/return"


def _fill(template: str, **values: str) -> str:
    """`/a/{name:type}/b` with `name` replaced (Litestar's path-parameter syntax)."""
    out = template
    for name, value in values.items():
        start = out.index("{" + name)
        out = out[:start] + value + out[out.index("}", start) + 1 :]
    return out


def onboarding_refresh_url(public_base_url: str, link_state: uuid.UUID) -> str:
    return public_base_url + _fill(ONBOARDING_REDIRECTS, link_state=str(link_state)) + ONBOARDING_REFRESH


def onboarding_return_url(public_base_url: str, link_state: uuid.UUID) -> str:
    return public_base_url + _fill(ONBOARDING_REDIRECTS, link_state=str(link_state)) + ONBOARDING_RETURN
