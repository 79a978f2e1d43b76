"""The `/_sandbox` control API for tests and demos (refused in production mode): drive flows, faults, inspection."""

from __future__ import annotations

import json
import re
import secrets as pysecrets
from collections.abc import Callable
from typing import Any

from litestar import Request, Response

from sandbox import money
from sandbox.api.accounts import complete_onboarding, connected, deauthorize, restrict_onboarding
from sandbox.errors import StripeError, invalid
from sandbox.runtime import ApiFault, Sandbox
from sandbox.store import Obj, now

ControlHandler = Callable[[Sandbox, Obj, dict[str, str], dict[str, str]], Any]
CONTROL: list[tuple[str, re.Pattern[str], ControlHandler]] = []


def control(method: str, pattern: str) -> Callable[[ControlHandler], ControlHandler]:
    regex = re.compile("^/_sandbox" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def deco(fn: ControlHandler) -> ControlHandler:
        CONTROL.append((method, regex, fn))
        return fn

    return deco


def _session_owner_check(sb: Sandbox, session_id: str, body: Obj) -> None:
    rec = sb.store.record(session_id)
    if rec is None or rec["kind"] != "checkout.session":
        raise StripeError(f"No such checkout.session: '{session_id}'", status=404, code="resource_missing")
    acct = body.get("stripe_account")
    if acct is not None and rec["owner"] != acct:
        raise StripeError(f"No such checkout.session: '{session_id}'", status=404, code="resource_missing")


def _session(sb: Sandbox, session_id: str) -> Obj:
    obj = sb.store.find(session_id)
    if obj is None:
        raise StripeError(f"No such checkout.session: '{session_id}'", status=404, code="resource_missing")
    return obj


@control("GET", "/health")
def health(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"ok": True, "mode": sb.config.mode, "platform_account": sb.platform, "api_version": "2026-10-28.endive"}


@control("POST", "/reset")
def reset(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    sb.reset()
    return {"ok": True}


@control("POST", "/checkout/sessions/{id}/complete")
def complete_checkout(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    _session_owner_check(sb, path["id"], body)
    outcome = money.pay_with_card(
        sb, path["id"], str(body.get("card") or money.CARD_SUCCESS), body.get("email"), body.get("name")
    )
    return {"outcome": outcome, "session": _session(sb, path["id"])}


@control("POST", "/checkout/sessions/{id}/three_d_secure")
def three_d_secure(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    _session_owner_check(sb, path["id"], body)
    outcome = money.finish_3ds(sb, path["id"], bool(body.get("approve", True)))
    return {"outcome": outcome, "session": _session(sb, path["id"])}


@control("POST", "/checkout/sessions/{id}/bank_debit")
def bank_debit(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    _session_owner_check(sb, path["id"], body)
    money.pay_with_bank(sb, path["id"], body.get("email"))
    return {"outcome": "processing", "session": _session(sb, path["id"])}


@control("POST", "/checkout/sessions/{id}/settle")
def settle(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    _session_owner_check(sb, path["id"], body)
    return {"session": money.settle_bank_debit(sb, path["id"], True)}


@control("POST", "/checkout/sessions/{id}/fail_debit")
def fail_debit(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    _session_owner_check(sb, path["id"], body)
    return {"session": money.settle_bank_debit(sb, path["id"], False)}


@control("POST", "/checkout/sessions/{id}/expire")
def expire(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    _session_owner_check(sb, path["id"], body)
    return {"session": money.expire_session(sb, path["id"])}


@control("POST", "/accounts/{id}/complete_onboarding")
def onboard(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"account": complete_onboarding(sb, path["id"])}


@control("POST", "/accounts/{id}/restrict")
def restrict(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    acct = restrict_onboarding(
        sb,
        path["id"],
        body.get("currently_due"),
        body.get("details_submitted"),
        str(body.get("disabled_reason") or "requirements.past_due"),
    )
    return {"account": acct}


@control("POST", "/accounts/{id}/deauthorize")
def deauth(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"account": deauthorize(sb, path["id"])}


@control("POST", "/account_links/{token}/expire")
def expire_account_link(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    """Age an account link past its `expires_at` (Stripe's links live minutes): opening it then goes to
    its `refresh_url`, as an expired link does on Stripe."""
    rec = sb.store.record(path["token"])
    if rec is None or rec["kind"] != "account_link":
        raise StripeError(f"No such account link: '{path['token']}'", status=404, code="resource_missing")
    rec["obj"]["expires_at"] = now() - 1
    return {"expired": True, "expires_at": rec["obj"]["expires_at"]}


@control("POST", "/charges/{id}/dispute")
def dispute(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"dispute": money.open_dispute(sb, path["id"], body.get("amount"), str(body.get("reason") or "fraudulent"))}


@control("POST", "/disputes/{id}/update")
def dispute_update(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {
        "dispute": money.update_dispute(
            sb, path["id"], None, body.get("status") or "under_review", body.get("evidence"), body.get("metadata")
        )
    }


@control("POST", "/disputes/{id}/close")
def dispute_close(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    status = str(body.get("status") or "lost")
    if status not in ("won", "lost", "warning_closed"):
        raise invalid("status must be won, lost or warning_closed", "status")
    return {"dispute": money.close_dispute(sb, path["id"], None, status)}


@control("POST", "/payouts")
def payout_create(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    account = str(body.get("account") or sb.platform)
    if account != sb.platform:
        connected(sb, account)
    po = money.create_payout(
        sb,
        account,
        int(body["amount"]),
        str(body.get("currency") or "usd"),
        dict(body.get("metadata") or {}),
        body.get("description"),
        automatic=True,
        check_balance=bool(body.get("check_balance", False)),
    )
    return {"payout": po}


@control("POST", "/payouts/{id}/pay")
def payout_pay(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"payout": money.finish_payout(sb, path["id"], True)}


@control("POST", "/payouts/{id}/fail")
def payout_fail(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"payout": money.finish_payout(sb, path["id"], False, str(body.get("failure_code") or "account_closed"))}


@control("POST", "/refunds/{id}/fail")
def refund_fail(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"refund": money.fail_refund(sb, path["id"])}


@control("POST", "/webhook_endpoints/{id}/roll_secret")
def roll_secret(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    rec = sb.store.record(path["id"])
    if rec is None or rec["kind"] != "webhook_endpoint":
        raise StripeError(f"No such webhook_endpoint: '{path['id']}'", status=404, code="resource_missing")
    expires_in = int(body.get("expires_in", 86400))
    for s in rec["x"]["secrets"]:
        if s["expires_at"] is None or s["expires_at"] > now() + expires_in:
            s["expires_at"] = now() + expires_in
    secret = "whsec_" + pysecrets.token_hex(16)
    rec["x"]["secrets"].append({"secret": secret, "expires_at": None})
    return {
        "secret": secret,
        "secrets": [s for s in rec["x"]["secrets"] if s["expires_at"] is None or s["expires_at"] > now()],
    }


@control("POST", "/faults/api")
def api_faults(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    count = int(body.get("count", 1))
    status = body.get("status", 500)
    if status not in (500, 502, 503, 429, "timeout"):
        raise invalid('status must be 500, 502, 503, 429 or "timeout"', "status")
    for _ in range(count):
        sb.api_faults.append(
            ApiFault(status, body.get("retry_after"), float(body.get("hang", 5.0)), body.get("should_retry"))
        )
    return {"api_faults": [f.as_dict() for f in sb.api_faults]}


@control("DELETE", "/faults/api")
def clear_api_faults(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    sb.api_faults.clear()
    return {"api_faults": []}


@control("POST", "/latency")
def latency(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    sb.latency_ms = float(body.get("ms", 0))
    sb.response_latency_ms = float(body.get("response_ms", 0))
    return {"latency_ms": sb.latency_ms, "response_latency_ms": sb.response_latency_ms}


@control("POST", "/latency/release")
def release_answers(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"released": sb.release_answers()}


@control("POST", "/faults/deliveries")
def delivery_faults(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    f = sb.deliverer.faults
    for key in ("duplicate", "reorder", "drop"):
        if key in body:
            setattr(f, key, int(body[key]))
    if "delay" in body:
        f.delay = float(body["delay"])
    return {"delivery_faults": f.as_dict()}


@control("GET", "/faults")
def faults(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {
        "api_faults": [f.as_dict() for f in sb.api_faults],
        "latency_ms": sb.latency_ms,
        "response_latency_ms": sb.response_latency_ms,
        "answers_held": list(sb.answers_held),
        "delivery_faults": sb.deliverer.faults.as_dict(),
    }


@control("GET", "/deliveries")
def deliveries(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    items = sorted(sb.store.deliveries.values(), key=lambda d: d["seq"])
    for key in ("event", "endpoint", "type", "status", "account"):
        if key in query:
            items = [d for d in items if d.get(key) == query[key]]
    return {"data": items}


@control("POST", "/expire_due_sessions")
def expire_due(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    return {"expired": money.expire_due_sessions(sb)}


@control("POST", "/snapshot")
def save_snapshot(sb: Sandbox, body: Obj, path: dict[str, str], query: dict[str, str]) -> Obj:
    if not sb.config.snapshot_path:
        raise invalid("The sandbox runs without --snapshot.")
    sb.store.save_file(sb.config.snapshot_path)
    return {"saved": sb.config.snapshot_path}


def _json(status: int, body: Any) -> Response[bytes]:
    return Response(content=json.dumps(body).encode(), status_code=status, media_type="application/json")


async def dispatch(sb: Sandbox, request: Request[Any, Any, Any]) -> Response[bytes]:
    if sb.config.mode == "production":
        return Response(
            content=json.dumps(
                {
                    "title": "Forbidden",
                    "status": 403,
                    "detail": "The sandbox control API is disabled in production mode.",
                }
            ).encode(),
            status_code=403,
            media_type="application/problem+json",
        )
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _json(400, {"error": {"type": "invalid_request_error", "message": "Body must be JSON."}})
    if not isinstance(body, dict):
        return _json(400, {"error": {"type": "invalid_request_error", "message": "Body must be a JSON object."}})
    method = request.method.upper()
    for m, regex, fn in CONTROL:
        match = regex.match(request.url.path)
        if m == method and match is not None:
            try:
                return _json(200, fn(sb, body, match.groupdict(), dict(request.query_params)))
            except StripeError as exc:
                return _json(exc.status, exc.body())
            except (KeyError, ValueError, TypeError) as exc:
                return _json(
                    400, {"error": {"type": "invalid_request_error", "message": f"Bad control request: {exc!r}"}}
                )
    return _json(
        404,
        {"error": {"type": "invalid_request_error", "message": f"Unknown control route {method} {request.url.path}"}},
    )
