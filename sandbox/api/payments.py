"""PaymentIntents, Charges, Refunds and Disputes (read paths and the writes Stripe allows)."""

from __future__ import annotations

from stripe.params import (
    ChargeListParams,
    ChargeRetrieveParams,
    ChargeUpdateParams,
    DisputeCloseParams,
    DisputeListParams,
    DisputeRetrieveParams,
    DisputeUpdateParams,
    PaymentIntentListParams,
    PaymentIntentRetrieveParams,
    PaymentIntentUpdateParams,
    RefundCreateParams,
    RefundListParams,
    RefundRetrieveParams,
    RefundUpdateParams,
)

from sandbox import money
from sandbox.api.router import INCLUDABLE, LIST, Ctx, route, update_editable
from sandbox.errors import bad_param, invalid
from sandbox.forms import get_bool, get_dict, get_enum, get_int, get_str, metadata
from sandbox.runtime import Sandbox
from sandbox.store import Obj, created_filter, paginate


def _filter(items: list[Obj], ctx: Ctx, *fields: str) -> list[Obj]:
    for f in fields:
        value = get_str(ctx.params, f)
        if value is not None:
            items = [i for i in items if i.get(f) == value]
    return items


@route("GET", "/v1/payment_intents/{id}", PaymentIntentRetrieveParams)
def retrieve_payment_intent(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("payment_intent", ctx.path["id"], ctx.account, "payment_intent", "intent")


@route("POST", "/v1/payment_intents/{id}", PaymentIntentUpdateParams, ("metadata", "description"))
def update_payment_intent(ctx: Ctx) -> Obj:
    pi = ctx.sb.store.get("payment_intent", ctx.path["id"], ctx.account, "payment_intent", "intent")
    pi["metadata"] = metadata(ctx.params, pi["metadata"])
    if "description" in ctx.params:
        pi["description"] = get_str(ctx.params, "description")
    return pi


@route("GET", "/v1/payment_intents", PaymentIntentListParams, LIST)
def list_payment_intents(ctx: Ctx) -> Obj:
    items = created_filter(ctx.sb.store.all("payment_intent", ctx.account), ctx.params)
    return paginate(items, ctx.params, "/v1/payment_intents")


@route("GET", "/v1/charges/{id}", ChargeRetrieveParams)
def retrieve_charge(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("charge", ctx.path["id"], ctx.account, "charge", "charge")


@route("POST", "/v1/charges/{id}", ChargeUpdateParams, ("metadata", "description"))
def update_charge(ctx: Ctx) -> Obj:
    ch = ctx.sb.store.get("charge", ctx.path["id"], ctx.account, "charge", "charge")
    return update_editable(ctx, ch, "charge.updated")


@route("GET", "/v1/charges", ChargeListParams, (*LIST, "payment_intent", "transfer_group"))
def list_charges(ctx: Ctx) -> Obj:
    items = _filter(
        created_filter(ctx.sb.store.all("charge", ctx.account), ctx.params), ctx, "payment_intent", "transfer_group"
    )
    return paginate(items, ctx.params, "/v1/charges")


def _charge_refunds(sb: Sandbox, ch: Obj) -> Obj:
    data = [r for r in sb.store.all("refund") if r["charge"] == ch["id"]]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "total_count": len(data),
        "url": f"/v1/charges/{ch['id']}/refunds",
    }


INCLUDABLE[("charge", "refunds")] = _charge_refunds


# ---- refunds -----------------------------------------------------------------------------------
@route(
    "POST",
    "/v1/refunds",
    RefundCreateParams,
    ("charge", "payment_intent", "amount", "reason", "metadata", "reverse_transfer", "refund_application_fee"),
)
def create_refund(ctx: Ctx) -> Obj:
    p = ctx.params
    charge_id = get_str(p, "charge")
    pi_id = get_str(p, "payment_intent")
    if charge_id and pi_id:
        raise bad_param("You may only specify one of these parameters: charge, payment_intent.", "payment_intent")
    if pi_id:
        pi = ctx.sb.store.get("payment_intent", pi_id, ctx.account, "payment_intent", "payment_intent")
        if not pi["latest_charge"] or pi["status"] != "succeeded":
            raise invalid(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                "payment_intent",
                code="charge_not_refundable",
            )
        charge_id = pi["latest_charge"]
    if not charge_id:
        raise bad_param(
            "One of the following params should be provided for this request: payment_intent or charge.", "charge"
        )
    ch = ctx.sb.store.get("charge", charge_id, ctx.account, "charge", "charge")
    amount = get_int(p, "amount", minimum=1)
    reason = get_enum(p, "reason", ("duplicate", "fraudulent", "requested_by_customer"))
    return money.refund_charge(
        ctx.sb,
        ctx.account,
        ch,
        amount,
        reason,
        metadata(p),
        bool(get_bool(p, "reverse_transfer")),
        bool(get_bool(p, "refund_application_fee")),
    )


@route("GET", "/v1/refunds/{id}", RefundRetrieveParams)
def retrieve_refund(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("refund", ctx.path["id"], ctx.account, "refund", "refund")


@route("POST", "/v1/refunds/{id}", RefundUpdateParams, ("metadata",))
def update_refund(ctx: Ctx) -> Obj:
    re = ctx.sb.store.get("refund", ctx.path["id"], ctx.account, "refund", "refund")
    return update_editable(ctx, re, "refund.updated", "charge.refund.updated")


@route("GET", "/v1/refunds", RefundListParams, (*LIST, "charge", "payment_intent"))
def list_refunds(ctx: Ctx) -> Obj:
    items = _filter(
        created_filter(ctx.sb.store.all("refund", ctx.account), ctx.params), ctx, "charge", "payment_intent"
    )
    return paginate(items, ctx.params, "/v1/refunds")


# ---- disputes ----------------------------------------------------------------------------------
@route("GET", "/v1/disputes/{id}", DisputeRetrieveParams)
def retrieve_dispute(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("dispute", ctx.path["id"], ctx.account, "dispute", "dispute")


@route("POST", "/v1/disputes/{id}", DisputeUpdateParams, ("evidence", "metadata", "submit"))
def update_dispute(ctx: Ctx) -> Obj:
    dp = ctx.sb.store.get("dispute", ctx.path["id"], ctx.account, "dispute", "dispute")
    p = ctx.params
    submit = get_bool(p, "submit")
    evidence = get_dict(p, "evidence")
    md = metadata(p, dp["metadata"]) if "metadata" in p else None
    return money.update_dispute(
        ctx.sb, ctx.path["id"], ctx.account, None, evidence, md, submit=True if submit is None else submit
    )


@route("POST", "/v1/disputes/{id}/close", DisputeCloseParams)
def close_dispute(ctx: Ctx) -> Obj:
    return money.close_dispute(ctx.sb, ctx.path["id"], ctx.account, "lost")


@route("GET", "/v1/disputes", DisputeListParams, (*LIST, "charge", "payment_intent"))
def list_disputes(ctx: Ctx) -> Obj:
    items = _filter(
        created_filter(ctx.sb.store.all("dispute", ctx.account), ctx.params), ctx, "charge", "payment_intent"
    )
    return paginate(items, ctx.params, "/v1/disputes")
