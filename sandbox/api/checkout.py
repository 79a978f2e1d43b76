"""Checkout Sessions and their line items, plus the catalog they use: prices, products, coupons, promotion codes."""

from __future__ import annotations

import secrets
import string
from typing import Any

from stripe.params import (
    CouponCreateParams,
    CouponDeleteParams,
    CouponListParams,
    CouponRetrieveParams,
    CouponUpdateParams,
    PriceCreateParams,
    PriceListParams,
    PriceRetrieveParams,
    ProductCreateParams,
    ProductRetrieveParams,
    PromotionCodeCreateParams,
    PromotionCodeListParams,
    PromotionCodeRetrieveParams,
    PromotionCodeUpdateParams,
)
from stripe.params.checkout import (
    SessionCreateParams,
    SessionExpireParams,
    SessionLineItemListParams,
    SessionListParams,
    SessionRetrieveParams,
    SessionUpdateParams,
)

from sandbox import money, objects
from sandbox.api.accounts import connected
from sandbox.api.router import INCLUDABLE, LIST, Ctx, route
from sandbox.errors import bad_param, invalid, not_emulated
from sandbox.forms import get_bool, get_dict, get_enum, get_float, get_int, get_list, get_str, metadata, req
from sandbox.runtime import Sandbox
from sandbox.schema import fields, literals
from sandbox.store import Obj, created_filter, new_id, now, paginate

# Stripe's minimum charge amounts (docs.stripe.com/currencies#minimum-and-maximum-charge-amounts), minor units.
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250,
    "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300,
    "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
MAXIMUM_AMOUNT = 99_999_999  # eight digits
SESSION_PARAMS = (
    "mode",
    "line_items[price]",
    "line_items[price_data][currency]",
    "line_items[price_data][unit_amount]",
    "line_items[price_data][unit_amount_decimal]",
    "line_items[price_data][product]",
    "line_items[price_data][product_data][name]",
    "line_items[price_data][product_data][description]",
    "line_items[price_data][product_data][metadata]",
    "line_items[quantity]",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer_email",
    "metadata",
    "expires_at",
    "payment_intent_data[application_fee_amount]",
    "payment_intent_data[transfer_data]",
    "payment_intent_data[on_behalf_of]",
    "payment_intent_data[metadata]",
    "payment_intent_data[transfer_group]",
    "payment_intent_data[description]",
    "payment_intent_data[receipt_email]",
    "payment_intent_data[capture_method]",
    # Accepted without effect (nothing in the sandbox depends on them):
    "payment_intent_data[statement_descriptor]",
    "payment_intent_data[statement_descriptor_suffix]",
    "payment_intent_data[setup_future_usage]",
    "discounts",
    "allow_promotion_codes",
    "allowed_payment_method_types",
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
PAYMENT_METHOD_TYPES = ("card", "us_bank_account")  # what the hosted page can take


# ---- catalog -----------------------------------------------------------------------------------
def _at(prefix: str, name: str) -> str:
    """A nested parameter's name: `name`, or `prefix[name]`."""
    return f"{prefix}[{name}]" if prefix else name


def _product_from_data(ctx: Ctx, data: Obj, prefix: str) -> Obj:
    name = get_str(data, "name", _at(prefix, "name"))
    if name is None:
        req(data, "name", _at(prefix, "name"))
    description = get_str(data, "description", _at(prefix, "description"))
    prod = objects.product(str(name), description, metadata(data))
    ctx.sb.store.add("product", ctx.account, prod)
    return prod


def _price_from_data(ctx: Ctx, data: Obj, prefix: str, persist: bool) -> tuple[Obj, Obj]:
    currency = get_str(data, "currency", _at(prefix, "currency"))
    if currency is None:
        req(data, "currency", _at(prefix, "currency"))
    unit_amount = get_int(data, "unit_amount", _at(prefix, "unit_amount"), minimum=0)
    if unit_amount is None:
        decimal = get_float(data, "unit_amount_decimal", _at(prefix, "unit_amount_decimal"))
        if decimal is None:
            req(data, "unit_amount", _at(prefix, "unit_amount"))
        unit_amount = round(decimal or 0)
    if "product" in data:
        product_id = get_str(data, "product", _at(prefix, "product")) or ""
        prod = ctx.sb.store.get("product", product_id, ctx.account, "product", _at(prefix, "product"))
    else:
        pdata = get_dict(data, "product_data", _at(prefix, "product_data"))
        if not pdata:
            raise bad_param(
                "You must specify either `product` or `product_data` when creating a price.",
                _at(prefix, "product_data"),
            )
        prod = _product_from_data(ctx, pdata, _at(prefix, "product_data"))
    price = objects.price(prod["id"], str(currency).lower(), unit_amount, metadata(data) if persist else {})
    if persist:
        ctx.sb.store.add("price", ctx.account, price)
    return price, prod


@route("POST", "/v1/products", ProductCreateParams, ("name", "description", "metadata"))
def create_product(ctx: Ctx) -> Obj:
    return _product_from_data(ctx, ctx.params, "")


@route("GET", "/v1/products/{id}", ProductRetrieveParams)
def retrieve_product(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("product", ctx.path["id"], ctx.account)


@route(
    "POST",
    "/v1/prices",
    PriceCreateParams,
    ("currency", "unit_amount", "unit_amount_decimal", "product", "product_data[name]", "metadata", "nickname"),
)
def create_price(ctx: Ctx) -> Obj:
    price, _ = _price_from_data(ctx, ctx.params, "", persist=True)
    price["nickname"] = get_str(ctx.params, "nickname")
    return price


@route("GET", "/v1/prices/{id}", PriceRetrieveParams)
def retrieve_price(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("price", ctx.path["id"], ctx.account)


@route("GET", "/v1/prices", PriceListParams, LIST)
def list_prices(ctx: Ctx) -> Obj:
    return paginate(created_filter(ctx.sb.store.all("price", ctx.account), ctx.params), ctx.params, "/v1/prices")


@route(
    "POST",
    "/v1/coupons",
    CouponCreateParams,
    (
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
    ),
)
def create_coupon(ctx: Ctx) -> Obj:
    p = ctx.params
    percent = get_float(p, "percent_off")
    amount = get_int(p, "amount_off", minimum=1)
    if (percent is None) == (amount is None):
        raise bad_param("Must provide either percent_off or amount_off (but not both).", "percent_off")
    if percent is not None and not 0 < percent <= 100:
        raise bad_param("Percent off must be between 0 and 100.", "percent_off")
    currency = get_str(p, "currency")
    if amount is not None and currency is None:
        raise bad_param("You must pass currency when passing amount_off", "currency")
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


@route("GET", "/v1/coupons/{id}", CouponRetrieveParams)
def retrieve_coupon(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("coupon", ctx.path["id"], ctx.account)


@route("POST", "/v1/coupons/{id}", CouponUpdateParams, ("name", "metadata"))
def update_coupon(ctx: Ctx) -> Obj:
    coupon = ctx.sb.store.get("coupon", ctx.path["id"], ctx.account)
    if "name" in ctx.params:
        coupon["name"] = get_str(ctx.params, "name")
    coupon["metadata"] = metadata(ctx.params, coupon["metadata"])
    return coupon


@route("DELETE", "/v1/coupons/{id}", CouponDeleteParams)
def delete_coupon(ctx: Ctx) -> Obj:
    coupon = ctx.sb.store.get("coupon", ctx.path["id"], ctx.account)
    ctx.sb.store.remove(coupon["id"])
    return {"id": coupon["id"], "object": "coupon", "deleted": True}


@route("GET", "/v1/coupons", CouponListParams, LIST)
def list_coupons(ctx: Ctx) -> Obj:
    return paginate(created_filter(ctx.sb.store.all("coupon", ctx.account), ctx.params), ctx.params, "/v1/coupons")


@route(
    "POST",
    "/v1/promotion_codes",
    PromotionCodeCreateParams,
    (
        "promotion[type]",
        "promotion[coupon]",
        "code",
        "active",
        "expires_at",
        "max_redemptions",
        "metadata",
        "restrictions[minimum_amount]",
        "restrictions[minimum_amount_currency]",
    ),
)
def create_promotion_code(ctx: Ctx) -> Obj:
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
    minimum_amount = get_int(restr, "minimum_amount", "restrictions[minimum_amount]")
    minimum_currency = get_str(restr, "minimum_amount_currency")
    if minimum_amount is not None and minimum_currency is None:
        raise invalid(
            "`restrictions[minimum_amount_currency]` is required with `restrictions[minimum_amount]`.",
            "restrictions[minimum_amount_currency]",
        )
    pc = objects.promotion_code(
        code,
        coupon,
        active=get_bool(p, "active") is not False,
        expires_at=get_int(p, "expires_at"),
        max_redemptions=get_int(p, "max_redemptions", minimum=1),
        metadata=metadata(p),
        minimum_amount=minimum_amount,
        minimum_amount_currency=minimum_currency.lower() if minimum_currency else None,
        first_time_transaction=False,  # not emulated (the sandbox keeps no customer history)
    )
    ctx.sb.store.add("promotion_code", ctx.account, pc)
    return pc


@route("GET", "/v1/promotion_codes/{id}", PromotionCodeRetrieveParams)
def retrieve_promotion_code(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("promotion_code", ctx.path["id"], ctx.account)


@route("POST", "/v1/promotion_codes/{id}", PromotionCodeUpdateParams, ("active", "metadata"))
def update_promotion_code(ctx: Ctx) -> Obj:
    pc = ctx.sb.store.get("promotion_code", ctx.path["id"], ctx.account)
    active = get_bool(ctx.params, "active")
    if active is not None:
        pc["active"] = active
    pc["metadata"] = metadata(ctx.params, pc["metadata"])
    return pc


@route("GET", "/v1/promotion_codes", PromotionCodeListParams, (*LIST, "code", "coupon", "active"))
def list_promotion_codes(ctx: Ctx) -> Obj:
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
    minimum, minimum_currency = pc["restrictions"]["minimum_amount"], pc["restrictions"]["minimum_amount_currency"]
    if minimum and minimum_currency != currency:
        raise invalid(f"Promotion code {pc['code']} only applies to orders in {minimum_currency}.", param)
    if minimum and subtotal < minimum:
        raise invalid(f"This promotion code requires a minimum order of {money.money(minimum, currency)}.", param)
    coupon: Obj = sb.store.find(pc["promotion"]["coupon"]) or {}
    coupon_usable(coupon, currency, param)
    return coupon


def _shares(items: list[Obj], coupon: Obj | None) -> list[int]:
    """Each line item's part of the discount."""
    if coupon is None:
        return [0] * len(items)
    if coupon["percent_off"] is not None:
        return [round(i["amount_subtotal"] * coupon["percent_off"] / 100) for i in items]
    subtotal = sum(i["amount_subtotal"] for i in items)
    off = min(coupon["amount_off"], subtotal)
    shares = [off * i["amount_subtotal"] // subtotal if subtotal else 0 for i in items]
    if shares:
        shares[-1] += off - sum(shares)
    return shares


def _check_total(currency: str, total: int, pid: Obj) -> None:
    """What Stripe refuses in a total: a non-zero amount below the minimum charge, or one below the
    application fee or the transfer amount."""
    if currency in money.THREE_DECIMAL and total % 10:
        raise invalid(
            f"Amounts in {currency.upper()} must be divisible by 10 (the last of its three decimals must be 0).",
            "line_items",
        )
    if total > MAXIMUM_AMOUNT:
        raise invalid("Amount must be no more than 99,999,999 in the currency's smallest unit.", "line_items")
    minimum = MINIMUM_CHARGE.get(currency)
    if minimum and 0 < total < minimum:
        raise invalid(
            "The Checkout Session's total amount due must add up to at least "
            f"{money.money(minimum, currency)} {currency}",
            "line_items",
        )
    if total == 0:
        return  # a fully discounted session makes no PaymentIntent: payment_intent_data does not apply
    fee = pid["application_fee_amount"]
    if fee is not None and fee > total:
        raise invalid(
            "The application fee amount must be less than or equal to the total amount.",
            "payment_intent_data[application_fee_amount]",
        )
    if pid["transfer_amount"] is not None and pid["transfer_amount"] > total:
        raise invalid(
            "The transfer amount must be less than or equal to the total amount.",
            "payment_intent_data[transfer_data][amount]",
        )


def apply_discount(sb: Sandbox, session: Obj, x: Obj, coupon: Obj | None, promo: Obj | None) -> None:
    """Set the session's discount (at most one) and totals; a total Stripe refuses leaves it unchanged.
    An existing PaymentIntent follows the new total."""
    items: list[Obj] = x["line_items"]
    shares = _shares(items, coupon)
    subtotal = sum(i["amount_subtotal"] for i in items)
    total = subtotal - sum(shares)
    _check_total(session["currency"], total, x["payment_intent_data"])
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
    for item, share in zip(items, shares, strict=True):
        item["amount_discount"] = share
        item["amount_total"] = item["amount_subtotal"] - share
        item["discounts"] = [{"amount": share, "discount": discount_obj}] if share else []
    session["discounts"] = (
        [{"coupon": coupon["id"], "promotion_code": promo["id"] if promo else None}] if coupon else []
    )
    session["amount_subtotal"] = subtotal
    session["amount_total"] = total
    session["total_details"]["amount_discount"] = subtotal - total
    money.follow_total(sb, session)


# ---- sessions ----------------------------------------------------------------------------------
def _payment_intent_data(ctx: Ctx, p: Obj) -> Obj:
    pid = get_dict(p, "payment_intent_data")
    fee = get_int(pid, "application_fee_amount", "payment_intent_data[application_fee_amount]", minimum=0)
    td = get_dict(pid, "transfer_data", "payment_intent_data[transfer_data]")
    dest = get_str(td, "destination", "payment_intent_data[transfer_data][destination]")
    td_amount = get_int(td, "amount", "payment_intent_data[transfer_data][amount]", minimum=1)
    if td and dest is None:
        req(td, "destination", "payment_intent_data[transfer_data][destination]")
    if fee is not None and dest is None and ctx.is_platform:
        raise bad_param(
            "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct payment "
            "(using an OAuth key or Stripe-Account header) or destination payment (using "
            "`transfer_data[destination]`).",
            "payment_intent_data[application_fee_amount]",
        )
    if fee is not None and td_amount is not None:
        raise bad_param(
            "You may only specify one of these parameters: application_fee_amount, transfer_data[amount].",
            "payment_intent_data[application_fee_amount]",
        )
    if dest is not None:
        if not ctx.is_platform:
            raise bad_param(
                "You cannot create a destination charge on a connected account (transfer_data with Stripe-Account).",
                "payment_intent_data[transfer_data][destination]",
            )
        money.check_destination(ctx.sb, dest, "payment_intent_data[transfer_data][destination]")
    obo = get_str(pid, "on_behalf_of", "payment_intent_data[on_behalf_of]")
    if obo is not None:
        connected(ctx.sb, obo, "payment_intent_data[on_behalf_of]")
        if dest is not None and obo != dest:
            raise bad_param(
                "The `on_behalf_of` account must be the same as the `transfer_data[destination]` account.",
                "payment_intent_data[on_behalf_of]",
            )
    capture = get_enum(
        pid, "capture_method", ("automatic", "automatic_async", "manual"), "payment_intent_data[capture_method]"
    )
    if capture == "manual":
        raise not_emulated("manual capture", "payment_intent_data[capture_method]")
    return {
        "application_fee_amount": fee,
        "destination": dest,
        "transfer_amount": td_amount,
        "on_behalf_of": obo,
        "metadata": metadata(pid, key="metadata"),
        "transfer_group": get_str(pid, "transfer_group", "payment_intent_data[transfer_group]"),
        "description": get_str(pid, "description", "payment_intent_data[description]"),
        "receipt_email": get_str(pid, "receipt_email", "payment_intent_data[receipt_email]"),
    }


def _line_items(ctx: Ctx, p: Obj) -> list[Obj]:
    raw = get_list(p, "line_items")
    if not raw:
        raise bad_param("line_items is required when mode is payment.", "line_items")
    items = []
    for i, li in enumerate(raw):
        param = f"line_items[{i}]"
        if not isinstance(li, dict):
            raise bad_param("Invalid hash", param)
        quantity = get_int(li, "quantity", f"{param}[quantity]", minimum=1)
        if quantity is None:
            req(li, "quantity", f"{param}[quantity]")
        if ("price" in li) == ("price_data" in li):
            raise bad_param(f"You must specify either `price` or `price_data` in {param}.", f"{param}[price]")
        if "price" in li:
            price_id = get_str(li, "price", f"{param}[price]") or ""
            price = ctx.sb.store.get("price", price_id, ctx.account, "price", f"{param}[price]")
            prod = ctx.sb.store.get("product", price["product"], ctx.account, "product")
        else:
            price_data = get_dict(li, "price_data", f"{param}[price_data]")
            price, prod = _price_from_data(ctx, price_data, f"{param}[price_data]", persist=False)
        items.append(objects.line_item(price, prod, quantity or 1, 0, []))
    currencies = {i["currency"] for i in items}
    if len(currencies) > 1:
        raise bad_param("All line items must have the same currency.", "line_items")
    return items


def _payment_method_types(p: Obj) -> tuple[list[str] | None, list[str]]:
    """`allowed_payment_method_types` as given, and the session's `payment_method_types`: Stripe filters the
    allowed list down to what can be offered (here: what the hosted page takes)."""
    choices = literals(fields(SessionCreateParams)["allowed_payment_method_types"])
    allowed = [str(t) for t in get_list(p, "allowed_payment_method_types")] or None
    for i, t in enumerate(allowed or []):
        if t not in choices:
            raise bad_param(
                f"Invalid allowed_payment_method_types[{i}]: must be one of {', '.join(choices)}",
                f"allowed_payment_method_types[{i}]",
            )
    offered = [t for t in (allowed or PAYMENT_METHOD_TYPES) if t in PAYMENT_METHOD_TYPES]
    if not offered:
        raise not_emulated(f"the payment method types {', '.join(allowed or [])}", "allowed_payment_method_types")
    return allowed, offered


def _discount(ctx: Ctx, p: Obj, subtotal: int, currency: str) -> tuple[Obj | None, Obj | None]:
    """The coupon (and promotion code) of `discounts[0]`, checked for use."""
    raw = get_list(p, "discounts")
    if get_bool(p, "allow_promotion_codes") and raw:
        raise bad_param("You may only specify one of these parameters: allow_promotion_codes, discounts.", "discounts")
    if len(raw) > 1:
        raise bad_param("You may only specify one discount.", "discounts")
    if not raw:
        return None, None
    d = raw[0]
    if not isinstance(d, dict) or ("coupon" in d) == ("promotion_code" in d):
        raise bad_param("Each discount must specify exactly one of `coupon` or `promotion_code`.", "discounts[0]")
    if "coupon" in d:
        coupon_id = get_str(d, "coupon", "discounts[0][coupon]") or ""
        coupon = ctx.sb.store.get("coupon", coupon_id, ctx.account, "coupon", "discounts[0][coupon]")
        coupon_usable(coupon, currency, "discounts[0][coupon]")
        return coupon, None
    promo_id = get_str(d, "promotion_code", "discounts[0][promotion_code]") or ""
    promo = ctx.sb.store.get("promotion_code", promo_id, ctx.account, "promotion_code", "discounts[0][promotion_code]")
    return promotion_usable(ctx.sb, promo, subtotal, currency, "discounts[0][promotion_code]"), promo


@route("POST", "/v1/checkout/sessions", SessionCreateParams, SESSION_PARAMS)
def create_session(ctx: Ctx) -> Obj:
    p = ctx.params
    mode = get_enum(p, "mode", literals(fields(SessionCreateParams)["mode"]))
    if mode is None:
        req(p, "mode")
    if mode != "payment":
        raise not_emulated(f"Checkout Sessions with `mode={mode}`", "mode")
    ui_mode = get_enum(p, "ui_mode", literals(fields(SessionCreateParams)["ui_mode"])) or "hosted_page"
    if ui_mode != "hosted_page":
        raise not_emulated(f"`ui_mode={ui_mode}`", "ui_mode")
    items = _line_items(ctx, p)
    currency = items[0]["currency"]
    current = now()
    expires_at = get_int(p, "expires_at")
    if expires_at is None:
        expires_at = current + 86400
    elif expires_at > current + 86400:
        raise bad_param(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.", "expires_at"
        )
    elif expires_at < current + 1800:
        raise bad_param(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.", "expires_at"
        )
    allowed, offered = _payment_method_types(p)
    pid = _payment_intent_data(ctx, p)
    session_id = new_id("cs_test_", 58)
    subtotal = sum(i["amount_subtotal"] for i in items)
    coupon, promo = _discount(ctx, p, subtotal, currency)
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
        allowed_payment_method_types=allowed,
        payment_method_types=offered,
        allow_promotion_codes=get_bool(p, "allow_promotion_codes"),
        discounts=[],
        locale=get_str(p, "locale"),
        submit_type=get_str(p, "submit_type"),
    )
    x: Obj = {"line_items": items, "payment_intent_data": pid}
    apply_discount(ctx.sb, session, x, coupon, promo)
    ctx.sb.store.add("checkout.session", ctx.account, session, x)
    return session


def _session(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("checkout.session", ctx.path["id"], ctx.account, "checkout.session", "session")


@route("GET", "/v1/checkout/sessions/{id}", SessionRetrieveParams)
def retrieve_session(ctx: Ctx) -> Obj:
    return _session(ctx)


@route("POST", "/v1/checkout/sessions/{id}", SessionUpdateParams, ("metadata",))
def update_session(ctx: Ctx) -> Obj:
    session = _session(ctx)
    session["metadata"] = metadata(ctx.params, session["metadata"])
    return session


@route("POST", "/v1/checkout/sessions/{id}/expire", SessionExpireParams)
def expire_session(ctx: Ctx) -> Obj:
    _session(ctx)
    return money.expire_session(ctx.sb, ctx.path["id"], ctx.account)


@route("GET", "/v1/checkout/sessions", SessionListParams, (*LIST, "status", "payment_intent"))
def list_sessions(ctx: Ctx) -> Obj:
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


@route(
    "GET",
    "/v1/checkout/sessions/{id}/line_items",
    SessionLineItemListParams,
    ("limit", "starting_after", "ending_before"),
)
def list_line_items(ctx: Ctx) -> Obj:
    session = _session(ctx)
    items: list[Any] = ctx.sb.store.hidden(session["id"])["line_items"]
    return paginate(list(items), ctx.params, f"/v1/checkout/sessions/{session['id']}/line_items")
