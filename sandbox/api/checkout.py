"""Checkout Sessions and their line items, plus the catalog they use: prices, products, coupons, promotion codes."""

from __future__ import annotations

import secrets
import string
from typing import Any

from sandbox import money, objects
from sandbox.api.accounts import connected
from sandbox.api.router import INCLUDABLE, Ctx, route
from sandbox.errors import StripeError, invalid
from sandbox.forms import get_bool, get_dict, get_enum, get_float, get_int, get_list, get_str, metadata, req
from sandbox.runtime import Sandbox
from sandbox.store import Obj, created_filter, new_id, now, paginate

MINIMUM_CHARGE = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50}
SESSION_PARAMS = (
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer_email",
    "metadata",
    "expires_at",
    "payment_intent_data",
    "discounts",
    "allow_promotion_codes",
    "payment_method_types",
    "locale",
    "submit_type",
    "billing_address_collection",
    "phone_number_collection",
    "customer_creation",
    "ui_mode",
    "custom_text",
    "consent_collection",
    "payment_method_options",
)
PID_PARAMS = (
    "application_fee_amount",
    "transfer_data",
    "on_behalf_of",
    "metadata",
    "transfer_group",
    "description",
    "receipt_email",
    "capture_method",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "setup_future_usage",
)


# ---- catalog -----------------------------------------------------------------------------------
def _product_from_data(ctx: Ctx, data: Obj, param: str) -> Obj:
    name = get_str(data, "name", f"{param}[name]")
    if name is None:
        req(data, "name", f"{param}[name]")
    prod = objects.product(str(name), get_str(data, "description"), metadata(data))
    ctx.sb.store.add("product", ctx.account, prod)
    return prod


def _price_from_data(ctx: Ctx, data: Obj, param: str, persist: bool) -> tuple[Obj, Obj]:
    currency = get_str(data, "currency", f"{param}[currency]")
    if currency is None:
        req(data, "currency", f"{param}[currency]")
    unit_amount = get_int(data, "unit_amount", f"{param}[unit_amount]", minimum=0)
    if unit_amount is None:
        decimal = get_float(data, "unit_amount_decimal", f"{param}[unit_amount_decimal]")
        if decimal is None:
            req(data, "unit_amount", f"{param}[unit_amount]")
        unit_amount = round(decimal or 0)
    if "product" in data:
        prod = ctx.sb.store.get("product", str(data["product"]), ctx.account, "product", f"{param}[product]")
    else:
        pdata = get_dict(data, "product_data", f"{param}[product_data]")
        if not pdata:
            raise invalid(
                "You must specify either `product` or `product_data` when creating a price.", f"{param}[product_data]"
            )
        prod = _product_from_data(ctx, pdata, f"{param}[product_data]")
    price = objects.price(prod["id"], str(currency).lower(), unit_amount, metadata(data) if persist else {})
    if persist:
        ctx.sb.store.add("price", ctx.account, price)
    return price, prod


@route("POST", "/v1/products")
def create_product(ctx: Ctx) -> Obj:
    ctx.allow("name", "description", "metadata", "active", "images")
    return _product_from_data(ctx, ctx.params, "")


@route("GET", "/v1/products/{id}")
def retrieve_product(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("product", ctx.path["id"], ctx.account)


@route("POST", "/v1/prices")
def create_price(ctx: Ctx) -> Obj:
    ctx.allow("currency", "unit_amount", "unit_amount_decimal", "product", "product_data", "metadata", "nickname")
    price, _ = _price_from_data(ctx, ctx.params, "", persist=True)
    price["nickname"] = get_str(ctx.params, "nickname")
    return price


@route("GET", "/v1/prices/{id}")
def retrieve_price(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("price", ctx.path["id"], ctx.account)


@route("GET", "/v1/prices")
def list_prices(ctx: Ctx) -> Obj:
    ctx.allow(
        "limit", "starting_after", "ending_before", "created", "active", "currency", "product", "type", "lookup_keys"
    )
    return paginate(created_filter(ctx.sb.store.all("price", ctx.account), ctx.params), ctx.params, "/v1/prices")


@route("POST", "/v1/coupons")
def create_coupon(ctx: Ctx) -> Obj:
    ctx.allow(
        "id",
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "duration_in_months",
        "max_redemptions",
        "redeem_by",
        "name",
        "metadata",
        "applies_to",
    )
    p = ctx.params
    percent = get_float(p, "percent_off")
    amount = get_int(p, "amount_off", minimum=1)
    if (percent is None) == (amount is None):
        raise invalid("Must provide either percent_off or amount_off (but not both).", "percent_off")
    if percent is not None and not 0 < percent <= 100:
        raise invalid("Percent off must be between 0 and 100.", "percent_off")
    currency = get_str(p, "currency")
    if amount is not None and currency is None:
        raise invalid("You must pass currency when passing amount_off", "currency")
    coupon_id = get_str(p, "id") or "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
    if ctx.sb.store.record(coupon_id) is not None:
        raise invalid("Coupon already exists.", "id", code="resource_already_exists")
    coupon = objects.coupon(
        coupon_id,
        percent_off=percent,
        amount_off=amount,
        currency=currency.lower() if currency else None,
        duration=get_enum(p, "duration", ("forever", "once", "repeating")) or "once",
        duration_in_months=get_int(p, "duration_in_months"),
        max_redemptions=get_int(p, "max_redemptions", minimum=1),
        redeem_by=get_int(p, "redeem_by"),
        name=get_str(p, "name"),
        metadata=metadata(p),
    )
    ctx.sb.store.add("coupon", ctx.account, coupon)
    return coupon


@route("GET", "/v1/coupons/{id}")
def retrieve_coupon(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("coupon", ctx.path["id"], ctx.account)


@route("POST", "/v1/coupons/{id}")
def update_coupon(ctx: Ctx) -> Obj:
    ctx.allow("name", "metadata")
    coupon = ctx.sb.store.get("coupon", ctx.path["id"], ctx.account)
    if "name" in ctx.params:
        coupon["name"] = get_str(ctx.params, "name")
    coupon["metadata"] = metadata(ctx.params, coupon["metadata"])
    return coupon


@route("DELETE", "/v1/coupons/{id}")
def delete_coupon(ctx: Ctx) -> Obj:
    coupon = ctx.sb.store.get("coupon", ctx.path["id"], ctx.account)
    ctx.sb.store.remove(coupon["id"])
    return {"id": coupon["id"], "object": "coupon", "deleted": True}


@route("GET", "/v1/coupons")
def list_coupons(ctx: Ctx) -> Obj:
    ctx.allow("limit", "starting_after", "ending_before", "created")
    return paginate(created_filter(ctx.sb.store.all("coupon", ctx.account), ctx.params), ctx.params, "/v1/coupons")


@route("POST", "/v1/promotion_codes")
def create_promotion_code(ctx: Ctx) -> Obj:
    ctx.allow("promotion", "code", "active", "expires_at", "max_redemptions", "metadata", "restrictions", "customer")
    p = ctx.params
    promo = get_dict(p, "promotion")
    if not promo:
        req(p, "promotion")
    if get_enum(promo, "type", ("coupon",), "promotion[type]") is None:
        req(promo, "type", "promotion[type]")
    coupon_id = str(req(promo, "coupon", "promotion[coupon]"))
    coupon = ctx.sb.store.get("coupon", coupon_id, ctx.account, "coupon", "promotion[coupon]")
    code = get_str(p, "code") or "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
    for other in ctx.sb.store.all("promotion_code", ctx.account):
        if other["active"] and other["code"].lower() == code.lower():
            raise invalid(f"An active promotion code with `code: {code}` already exists.", "code")
    restr = get_dict(p, "restrictions")
    pc = objects.promotion_code(
        code,
        coupon,
        active=get_bool(p, "active") is not False,
        expires_at=get_int(p, "expires_at"),
        max_redemptions=get_int(p, "max_redemptions", minimum=1),
        metadata=metadata(p),
        minimum_amount=get_int(restr, "minimum_amount", "restrictions[minimum_amount]"),
        minimum_amount_currency=get_str(restr, "minimum_amount_currency"),
        first_time_transaction=bool(get_bool(restr, "first_time_transaction")),
    )
    ctx.sb.store.add("promotion_code", ctx.account, pc)
    return pc


@route("GET", "/v1/promotion_codes/{id}")
def retrieve_promotion_code(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("promotion_code", ctx.path["id"], ctx.account)


@route("POST", "/v1/promotion_codes/{id}")
def update_promotion_code(ctx: Ctx) -> Obj:
    ctx.allow("active", "metadata", "restrictions")
    pc = ctx.sb.store.get("promotion_code", ctx.path["id"], ctx.account)
    active = get_bool(ctx.params, "active")
    if active is not None:
        pc["active"] = active
    pc["metadata"] = metadata(ctx.params, pc["metadata"])
    return pc


@route("GET", "/v1/promotion_codes")
def list_promotion_codes(ctx: Ctx) -> Obj:
    ctx.allow(
        "limit",
        "starting_after",
        "ending_before",
        "created",
        "code",
        "coupon",
        "active",
        "customer",
        "customer_account",
    )
    items = created_filter(ctx.sb.store.all("promotion_code", ctx.account), ctx.params)
    code = get_str(ctx.params, "code")
    if code is not None:
        items = [i for i in items if i["code"].lower() == code.lower()]
    coupon = get_str(ctx.params, "coupon")
    if coupon is not None:
        items = [i for i in items if i["promotion"]["coupon"] == coupon]
    active = get_bool(ctx.params, "active")
    if active is not None:
        items = [i for i in items if i["active"] == active]
    return paginate(items, ctx.params, "/v1/promotion_codes")


# ---- discounts ---------------------------------------------------------------------------------
def coupon_usable(coupon: Obj, currency: str, param: str) -> None:
    if (
        not coupon["valid"]
        or (coupon["redeem_by"] and coupon["redeem_by"] < now())
        or (coupon["max_redemptions"] and coupon["times_redeemed"] >= coupon["max_redemptions"])
    ):
        raise invalid(f"Coupon {coupon['id']} is no longer valid.", param, code="coupon_expired")
    if coupon["amount_off"] is not None and coupon["currency"] != currency:
        raise invalid(
            f"The coupon currency ({coupon['currency']}) does not match the currency of the Checkout Session "
            f"({currency}).",
            param,
        )


def promotion_usable(sb: Sandbox, pc: Obj, subtotal: int, currency: str, param: str) -> Obj:
    if (
        not pc["active"]
        or (pc["expires_at"] and pc["expires_at"] < now())
        or (pc["max_redemptions"] and pc["times_redeemed"] >= pc["max_redemptions"])
    ):
        raise invalid(f"Promotion code {pc['code']} is inactive or expired.", param)
    minimum = pc["restrictions"]["minimum_amount"]
    if minimum and subtotal < minimum:
        raise invalid(f"This promotion code requires a minimum order of {money.money(minimum, currency)}.", param)
    coupon: Obj = sb.store.find(pc["promotion"]["coupon"]) or {}
    coupon_usable(coupon, currency, param)
    return coupon


def apply_discount(sb: Sandbox, session: Obj, x: Obj, coupon: Obj | None, promo: Obj | None) -> None:
    """(Re)compute line item discounts and the session totals for at most one discount."""
    items: list[Obj] = x["line_items"]
    subtotal = sum(i["amount_subtotal"] for i in items)
    total_discount = 0
    discount_obj: Obj | None = None
    if coupon is not None:
        discount_obj = {
            "id": new_id("di_"),
            "object": "discount",
            "checkout_session": session["id"],
            "customer": None,
            "customer_account": None,
            "end": None,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": promo["id"] if promo else None,
            "source": {"coupon": coupon["id"], "type": "coupon"},
            "start": now(),
            "subscription": None,
            "subscription_item": None,
        }
        if coupon["percent_off"] is not None:
            shares = [round(i["amount_subtotal"] * coupon["percent_off"] / 100) for i in items]
        else:
            off = min(coupon["amount_off"], subtotal)
            shares = [off * i["amount_subtotal"] // subtotal if subtotal else 0 for i in items]
            if items:
                shares[-1] += off - sum(shares)
        for item, share in zip(items, shares, strict=True):
            item["amount_discount"] = share
            item["amount_total"] = item["amount_subtotal"] - share
            item["discounts"] = [{"amount": share, "discount": discount_obj}] if share else []
        total_discount = sum(shares)
        session["discounts"] = [{"coupon": coupon["id"], "promotion_code": promo["id"] if promo else None}]
    else:
        for item in items:
            item["amount_discount"] = 0
            item["amount_total"] = item["amount_subtotal"]
            item["discounts"] = []
        session["discounts"] = []
    session["amount_subtotal"] = subtotal
    session["amount_total"] = subtotal - total_discount
    session["total_details"]["amount_discount"] = total_discount


# ---- sessions ----------------------------------------------------------------------------------
def _payment_intent_data(ctx: Ctx, p: Obj) -> Obj:
    pid = get_dict(p, "payment_intent_data")
    for key in pid:
        if key not in PID_PARAMS:
            raise invalid(f"Received unknown parameter: payment_intent_data[{key}]", f"payment_intent_data[{key}]")
    fee = get_int(pid, "application_fee_amount", "payment_intent_data[application_fee_amount]", minimum=0)
    td = get_dict(pid, "transfer_data", "payment_intent_data[transfer_data]")
    dest = get_str(td, "destination", "payment_intent_data[transfer_data][destination]")
    td_amount = get_int(td, "amount", "payment_intent_data[transfer_data][amount]", minimum=1)
    if td and dest is None:
        req(td, "destination", "payment_intent_data[transfer_data][destination]")
    if fee is not None and dest is None and ctx.is_platform:
        raise invalid(
            "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct payment "
            "(using an OAuth key or Stripe-Account header) or destination payment (using "
            "`transfer_data[destination]`).",
            "payment_intent_data[application_fee_amount]",
        )
    if fee is not None and td_amount is not None:
        raise invalid(
            "You may only specify one of these parameters: application_fee_amount, transfer_data[amount].",
            "payment_intent_data[application_fee_amount]",
        )
    if dest is not None:
        if not ctx.is_platform:
            raise invalid(
                "You cannot create a destination charge on a connected account (transfer_data with Stripe-Account).",
                "payment_intent_data[transfer_data][destination]",
            )
        money.check_destination(ctx.sb, dest, "payment_intent_data[transfer_data][destination]")
    obo = get_str(pid, "on_behalf_of", "payment_intent_data[on_behalf_of]")
    if obo is not None:
        connected(ctx.sb, obo, "payment_intent_data[on_behalf_of]")
        if dest is not None and obo != dest:
            raise invalid(
                "The `on_behalf_of` account must be the same as the `transfer_data[destination]` account.",
                "payment_intent_data[on_behalf_of]",
            )
    capture = get_enum(
        pid, "capture_method", ("automatic", "automatic_async", "manual"), "payment_intent_data[capture_method]"
    )
    if capture == "manual":
        raise invalid("The sandbox does not emulate manual capture.", "payment_intent_data[capture_method]")
    return {
        "application_fee_amount": fee,
        "destination": dest,
        "transfer_amount": td_amount,
        "on_behalf_of": obo,
        "metadata": metadata(pid, key="metadata"),
        "transfer_group": get_str(pid, "transfer_group"),
        "description": get_str(pid, "description"),
        "receipt_email": get_str(pid, "receipt_email"),
    }


def _line_items(ctx: Ctx, p: Obj) -> list[Obj]:
    raw = get_list(p, "line_items")
    if not raw:
        raise invalid("line_items is required when mode is payment.", "line_items")
    items = []
    for i, li in enumerate(raw):
        param = f"line_items[{i}]"
        if not isinstance(li, dict):
            raise invalid("Invalid hash", param)
        for key in li:
            if key not in ("price", "price_data", "quantity", "adjustable_quantity", "tax_rates", "dynamic_tax_rates"):
                raise invalid(f"Received unknown parameter: {param}[{key}]", f"{param}[{key}]")
        quantity = get_int(li, "quantity", f"{param}[quantity]", minimum=1)
        if quantity is None:
            req(li, "quantity", f"{param}[quantity]")
        if ("price" in li) == ("price_data" in li):
            raise invalid("You must specify either `price` or `price_data` in {param}.", f"{param}[price]")
        if "price" in li:
            price = ctx.sb.store.get("price", str(li["price"]), ctx.account, "price", f"{param}[price]")
            prod = ctx.sb.store.get("product", price["product"], ctx.account, "product")
        else:
            price, prod = _price_from_data(ctx, get_dict(li, "price_data"), f"{param}[price_data]", persist=False)
        items.append(objects.line_item(price, prod, quantity or 1, 0, []))
    currencies = {i["currency"] for i in items}
    if len(currencies) > 1:
        raise invalid("All line items must have the same currency.", "line_items")
    return items


NOT_EMULATED = (
    "customer",
    "customer_update",
    "automatic_tax",
    "shipping_address_collection",
    "shipping_options",
    "tax_id_collection",
    "invoice_creation",
    "subscription_data",
    "setup_intent_data",
    "currency",
    "saved_payment_method_options",
    "payment_method_collection",
    "payment_method_configuration",
    "after_expiration",
    "adaptive_pricing",
    "branding_settings",
    "name_collection",
    "optional_items",
    "permissions",
    "return_url",
    "redirect_on_completion",
    "wallet_options",
    "custom_fields",
    "origin_context",
    "excluded_payment_method_types",
)


@route("POST", "/v1/checkout/sessions")
def create_session(ctx: Ctx) -> Obj:
    for name in NOT_EMULATED:
        if name in ctx.params:
            raise invalid(f"The Stripe sandbox does not emulate the Checkout Session parameter `{name}`.", name)
    ctx.allow(*SESSION_PARAMS)
    p = ctx.params
    mode = get_enum(p, "mode", ("payment", "setup", "subscription"))
    if mode is None:
        req(p, "mode")
    if mode != "payment":
        raise invalid("The sandbox only emulates Checkout Sessions with mode=payment.", "mode")
    if get_str(p, "ui_mode") not in (None, "hosted"):
        raise invalid("The sandbox only emulates ui_mode=hosted.", "ui_mode")
    items = _line_items(ctx, p)
    currency = items[0]["currency"]
    current = now()
    expires_at = get_int(p, "expires_at")
    if expires_at is None:
        expires_at = current + 86400
    elif expires_at > current + 86400:
        raise invalid(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.", "expires_at"
        )
    elif expires_at < current + 1800:
        raise invalid(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.", "expires_at"
        )
    allow_promo = get_bool(p, "allow_promotion_codes")
    raw_discounts = get_list(p, "discounts")
    if allow_promo and raw_discounts:
        raise invalid("You may only specify one of these parameters: allow_promotion_codes, discounts.", "discounts")
    if len(raw_discounts) > 1:
        raise invalid("You may only specify one discount.", "discounts")
    pid = _payment_intent_data(ctx, p)
    pmt = [str(t) for t in get_list(p, "payment_method_types")] or ["card", "us_bank_account"]
    for t in pmt:
        if t not in ("card", "us_bank_account", "link"):
            raise invalid(f"The payment method type `{t}` is not emulated by the sandbox.", "payment_method_types")
    session_id = new_id("cs_test_", 58)
    subtotal = sum(i["amount_subtotal"] for i in items)
    session = objects.checkout_session(
        session_id,
        url=f"{ctx.sb.public_url}/c/pay/{session_id}",
        currency=currency,
        amount_subtotal=subtotal,
        amount_discount=0,
        success_url=get_str(p, "success_url"),
        cancel_url=get_str(p, "cancel_url"),
        client_reference_id=get_str(p, "client_reference_id"),
        customer_email=get_str(p, "customer_email"),
        metadata=metadata(p),
        expires_at=expires_at,
        payment_method_types=pmt,
        allow_promotion_codes=allow_promo,
        discounts=[],
        locale=get_str(p, "locale"),
        submit_type=get_str(p, "submit_type"),
    )
    x: Obj = {"line_items": items, "payment_intent_data": pid}
    coupon = promo = None
    if raw_discounts:
        d = raw_discounts[0]
        if not isinstance(d, dict) or ("coupon" in d) == ("promotion_code" in d):
            raise invalid("Each discount must specify exactly one of `coupon` or `promotion_code`.", "discounts[0]")
        if "coupon" in d:
            coupon = ctx.sb.store.get("coupon", str(d["coupon"]), ctx.account, "coupon", "discounts[0][coupon]")
            coupon_usable(coupon, currency, "discounts[0][coupon]")
        else:
            promo = ctx.sb.store.get(
                "promotion_code",
                str(d["promotion_code"]),
                ctx.account,
                "promotion_code",
                "discounts[0][promotion_code]",
            )
            coupon = promotion_usable(ctx.sb, promo, subtotal, currency, "discounts[0][promotion_code]")
    apply_discount(ctx.sb, session, x, coupon, promo)
    minimum = MINIMUM_CHARGE.get(currency)
    total = session["amount_total"]
    if minimum and 0 < total < minimum:
        raise invalid(
            "The Checkout Session's total amount due must add up to at least "
            f"{money.money(minimum, currency)} {currency}",
            "line_items",
        )
    fee = pid["application_fee_amount"]
    if fee is not None and fee > total:
        raise invalid(
            "The application fee amount must be less than or equal to the total amount.",
            "payment_intent_data[application_fee_amount]",
        )
    ctx.sb.store.add("checkout.session", ctx.account, session, x)
    return session


def _session(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("checkout.session", ctx.path["id"], ctx.account, "checkout.session", "session")


@route("GET", "/v1/checkout/sessions/{id}")
def retrieve_session(ctx: Ctx) -> Obj:
    return _session(ctx)


@route("POST", "/v1/checkout/sessions/{id}")
def update_session(ctx: Ctx) -> Obj:
    ctx.allow("metadata")
    session = _session(ctx)
    session["metadata"] = metadata(ctx.params, session["metadata"])
    return session


@route("POST", "/v1/checkout/sessions/{id}/expire")
def expire_session(ctx: Ctx) -> Obj:
    ctx.allow()
    _session(ctx)
    return money.expire_session(ctx.sb, ctx.path["id"], ctx.account)


@route("GET", "/v1/checkout/sessions")
def list_sessions(ctx: Ctx) -> Obj:
    ctx.allow(
        "limit",
        "starting_after",
        "ending_before",
        "created",
        "status",
        "payment_intent",
        "customer",
        "customer_details",
        "payment_link",
        "subscription",
    )
    items = created_filter(ctx.sb.store.all("checkout.session", ctx.account), ctx.params)
    status = get_enum(ctx.params, "status", ("open", "complete", "expired"))
    if status is not None:
        items = [s for s in items if s["status"] == status]
    pi = get_str(ctx.params, "payment_intent")
    if pi is not None:
        items = [s for s in items if s["payment_intent"] == pi]
    return paginate(items, ctx.params, "/v1/checkout/sessions")


def _line_item_list(sb: Sandbox, session: Obj) -> Obj:
    items: list[Obj] = sb.store.hidden(session["id"])["line_items"]
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


INCLUDABLE[("checkout.session", "line_items")] = _line_item_list


@route("GET", "/v1/checkout/sessions/{id}/line_items")
def list_line_items(ctx: Ctx) -> Obj:
    ctx.allow("limit", "starting_after", "ending_before")
    session = _session(ctx)
    items: list[Any] = ctx.sb.store.hidden(session["id"])["line_items"]
    return paginate(list(items), ctx.params, f"/v1/checkout/sessions/{session['id']}/line_items")


def ensure_session_error(session: Obj) -> None:
    if session["status"] != "open":
        raise StripeError("This Checkout Session is no longer open.", status=400)
