"""Accounts, capabilities, account links and login links; onboarding state changes used by pages and control."""

from __future__ import annotations

from stripe.params import (
    AccountCapabilityListParams,
    AccountCapabilityRetrieveParams,
    AccountCreateParams,
    AccountDeleteParams,
    AccountLinkCreateParams,
    AccountListParams,
    AccountLoginLinkCreateParams,
    AccountRetrieveCurrentParams,
    AccountRetrieveParams,
    AccountUpdateParams,
)

from sandbox import objects
from sandbox.api.router import LIST, Ctx, route
from sandbox.errors import StripeError, bad_param, invalid
from sandbox.forms import get_bool, get_dict, get_enum, get_int, get_str, metadata, req
from sandbox.runtime import Sandbox
from sandbox.store import Obj, changes, created_filter, new_id, now, paginate, snapshot

CURRENCY_BY_COUNTRY = {
    "US": "usd",
    "GB": "gbp",
    "CA": "cad",
    "AU": "aud",
    "JP": "jpy",
    "CH": "chf",
    "SE": "sek",
    "NZ": "nzd",
}
EURO = {"AT", "BE", "DE", "ES", "FI", "FR", "IE", "IT", "LU", "NL", "PT"}
LINK_TTL = 300


def _platform_account(sb: Sandbox) -> Obj:
    rec = sb.store.record(sb.platform)
    if rec is None:
        acct = objects.account(
            sb.platform,
            account_type="standard",
            controller={"type": "account"},
            country="US",
            email="platform@sandbox.example",
            business_type="company",
            default_currency="usd",
            capabilities={"card_payments": "active", "transfers": "active"},
            metadata={},
        )
        acct.update(
            charges_enabled=True, payouts_enabled=True, details_submitted=True, requirements=objects.requirements()
        )
        acct["business_profile"]["name"] = "Sandbox Platform"
        sb.store.add("platform_account", sb.platform, acct)
        return acct
    obj: Obj = rec["obj"]
    return obj


def connected(sb: Sandbox, account_id: str, param: str = "account", allow_deauthorized: bool = False) -> Obj:
    rec = sb.store.record(account_id)
    if rec is None or rec["kind"] != "account" or rec["owner"] != sb.platform:
        raise StripeError(f"No such account: '{account_id}'", status=404, code="resource_missing", param=param)
    if rec["x"].get("deauthorized") and not allow_deauthorized:
        raise StripeError(
            f"The platform does not have access to account '{account_id}' (or that account does not exist). "
            "Application access may have been revoked.",
            status=403,
            code="account_invalid",
        )
    obj: Obj = rec["obj"]
    return obj


def _controller(params: Obj) -> Obj:
    """Controller properties with the API reference's defaults (full dashboard, fees paid by the account,
    Stripe liable for losses, Stripe collects requirements) and its rules for combining them."""
    ctrl = get_dict(params, "controller")
    fees = get_dict(ctrl, "fees", "controller[fees]")
    losses = get_dict(ctrl, "losses", "controller[losses]")
    dash = get_dict(ctrl, "stripe_dashboard", "controller[stripe_dashboard]")
    dash_type = get_enum(dash, "type", ("express", "full", "none"), "controller[stripe_dashboard][type]") or "full"
    coll = (
        get_enum(ctrl, "requirement_collection", ("application", "stripe"), "controller[requirement_collection]")
        or "stripe"
    )
    payer = get_enum(fees, "payer", ("account", "application"), "controller[fees][payer]") or "account"
    loss = get_enum(losses, "payments", ("application", "stripe"), "controller[losses][payments]") or "stripe"
    if loss == "application" and payer != "application":
        raise bad_param(
            "Setting `controller[losses][payments]` to `application` requires `controller[fees][payer]` to be "
            "`application`.",
            "controller[fees][payer]",
        )
    if coll == "application" and dash_type != "none":
        raise bad_param(
            "When `controller[requirement_collection]` is `application`, `controller[stripe_dashboard][type]` must "
            "be `none`.",
            "controller[stripe_dashboard][type]",
        )
    if dash_type != "full" and loss == "stripe" and payer == "account":
        raise bad_param(
            "Accounts without full Stripe Dashboard access must have `controller[fees][payer]` set to `application`.",
            "controller[fees][payer]",
        )
    return {
        "fees": {"payer": payer},
        "is_controller": True,
        "losses": {"payments": loss},
        "requirement_collection": coll,
        "stripe_dashboard": {"type": dash_type},
        "type": "application",
    }


def _capabilities(params: Obj, current: dict[str, str] | None = None) -> dict[str, str]:
    caps = dict(current or {})
    for name, spec in get_dict(params, "capabilities").items():
        if not isinstance(spec, dict):
            raise bad_param("Invalid hash", f"capabilities[{name}]")
        requested = get_bool(spec, "requested", f"capabilities[{name}][requested]")
        if requested and name not in caps:
            caps[name] = "inactive"
        elif requested is False:
            caps.pop(name, None)
    return caps


UPDATE_PARAMS = (
    "email",
    "business_type",
    "capabilities",
    "metadata",
    "default_currency",
    "business_profile",
    "tos_acceptance[date]",
    "tos_acceptance[ip]",
    "tos_acceptance[user_agent]",
)


def _tos(params: Obj, current: Obj, controller: Obj) -> Obj:
    """`tos_acceptance` as given; only a platform that collects requirements (Custom) may record it."""
    tos = get_dict(params, "tos_acceptance")
    if tos and controller.get("requirement_collection") != "application":
        raise invalid(
            "You cannot accept the Terms of Service on behalf of an account where Stripe collects requirements "
            "(`controller[requirement_collection]=stripe`, which includes Standard and Express accounts).",
            "tos_acceptance",
        )
    date = get_int(tos, "date", "tos_acceptance[date]")
    return {
        "date": current["date"] if date is None else date,
        "ip": get_str(tos, "ip", "tos_acceptance[ip]") or current["ip"],
        "user_agent": get_str(tos, "user_agent", "tos_acceptance[user_agent]") or current["user_agent"],
    }


@route("POST", "/v1/accounts", AccountCreateParams, (*UPDATE_PARAMS, "type", "controller", "country"))
def create_account(ctx: Ctx) -> Obj:
    if not ctx.is_platform:
        raise invalid("Connected accounts cannot create other accounts.")
    p = ctx.params
    legacy = get_enum(p, "type", ("standard", "express", "custom"))
    if legacy and "controller" in p:
        raise bad_param("You may only specify one of these parameters: controller, type.", "controller")
    if legacy:
        ctrl = objects.controller_for_type(legacy)
        acct_type = legacy
    else:
        ctrl = _controller(p)
        acct_type = objects.type_for_controller(ctrl)
    country = (get_str(p, "country") or "US").upper()
    currency = (
        get_str(p, "default_currency") or CURRENCY_BY_COUNTRY.get(country) or ("eur" if country in EURO else "usd")
    )
    caps = _capabilities(p)
    if acct_type == "standard" and not caps:
        caps = {"card_payments": "inactive", "transfers": "inactive"}
    bp = {k: v for k, v in get_dict(p, "business_profile").items() if isinstance(v, str)}
    acct = objects.account(
        new_id("acct_1", 15),
        account_type=acct_type,
        controller=ctrl,
        country=country,
        email=get_str(p, "email"),
        business_type=get_enum(p, "business_type", ("company", "government_entity", "individual", "non_profit")),
        default_currency=currency,
        capabilities=caps,
        metadata=metadata(p),
        business_profile=bp,
    )
    acct["tos_acceptance"] = _tos(p, acct["tos_acceptance"], acct["controller"])
    ctx.sb.store.add("account", ctx.platform, acct, {"requested_at": now()})
    return acct


def _get_account(ctx: Ctx, account_id: str) -> Obj:
    if account_id == ctx.platform:
        return _platform_account(ctx.sb)
    if not ctx.is_platform and account_id != ctx.account:
        raise StripeError(f"No such account: '{account_id}'", status=404, code="resource_missing", param="account")
    return connected(ctx.sb, account_id)


@route("GET", "/v1/account", AccountRetrieveCurrentParams)
def current_account(ctx: Ctx) -> Obj:
    return _get_account(ctx, ctx.account)


@route("GET", "/v1/accounts/{id}", AccountRetrieveParams)
def retrieve_account(ctx: Ctx) -> Obj:
    return _get_account(ctx, ctx.path["id"])


@route("POST", "/v1/accounts/{id}", AccountUpdateParams, UPDATE_PARAMS)
def update_account(ctx: Ctx) -> Obj:
    acct = _get_account(ctx, ctx.path["id"])
    p = ctx.params
    before = snapshot(acct)
    if "email" in p:
        acct["email"] = get_str(p, "email")
    if "business_type" in p:
        acct["business_type"] = get_enum(
            p, "business_type", ("company", "government_entity", "individual", "non_profit")
        )
    if "default_currency" in p:
        acct["default_currency"] = get_str(p, "default_currency")
    for k, v in get_dict(p, "business_profile").items():
        if k in acct["business_profile"] and isinstance(v, str):
            acct["business_profile"][k] = v or None
    acct["tos_acceptance"] = _tos(p, acct["tos_acceptance"], acct["controller"])
    acct["capabilities"] = _capabilities(p, acct["capabilities"])
    acct["metadata"] = metadata(p, acct["metadata"])
    previous = changes(before, acct)
    if previous and acct["id"] != ctx.platform:
        ctx.sb.emit(acct["id"], "account.updated", acct, previous)
    return acct


@route("DELETE", "/v1/accounts/{id}", AccountDeleteParams)
def delete_account(ctx: Ctx) -> Obj:
    if not ctx.is_platform:
        raise invalid("Only the platform can delete its connected accounts.")
    acct = connected(ctx.sb, ctx.path["id"], "id")
    ctx.sb.store.remove(acct["id"])
    return {"id": acct["id"], "object": "account", "deleted": True}


@route("GET", "/v1/accounts", AccountListParams, LIST)
def list_accounts(ctx: Ctx) -> Obj:
    if not ctx.is_platform:
        return paginate([], ctx.params, "/v1/accounts")
    items = [
        a for a in ctx.sb.store.all("account", ctx.platform) if not ctx.sb.store.hidden(a["id"]).get("deauthorized")
    ]
    items = created_filter(items, ctx.params)
    return paginate(items, ctx.params, "/v1/accounts")


def _capability(sb: Sandbox, acct: Obj, name: str) -> Obj:
    due = acct["requirements"]["currently_due"] if acct["capabilities"].get(name) != "active" else []
    requested_at = int(sb.store.hidden(acct["id"]).get("requested_at") or acct["created"])
    return objects.capability(acct["id"], name, acct["capabilities"][name], requested_at, due)


@route("GET", "/v1/accounts/{id}/capabilities", AccountCapabilityListParams)
def list_capabilities(ctx: Ctx) -> Obj:
    acct = _get_account(ctx, ctx.path["id"])
    data = [_capability(ctx.sb, acct, n) for n in sorted(acct["capabilities"])]
    return {"object": "list", "data": data, "has_more": False, "url": f"/v1/accounts/{acct['id']}/capabilities"}


@route("GET", "/v1/accounts/{id}/capabilities/{cap}", AccountCapabilityRetrieveParams)
def retrieve_capability(ctx: Ctx) -> Obj:
    acct = _get_account(ctx, ctx.path["id"])
    if ctx.path["cap"] not in acct["capabilities"]:
        raise StripeError(
            f"No such capability: '{ctx.path['cap']}'", status=404, code="resource_missing", param="capability"
        )
    return _capability(ctx.sb, acct, ctx.path["cap"])


# ---- account links -----------------------------------------------------------------------------
@route(
    "POST",
    "/v1/account_links",
    AccountLinkCreateParams,
    # The onboarding page collects everything due at once, so the collection options change nothing.
    ("account", "type", "refresh_url", "return_url", "collect", "collection_options"),
)
def create_account_link(ctx: Ctx) -> Obj:
    p = ctx.params
    account_id = str(req(p, "account"))
    link_type = get_enum(p, "type", ("account_onboarding", "account_update"))
    if link_type is None:
        req(p, "type")
    refresh_url = get_str(p, "refresh_url")
    return_url = get_str(p, "return_url")
    if refresh_url is None:
        req(p, "refresh_url")
    if return_url is None:
        req(p, "return_url")
    if not ctx.is_platform:
        raise invalid("Account links can only be created by the platform.")
    acct = connected(ctx.sb, account_id)
    if link_type == "account_update" and acct["controller"].get("stripe_dashboard", {}).get("type") != "none":
        raise invalid(
            "You cannot create `account_update` type Account Links for accounts that have access to a Stripe "
            "Dashboard.",
            "type",
        )
    token = new_id("acctlink_", 32)
    expires_at = now() + LINK_TTL
    link = {
        "id": token,
        "account": account_id,
        "type": link_type,
        "refresh_url": refresh_url,
        "return_url": return_url,
        "expires_at": expires_at,
        "used": False,
    }
    ctx.sb.store.add("account_link", ctx.platform, link)
    return objects.account_link(f"{ctx.sb.public_url}/setup/{token}", expires_at)


@route("POST", "/v1/accounts/{id}/login_links", AccountLoginLinkCreateParams)
def create_login_link(ctx: Ctx) -> Obj:
    if not ctx.is_platform:
        raise invalid("Login links can only be created by the platform.")
    acct = connected(ctx.sb, ctx.path["id"])
    if acct["controller"].get("stripe_dashboard", {}).get("type") != "express":
        raise invalid(
            f"Cannot create an edit link for the account {acct['id']}, which is not an Express account.", "account"
        )
    if not acct["details_submitted"]:
        raise invalid("Cannot create a login link for an account that has not completed onboarding.", "account")
    token = new_id("", 24)
    ctx.sb.store.add("login_link", ctx.platform, {"id": "ll_" + token, "account": acct["id"]})
    return objects.login_link(f"{ctx.sb.public_url}/express/{acct['id']}/ll_{token}")


# ---- onboarding state (pages + control) --------------------------------------------------------
def _emit_account_change(sb: Sandbox, acct: Obj, before: Obj) -> None:
    previous = changes(before, acct)
    if previous:
        sb.emit(acct["id"], "account.updated", acct, previous)
    for name, status in acct["capabilities"].items():
        old = before["capabilities"].get(name)
        if old != status:
            sb.emit(acct["id"], "capability.updated", _capability(sb, acct, name), {"status": old})


def complete_onboarding(sb: Sandbox, account_id: str) -> Obj:
    acct = connected(sb, account_id)
    before = snapshot(acct)
    acct["charges_enabled"] = "card_payments" in acct["capabilities"] or not acct["capabilities"]
    acct["payouts_enabled"] = True
    acct["details_submitted"] = True
    acct["requirements"] = objects.requirements()
    acct["future_requirements"] = objects.requirements()
    acct["capabilities"] = dict.fromkeys(acct["capabilities"], "active")
    if acct["business_type"] is None:
        acct["business_type"] = "individual"
    acct["business_profile"]["mcc"] = acct["business_profile"]["mcc"] or "5734"
    acct["business_profile"]["url"] = acct["business_profile"]["url"] or "https://seller.example"
    acct["tos_acceptance"] = {"date": now(), "ip": "127.0.0.1", "user_agent": "sandbox"}
    if not acct["external_accounts"]["data"]:
        acct["external_accounts"]["data"] = [
            {
                "id": new_id("ba_"),
                "object": "bank_account",
                "account": account_id,
                "bank_name": "STRIPE TEST BANK",
                "country": acct["country"],
                "currency": acct["default_currency"],
                "last4": "6789",
                "status": "new",
                "default_for_currency": True,
                "routing_number": "110000000",
                "metadata": {},
            }
        ]
        acct["external_accounts"]["total_count"] = 1
    _emit_account_change(sb, acct, before)
    return acct


def restrict_onboarding(
    sb: Sandbox,
    account_id: str,
    currently_due: list[str] | None,
    details_submitted: bool | None = None,
    disabled_reason: str = "requirements.past_due",
) -> Obj:
    acct = connected(sb, account_id)
    before = snapshot(acct)
    due = list(currently_due) if currently_due else list(objects.ONBOARDING_FIELDS)
    acct["charges_enabled"] = False
    acct["payouts_enabled"] = False
    if details_submitted is not None:
        acct["details_submitted"] = details_submitted
    acct["requirements"] = objects.requirements(due, disabled_reason)
    acct["capabilities"] = dict.fromkeys(acct["capabilities"], "inactive")
    _emit_account_change(sb, acct, before)
    return acct


def deauthorize(sb: Sandbox, account_id: str) -> Obj:
    acct = connected(sb, account_id, allow_deauthorized=True)
    x = sb.store.hidden(account_id)
    if x.get("deauthorized"):
        raise invalid(f"Account {account_id} is already deauthorized.")
    sb.emit(account_id, "account.application.deauthorized", objects.application())
    x["deauthorized"] = True
    return acct
