"""Hosted pages for a person in a browser: Checkout (cards, 3-D Secure, bank debit, promo codes) and onboarding."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from sandbox import money
from sandbox.api.accounts import complete_onboarding, restrict_onboarding
from sandbox.api.checkout import apply_discount, promotion_usable
from sandbox.errors import StripeError
from sandbox.runtime import Sandbox
from sandbox.store import Obj, new_id, now

E = html.escape
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:640px;margin:2em auto;padding:0 1em;color:#222}"
    "table{width:100%;border-collapse:collapse}td{padding:.3em 0}td.r{text-align:right}"
    ".err{background:#fde8e8;color:#9b1c1c;padding:.6em;border-radius:4px}"
    "form{margin:1em 0}input{padding:.4em;font-size:1em}button{padding:.5em 1em;font-size:1em}"
    ".box{border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}"
)


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    # An empty icon of its own: otherwise the browser asks for /favicon.ico, which the sandbox 404s and logs.
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{E(title)}</title><link rel='icon' href='data:,'>"
        f"<style>{STYLE}</style></head><body><p><b>Stripe sandbox</b> (test mode)</p>{body}</body></html>"
    )
    return Response(content=doc, status_code=status, media_type="text/html")


def _redirect(url: str) -> Redirect:
    return Redirect(path=url, status_code=303)


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    body = (await request.body()).decode()
    return dict(parse_qsl(body, keep_blank_values=True))


def _fmt(amount: int, currency: str) -> str:
    if currency == "usd":
        return f"{amount / 100:,.2f} USD"
    return money.money(amount, currency)


def _session(sb: Sandbox, session_id: str) -> tuple[Obj, Obj] | None:
    rec = sb.store.record(session_id)
    if rec is None or rec["kind"] != "checkout.session":
        return None
    return rec["obj"], rec["x"]


def _success_target(session: Obj) -> str | None:
    url: str | None = session["success_url"]
    if url is None:
        return None
    return url.replace("{CHECKOUT_SESSION_ID}", session["id"])


def _summary(session: Obj, x: Obj) -> str:
    rows = "".join(
        f"<tr><td>{E(i['description'] or '')} x {i['quantity']}</td>"
        f"<td class='r'>{E(_fmt(i['amount_subtotal'], i['currency']))}</td></tr>"
        for i in x["line_items"]
    )
    cur = session["currency"]
    disc = session["total_details"]["amount_discount"]
    if disc:
        rows += f"<tr><td>Discount</td><td class='r'>-{E(_fmt(disc, cur))}</td></tr>"
    rows += (
        f"<tr><td><b>Total</b></td><td class='r' id='total'><b>{E(_fmt(session['amount_total'], cur))}</b></td></tr>"
    )
    return f"<table>{rows}</table>"


def checkout_body(sb: Sandbox, session: Obj, x: Obj, error: str | None = None) -> str:
    sid = E(session["id"])
    base = f"/c/pay/{sid}"
    parts = [f"<h1>Pay {E(_fmt(session['amount_total'], session['currency']))}</h1>", _summary(session, x)]
    if error:
        parts.append(f"<p class='err' role='alert'>{E(error)}</p>")
    email = E(session["customer_email"] or "")
    if session["allow_promotion_codes"] and not session["discounts"]:
        parts.append(
            f"<form method='post' action='{base}/promo'><label>Promotion code <input name='code'></label> "
            "<button type='submit'>Apply</button></form>"
        )
    if session["amount_total"] == 0:
        parts.append(
            f"<form method='post' action='{base}/free' class='box'><label>Email <input name='email' value='{email}'>"
            "</label><p>No payment is required.</p><button type='submit'>Complete order</button></form>"
        )
    else:
        parts.append(
            f"<form method='post' action='{base}/card' class='box'><h2>Card</h2>"
            f"<label>Email <input name='email' value='{email}'></label><br>"
            "<label>Card number <input name='card' value='4242 4242 4242 4242' autocomplete='off'></label><br>"
            "<label>Name <input name='name' value=''></label><br>"
            "<small>4242 4242 4242 4242 succeeds · 4000 0000 0000 0002 declines · 4000 0000 0000 9995 insufficient "
            "funds · 4000 0025 0000 3155 3-D Secure</small><br><button type='submit'>Pay</button></form>"
        )
        if "us_bank_account" in session["payment_method_types"]:
            parts.append(
                f"<form method='post' action='{base}/bank' class='box'><h2>US bank account (ACH debit)</h2>"
                f"<label>Email <input name='email' value='{email}'></label><br>"
                "<p>Test bank: STRIPE TEST BANK ••••6789. The payment settles later.</p>"
                "<button type='submit'>Pay with bank debit</button></form>"
            )
    if session["cancel_url"]:
        parts.append(
            f"<form method='post' action='{base}/cancel'><button type='submit'>← Back (cancel)</button></form>"
        )
    return "".join(parts)


def _closed_page(session: Obj) -> Response[str]:
    if session["status"] == "complete":
        return _page("Complete", "<h1>This Checkout Session is already complete.</h1>")
    return _page("Expired", "<h1>This Checkout Session has expired.</h1>", 410)


def _done(session: Obj) -> Response[str] | Redirect:
    target = _success_target(session)
    if target is None:
        return _page("Thank you", "<h1>Payment complete.</h1>")
    return _redirect(target)


def routes(sb: Sandbox) -> list[Any]:
    """The hosted-page handlers, bound to one sandbox."""

    @get("/c/pay/{session_id:str}", sync_to_thread=False)
    def checkout_page(session_id: FromPath[str]) -> Response[str]:
        found = _session(sb, session_id)
        if found is None:
            return _page("Not found", "<h1>Something went wrong</h1><p>This page could not be found.</p>", 404)
        session, x = found
        if session["status"] != "open":
            return _closed_page(session)
        return _page("Checkout", checkout_body(sb, session, x))

    async def _action(
        session_id: FromPath[str], request: Request[Any, Any, Any], kind: str
    ) -> Response[str] | Redirect:
        form = await _form(request)
        found = _session(sb, session_id)
        if found is None:
            return _page("Not found", "<h1>Not found</h1>", 404)
        session, x = found
        if session["status"] != "open":
            return _closed_page(session)
        try:
            if kind == "card":
                outcome = money.pay_with_card(
                    sb, session_id, form.get("card", ""), form.get("email") or None, form.get("name") or None
                )
                if outcome == "requires_action":
                    return _redirect(f"/c/pay/{session_id}/3ds")
                if outcome == "declined":
                    pi = sb.store.find(session["payment_intent"]) or {}
                    message = (pi.get("last_payment_error") or {}).get("message", "Your card was declined.")
                    return _page("Checkout", checkout_body(sb, session, x, message), 402)
                return _done(session)
            if kind == "bank":
                money.pay_with_bank(sb, session_id, form.get("email") or None)
                return _done(session)
            if kind == "free":
                money.complete_free(sb, session_id, form.get("email") or None)
                return _done(session)
            if kind == "promo":
                code = form.get("code", "").strip()
                match = [
                    p
                    for p in sb.store.all("promotion_code", sb.store.owner(session_id))
                    if p["code"].lower() == code.lower() and p["active"]
                ]
                if not match or not session["allow_promotion_codes"]:
                    return _page("Checkout", checkout_body(sb, session, x, "This code is invalid."), 400)
                coupon = promotion_usable(sb, match[0], session["amount_subtotal"], session["currency"], "code")
                apply_discount(sb, session, x, coupon, match[0])
                return _redirect(f"/c/pay/{session_id}")
            if kind == "cancel":
                return _redirect(session["cancel_url"] or f"/c/pay/{session_id}")
        except StripeError as exc:
            return _page("Checkout", checkout_body(sb, session, x, exc.message), 400)
        return _page("Not found", "<h1>Not found</h1>", 404)

    @post("/c/pay/{session_id:str}/card")
    async def pay_card(session_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        return await _action(session_id, request, "card")

    @post("/c/pay/{session_id:str}/bank")
    async def pay_bank(session_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        return await _action(session_id, request, "bank")

    @post("/c/pay/{session_id:str}/free")
    async def pay_free(session_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        return await _action(session_id, request, "free")

    @post("/c/pay/{session_id:str}/promo")
    async def promo(session_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        return await _action(session_id, request, "promo")

    @post("/c/pay/{session_id:str}/cancel")
    async def cancel(session_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        return await _action(session_id, request, "cancel")

    @get("/c/pay/{session_id:str}/3ds", sync_to_thread=False)
    def three_ds_page(session_id: FromPath[str]) -> Response[str]:
        found = _session(sb, session_id)
        if found is None:
            return _page("Not found", "<h1>Not found</h1>", 404)
        session, _x = found
        pi = sb.store.find(session["payment_intent"] or "")
        if session["status"] != "open" or pi is None or pi["status"] != "requires_action":
            return _page("3-D Secure", "<h1>No authentication is pending.</h1>", 409)
        return _page(
            "3-D Secure",
            f"<h1>3-D Secure authentication</h1><p>Approve the payment of "
            f"{E(_fmt(pi['amount'], pi['currency']))}?</p>"
            f"<form method='post' action='/c/pay/{E(session_id)}/3ds'>"
            "<button name='action' value='approve'>Complete authentication</button> "
            "<button name='action' value='fail'>Fail authentication</button></form>",
        )

    @post("/c/pay/{session_id:str}/3ds")
    async def three_ds(session_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        form = await _form(request)
        found = _session(sb, session_id)
        if found is None:
            return _page("Not found", "<h1>Not found</h1>", 404)
        session, x = found
        if session["status"] != "open":
            return _closed_page(session)
        try:
            result = money.finish_3ds(sb, session_id, form.get("action") == "approve")
        except StripeError as exc:
            return _page("3-D Secure", f"<p class='err'>{E(exc.message)}</p>", 409)
        if result == "succeeded":
            return _done(session)
        return _page(
            "Checkout", checkout_body(sb, session, x, "We are unable to authenticate your payment method."), 402
        )

    # ---- onboarding ----------------------------------------------------------------------------
    @get("/setup/{token:str}", sync_to_thread=False)
    def onboarding(token: FromPath[str]) -> Response[str] | Redirect:
        rec = sb.store.record(token)
        if rec is None or rec["kind"] != "account_link":
            return _page("Not found", "<h1>This link is invalid.</h1>", 404)
        link = rec["obj"]
        if link["used"] or link["expires_at"] <= now() or sb.store.record(link["account"]) is None:
            return _redirect(link["refresh_url"])
        link["used"] = True
        form_id = new_id("obf_", 24)
        sb.store.add(
            "onboarding_form",
            sb.platform,
            {
                "id": form_id,
                "account": link["account"],
                "return_url": link["return_url"],
                "expires_at": now() + 3600,
                "done": False,
            },
        )
        acct = sb.store.find(link["account"]) or {}
        due = acct.get("requirements", {}).get("currently_due", [])
        items = "".join(f"<li>{E(d)}</li>" for d in due) or "<li>Nothing due</li>"
        return _page(
            "Onboarding",
            f"<h1>Set up payouts for {E(link['account'])}</h1><p>Requirements currently due:</p><ul>{items}</ul>"
            f"<form method='post' action='/setup/form/{form_id}'>"
            "<label>Business URL <input name='url' value='https://seller.example'></label><br>"
            "<button name='action' value='complete'>Submit (complete onboarding)</button> "
            "<button name='action' value='incomplete'>Save and finish later (leave requirements due)</button>"
            "</form>",
        )

    @post("/setup/form/{form_id:str}")
    async def onboarding_submit(form_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[str] | Redirect:
        form = await _form(request)
        rec = sb.store.record(form_id)
        if rec is None or rec["kind"] != "onboarding_form" or rec["obj"]["done"] or rec["obj"]["expires_at"] <= now():
            return _page("Expired", "<h1>This onboarding session is no longer valid.</h1>", 410)
        of = rec["obj"]
        of["done"] = True
        if form.get("action") == "complete":
            complete_onboarding(sb, of["account"])
        else:
            restrict_onboarding(sb, of["account"], None, details_submitted=False)
        return _redirect(of["return_url"])

    @get("/express/{account_id:str}/{token:str}", sync_to_thread=False)
    def express_dashboard(account_id: FromPath[str], token: FromPath[str]) -> Response[str]:
        rec = sb.store.record(token)
        if rec is None or rec["kind"] != "login_link" or rec["obj"]["account"] != account_id:
            return _page("Not found", "<h1>This link is invalid.</h1>", 404)
        bal = sb.store.balances.get(account_id, {})
        rows = (
            "".join(f"<li>{E(_fmt(v['available'], c))} available</li>" for c, v in bal.items()) or "<li>No balance</li>"
        )
        return _page("Express Dashboard", f"<h1>Express Dashboard — {E(account_id)}</h1><ul>{rows}</ul>")

    return [
        checkout_page,
        pay_card,
        pay_bank,
        pay_free,
        promo,
        cancel,
        three_ds_page,
        three_ds,
        onboarding,
        onboarding_submit,
        express_dashboard,
    ]
