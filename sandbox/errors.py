"""Stripe's error envelope: error types, codes, HTTP statuses and the exception the handlers raise."""

from __future__ import annotations

from typing import Any

DOC_URL = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An API error rendered as Stripe's `{"error": {...}}` envelope.

    `saved` says whether the idempotency layer stores (and later replays) the response. Stripe saves
    the result once an endpoint "started executing"; requests that fail parameter validation are not
    saved, so parameter validation raises `bad_param` (saved=False) and everything else is saved.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str = "invalid_request_error",
        status: int = 400,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        headers: dict[str, str] | None = None,
        saved: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.status = status
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.headers = headers or {}
        self.saved = saved

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = DOC_URL + self.code.replace("_", "-")
        if self.decline_code is not None:
            err["decline_code"] = self.decline_code
        err["message"] = self.message
        if self.param is not None:
            err["param"] = self.param
        if request_id is not None:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err["type"] = self.type
        return {"error": err}


def missing(noun: str, object_id: str, param: str = "id") -> StripeError:
    """Stripe's 404 for an id that does not exist in the requesting account."""
    return StripeError(f"No such {noun}: '{object_id}'", status=404, code="resource_missing", param=param)


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 invalid_request_error raised while executing (saved for idempotent replay)."""
    return StripeError(message, param=param, code=code)


def bad_param(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 for a request whose parameters fail validation (not saved for idempotent replay)."""
    return StripeError(message, param=param, code=code, saved=False)


def not_emulated(what: str, param: str) -> StripeError:
    """Something Stripe documents for this version that the sandbox does not emulate."""
    return bad_param(f"The Stripe sandbox does not emulate {what}.", param)


def no_api_key() -> StripeError:
    return StripeError(
        "You did not provide an API key. You need to provide your API key in the Authorization header, "
        "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
        "https://stripe.com/docs/api#authentication for details, or we can help at "
        "https://support.stripe.com/.",
        status=401,
    )


def bad_api_key(key: str) -> StripeError:
    shown = key[:8] + "*" * 12 + key[-4:] if len(key) > 12 else key
    return StripeError(f"Invalid API Key provided: {shown}", status=401, code="api_key_invalid")


def account_invalid(key: str, account: str) -> StripeError:
    shown = key[:8] + "*" * 12 + key[-4:] if len(key) > 12 else key
    return StripeError(
        f"The provided key '{shown}' does not have access to account '{account}' (or that account does "
        "not exist). Application access may have been revoked.",
        status=403,
        code="account_invalid",
        type="invalid_request_error",
    )
