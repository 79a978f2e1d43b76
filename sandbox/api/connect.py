"""Transfers and reversals, application fees and their refunds, payouts and balance."""

from __future__ import annotations

from stripe.params import (
    ApplicationFeeListParams,
    ApplicationFeeRefundCreateParams,
    ApplicationFeeRefundListParams,
    ApplicationFeeRefundRetrieveParams,
    ApplicationFeeRefundUpdateParams,
    ApplicationFeeRetrieveParams,
    BalanceRetrieveParams,
    PayoutCreateParams,
    PayoutListParams,
    PayoutRetrieveParams,
    PayoutUpdateParams,
    TransferCreateParams,
    TransferListParams,
    TransferRetrieveParams,
    TransferReversalCreateParams,
    TransferReversalListParams,
    TransferReversalRetrieveParams,
    TransferReversalUpdateParams,
    TransferUpdateParams,
)

from sandbox import money, objects
from sandbox.api.accounts import connected
from sandbox.api.router import LIST, Ctx, route, update_editable
from sandbox.errors import invalid, missing, not_emulated
from sandbox.forms import get_enum, get_int, get_str, metadata, req
from sandbox.store import Obj, created_filter, paginate

PAGE = ("limit", "starting_after", "ending_before")


def _platform_only(ctx: Ctx) -> None:
    if not ctx.is_platform:
        raise invalid("This request can only be made by the platform (without Stripe-Account) in the sandbox.")


@route(
    "POST",
    "/v1/transfers",
    TransferCreateParams,
    ("amount", "currency", "destination", "source_transaction", "transfer_group", "metadata", "description"),
)
def create_transfer(ctx: Ctx) -> Obj:
    _platform_only(ctx)
    p = ctx.params
    amount = get_int(p, "amount", minimum=1)
    if amount is None:
        req(p, "amount")
    currency = get_str(p, "currency")
    if currency is None:
        req(p, "currency")
    dest = str(req(p, "destination"))
    money.check_destination(ctx.sb, dest, "destination")
    source = get_str(p, "source_transaction")
    assert amount is not None
    assert currency is not None
    if source is not None:
        ch = ctx.sb.store.get("charge", source, ctx.account, "charge", "source_transaction")
        if ch["currency"] != currency.lower():
            raise invalid(
                "The currency of source_transaction's balance transaction must match the transfer currency.", "currency"
            )
        if amount > ch["amount"] - ch["amount_refunded"]:
            raise invalid("Transfer amount exceeds the available amount of source_transaction.", "amount")
    elif ctx.sb.store.available(ctx.platform, currency.lower()) < amount:
        raise invalid(
            "You have insufficient available funds in your Stripe account. Try adding funds directly to your "
            "available balance by creating Charges using the 4000000000000077 test card.",
            "amount",
            code="balance_insufficient",
        )
    return money.create_transfer(
        ctx.sb,
        amount,
        currency.lower(),
        dest,
        source,
        get_str(p, "transfer_group"),
        metadata(p),
        get_str(p, "description"),
    )


@route("GET", "/v1/transfers/{id}", TransferRetrieveParams)
def retrieve_transfer(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("transfer", ctx.path["id"], ctx.account, "transfer", "transfer")


@route("POST", "/v1/transfers/{id}", TransferUpdateParams, ("metadata", "description"))
def update_transfer(ctx: Ctx) -> Obj:
    tr = ctx.sb.store.get("transfer", ctx.path["id"], ctx.account, "transfer", "transfer")
    return update_editable(ctx, tr, "transfer.updated")


@route("GET", "/v1/transfers", TransferListParams, (*LIST, "destination", "transfer_group"))
def list_transfers(ctx: Ctx) -> Obj:
    items = created_filter(ctx.sb.store.all("transfer", ctx.account), ctx.params)
    for f in ("destination", "transfer_group"):
        value = get_str(ctx.params, f)
        if value is not None:
            items = [i for i in items if i[f] == value]
    return paginate(items, ctx.params, "/v1/transfers")


@route("POST", "/v1/transfers/{id}/reversals", TransferReversalCreateParams, ("amount", "metadata"))
def create_reversal(ctx: Ctx) -> Obj:
    tr = ctx.sb.store.get("transfer", ctx.path["id"], ctx.account, "transfer", "id")
    return money.reverse_transfer(ctx.sb, tr, get_int(ctx.params, "amount", minimum=1), metadata(ctx.params), None)


@route("GET", "/v1/transfers/{id}/reversals", TransferReversalListParams, PAGE)
def list_reversals(ctx: Ctx) -> Obj:
    tr = ctx.sb.store.get("transfer", ctx.path["id"], ctx.account, "transfer", "id")
    items = [r for r in ctx.sb.store.all("transfer_reversal", ctx.account) if r["transfer"] == tr["id"]]
    return paginate(items, ctx.params, f"/v1/transfers/{tr['id']}/reversals")


@route("GET", "/v1/transfers/{id}/reversals/{rid}", TransferReversalRetrieveParams)
def retrieve_reversal(ctx: Ctx) -> Obj:
    ctx.sb.store.get("transfer", ctx.path["id"], ctx.account, "transfer", "id")
    trr = ctx.sb.store.get("transfer_reversal", ctx.path["rid"], ctx.account, "transfer_reversal")
    if trr["transfer"] != ctx.path["id"]:
        raise missing("transfer_reversal", ctx.path["rid"])
    return trr


@route("POST", "/v1/transfers/{id}/reversals/{rid}", TransferReversalUpdateParams, ("metadata",))
def update_reversal(ctx: Ctx) -> Obj:
    trr = retrieve_reversal(ctx)
    trr["metadata"] = metadata(ctx.params, trr["metadata"])
    return trr


# ---- application fees --------------------------------------------------------------------------
@route("GET", "/v1/application_fees/{id}", ApplicationFeeRetrieveParams)
def retrieve_fee(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("application_fee", ctx.path["id"], ctx.account, "application_fee")


@route("GET", "/v1/application_fees", ApplicationFeeListParams, (*LIST, "charge"))
def list_fees(ctx: Ctx) -> Obj:
    items = created_filter(ctx.sb.store.all("application_fee", ctx.account), ctx.params)
    charge = get_str(ctx.params, "charge")
    if charge is not None:
        items = [i for i in items if i["charge"] == charge or i["originating_transaction"] == charge]
    return paginate(items, ctx.params, "/v1/application_fees")


@route("POST", "/v1/application_fees/{id}/refunds", ApplicationFeeRefundCreateParams, ("amount", "metadata"))
def create_fee_refund(ctx: Ctx) -> Obj:
    fee = ctx.sb.store.get("application_fee", ctx.path["id"], ctx.account, "application_fee", "id")
    return money.refund_fee(ctx.sb, fee, get_int(ctx.params, "amount", minimum=1), metadata(ctx.params))


@route("GET", "/v1/application_fees/{id}/refunds", ApplicationFeeRefundListParams, PAGE)
def list_fee_refunds(ctx: Ctx) -> Obj:
    fee = ctx.sb.store.get("application_fee", ctx.path["id"], ctx.account, "application_fee", "id")
    items = [r for r in ctx.sb.store.all("fee_refund", ctx.account) if r["fee"] == fee["id"]]
    return paginate(items, ctx.params, f"/v1/application_fees/{fee['id']}/refunds")


@route("GET", "/v1/application_fees/{id}/refunds/{rid}", ApplicationFeeRefundRetrieveParams)
def retrieve_fee_refund(ctx: Ctx) -> Obj:
    fr = ctx.sb.store.get("fee_refund", ctx.path["rid"], ctx.account, "fee_refund")
    if fr["fee"] != ctx.path["id"]:
        raise missing("fee_refund", ctx.path["rid"])
    return fr


@route("POST", "/v1/application_fees/{id}/refunds/{rid}", ApplicationFeeRefundUpdateParams, ("metadata",))
def update_fee_refund(ctx: Ctx) -> Obj:
    fr = retrieve_fee_refund(ctx)
    fr["metadata"] = metadata(ctx.params, fr["metadata"])
    return fr


# ---- payouts and balance -----------------------------------------------------------------------
@route("POST", "/v1/payouts", PayoutCreateParams, ("amount", "currency", "description", "metadata", "method"))
def create_payout(ctx: Ctx) -> Obj:
    p = ctx.params
    amount = get_int(p, "amount", minimum=1)
    if amount is None:
        req(p, "amount")
    currency = get_str(p, "currency")
    if currency is None:
        req(p, "currency")
    if get_enum(p, "method", ("standard", "instant")) == "instant":
        raise not_emulated("instant payouts", "method")
    assert amount is not None
    assert currency is not None
    return money.create_payout(
        ctx.sb, ctx.account, amount, currency.lower(), metadata(p), get_str(p, "description"), automatic=False
    )


@route("GET", "/v1/payouts/{id}", PayoutRetrieveParams)
def retrieve_payout(ctx: Ctx) -> Obj:
    return ctx.sb.store.get("payout", ctx.path["id"], ctx.account, "payout", "payout")


@route("POST", "/v1/payouts/{id}", PayoutUpdateParams, ("metadata",))
def update_payout(ctx: Ctx) -> Obj:
    po = ctx.sb.store.get("payout", ctx.path["id"], ctx.account, "payout", "payout")
    return update_editable(ctx, po, "payout.updated")


@route("GET", "/v1/payouts", PayoutListParams, (*LIST, "status"))
def list_payouts(ctx: Ctx) -> Obj:
    items = created_filter(ctx.sb.store.all("payout", ctx.account), ctx.params)
    status = get_str(ctx.params, "status")
    if status is not None:
        items = [i for i in items if i["status"] == status]
    return paginate(items, ctx.params, "/v1/payouts")


@route("GET", "/v1/balance", BalanceRetrieveParams)
def retrieve_balance(ctx: Ctx) -> Obj:
    currency = "usd" if ctx.is_platform else connected(ctx.sb, ctx.account)["default_currency"]
    return objects.balance(ctx.sb.store.balances.get(ctx.account, {}), ctx.is_platform, currency)
