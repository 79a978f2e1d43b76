"""Money movements: checkout payments, destination/direct charges, transfers, fees, refunds, disputes, payouts."""

from __future__ import annotations

from typing import Any

from sandbox import objects
from sandbox.errors import StripeError, invalid
from sandbox.runtime import Sandbox
from sandbox.store import Obj, new_id, now

CARD_SUCCESS = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_INSUFFICIENT = "4000000000009995"
CARD_3DS = "4000002500003155"

DECLINES = {
    CARD_DECLINED: ("card_declined", "generic_decline", "Your card was declined."),
    CARD_INSUFFICIENT: ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
}


def money(amount: int, currency: str) -> str:
    """An amount as Stripe's messages write it: `$0.50` for USD, else the major unit and the code."""
    if currency == "usd":
        return f"${amount / 100:,.2f}"
    places = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    whole, fraction = divmod(amount, 10**places)
    return f"{whole:,}" + (f".{fraction:0{places}d}" if places else "") + f" {currency.upper()}"


# Amounts in thousandths, which Stripe requires to end in 0 (docs.stripe.com/currencies#three-decimal).
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}


# ---- checkout ----------------------------------------------------------------------------------
def _session(sb: Sandbox, session_id: str) -> tuple[Obj, Obj, str]:
    rec = sb.store.record(session_id)
    if rec is None or rec["kind"] != "checkout.session":
        raise StripeError(f"No such checkout.session: '{session_id}'", status=404, code="resource_missing")
    return rec["obj"], rec["x"], rec["owner"]


def _require_open(session: Obj) -> None:
    if session["status"] != "open":
        raise invalid(f"This Checkout Session is no longer active (status: {session['status']}).")


def _payment_method(kind: str, number: str | None) -> tuple[str, Obj]:
    pm_id = new_id("pm_")
    if kind == "card":
        assert number is not None
        return pm_id, {"card": objects.card_details(number, 0), "type": "card"}
    return pm_id, {
        "type": "us_bank_account",
        "us_bank_account": {
            "account_holder_type": "individual",
            "account_type": "checking",
            "bank_name": "STRIPE TEST BANK",
            "expected_debit_date": None,
            "fingerprint": "sbxbank6789",
            "last4": "6789",
            "mandate": new_id("mandate_"),
            "payment_reference": None,
            "routing_number": "110000000",
        },
    }


def _ensure_intent(sb: Sandbox, session: Obj, x: Obj, owner: str) -> Obj:
    if session["payment_intent"] is not None:
        pi: Obj = sb.store.find(session["payment_intent"]) or {}
        if pi.get("status") != "canceled":
            return pi
        # Canceled when a discount took the total to 0; a later code made it payable again. A canceled
        # PaymentIntent can never be confirmed: the session gets a new one, for its current total.
    pid: Obj = x["payment_intent_data"]
    transfer_data = None
    if pid.get("destination"):
        transfer_data = {"destination": pid["destination"]}
        if pid.get("transfer_amount") is not None:
            transfer_data["amount"] = pid["transfer_amount"]
    group = pid.get("transfer_group")
    pi = objects.payment_intent(
        amount=session["amount_total"],
        currency=session["currency"],
        payment_method_types=list(session["payment_method_types"]),
        application_fee_amount=pid.get("application_fee_amount"),
        on_behalf_of=pid.get("on_behalf_of"),
        transfer_data=transfer_data,
        transfer_group=group,
        metadata=dict(pid.get("metadata") or {}),
        description=pid.get("description"),
        receipt_email=pid.get("receipt_email"),
        application=objects.APPLICATION_ID if owner != sb.platform else None,
    )
    if transfer_data is not None and group is None:
        pi["transfer_group"] = f"group_{pi['id']}"
    sb.store.add("payment_intent", owner, pi, {"session": session["id"]})
    session["payment_intent"] = pi["id"]
    sb.emit(owner, "payment_intent.created", pi)
    return pi


def _new_charge(
    sb: Sandbox, owner: str, pi: Obj, pm_id: str, pmd: Obj, status: str, email: str | None, **kw: Any
) -> Obj:
    ch = objects.charge(
        amount=pi["amount"],
        currency=pi["currency"],
        payment_intent=pi["id"],
        payment_method=pm_id,
        payment_method_details=pmd,
        status=status,
        billing_email=email,
        application_fee_amount=pi["application_fee_amount"],
        on_behalf_of=pi["on_behalf_of"],
        transfer_data=pi["transfer_data"],
        transfer_group=pi["transfer_group"],
        metadata=dict(pi["metadata"]),
        description=pi["description"],
        application=pi["application"],
        outcome=kw.pop("outcome", None),
        **kw,
    )
    sb.store.add("charge", owner, ch)
    pi["latest_charge"] = ch["id"]
    pi["payment_method"] = pm_id
    return ch


def _customer(session: Obj, email: str | None, name: str | None) -> None:
    session["customer_details"] = objects.customer_details(email or session["customer_email"], name)


def pay_with_card(sb: Sandbox, session_id: str, number: str, email: str | None = None, name: str | None = None) -> str:
    """Confirm a session with a test card. Returns "succeeded", "declined" or "requires_action"."""
    session, x, owner = _session(sb, session_id)
    _require_open(session)
    number = number.replace(" ", "")
    if session["amount_total"] == 0:
        complete_free(sb, session_id, email, name)
        return "succeeded"
    if not number.isdigit():  # refused before anything is created, like Stripe.js refuses it in the form
        raise invalid("Your card number is incorrect.", code="incorrect_number")
    pi = _ensure_intent(sb, session, x, owner)
    if pi["status"] == "requires_action":  # the buyer abandoned the challenge and tries another card
        pi["next_action"] = None
        x.pop("pending_card", None)
    pm_id, pmd = _payment_method("card", number)
    pmd["card"]["amount_authorized"] = pi["amount"]
    if number in DECLINES:
        code, decline, message = DECLINES[number]
        pmd["card"]["amount_authorized"] = None
        ch = _new_charge(
            sb,
            owner,
            pi,
            pm_id,
            pmd,
            "failed",
            email or session["customer_email"],
            outcome=objects.outcome("declined", decline),
            failure_code=code,  # an error code; the decline code is `outcome.reason`
            failure_message=message,
        )
        _fail_intent(sb, owner, pi, ch, code, decline, message, pm_id, "card")
        return "declined"
    if number == CARD_3DS:
        pi["status"] = "requires_action"
        pi["payment_method"] = pm_id
        pi["last_payment_error"] = None
        x["pending_card"] = number
        x["pending_customer"] = [email, name]
        pi["next_action"] = {
            "redirect_to_url": {
                "return_url": f"{sb.public_url}/c/pay/{session_id}",
                "url": f"{sb.public_url}/c/pay/{session_id}/3ds",
            },
            "type": "redirect_to_url",
        }
        sb.emit(owner, "payment_intent.requires_action", pi)
        return "requires_action"
    return _card_succeeded(sb, owner, session, pi, pm_id, pmd, email, name)


def _card_succeeded(
    sb: Sandbox, owner: str, session: Obj, pi: Obj, pm_id: str, pmd: Obj, email: str | None, name: str | None
) -> str:
    """The end of an authorized card payment: customer details, the Charge, and the session completed."""
    _customer(session, email, name)
    ch = _new_charge(
        sb,
        owner,
        pi,
        pm_id,
        pmd,
        "succeeded",
        email or session["customer_email"],
        outcome=objects.outcome("authorized"),
    )
    _succeed(sb, owner, session, pi, ch)
    return "succeeded"


def finish_3ds(sb: Sandbox, session_id: str, approve: bool) -> str:
    session, x, owner = _session(sb, session_id)
    _require_open(session)
    pi = sb.store.find(session["payment_intent"] or "")
    if pi is None or pi["status"] != "requires_action":
        raise invalid("This Checkout Session has no payment awaiting 3-D Secure authentication.")
    pi["next_action"] = None
    pm_id = pi["payment_method"]
    number = x.pop("pending_card", CARD_3DS)
    email, name = x.pop("pending_customer", [None, None])
    if not approve:
        pi["status"] = "requires_payment_method"
        pi["last_payment_error"] = _lpe(
            None,
            "payment_intent_authentication_failure",
            None,
            "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new "
            "PaymentMethod to attempt to fulfill this PaymentIntent again.",
            pi["id"],
            pm_id,
            "card",
        )
        pi["payment_method"] = None
        sb.emit(owner, "payment_intent.payment_failed", pi)
        return "failed"
    _pm, pmd = _payment_method("card", number)
    pmd["card"]["amount_authorized"] = pi["amount"]
    pmd["card"]["three_d_secure"] = {
        "authentication_flow": "challenge",
        "electronic_commerce_indicator": "05",
        "result": "authenticated",
        "result_reason": None,
        "transaction_id": new_id("", 32),
        "version": "2.2.0",
    }
    return _card_succeeded(sb, owner, session, pi, pm_id, pmd, email, name)


def _lpe(
    charge_id: str | None, code: str, decline: str | None, message: str, pi_id: str, pm_id: str | None, pm_type: str
) -> Obj:
    return {
        "advice_code": None,
        "charge": charge_id,
        "code": code,
        "decline_code": decline,
        "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
        "message": message,
        "network_advice_code": None,
        "network_decline_code": None,
        "param": None,
        "payment_intent": None,
        "payment_method": {"id": pm_id, "object": "payment_method", "type": pm_type, "livemode": False}
        if pm_id
        else None,
        "payment_method_type": pm_type,
        "request_log_url": None,
        "setup_intent": None,
        "source": None,
        "type": "card_error" if pm_type == "card" else "invalid_request_error",
    }


def _fail_intent(
    sb: Sandbox, owner: str, pi: Obj, ch: Obj, code: str, decline: str | None, message: str, pm_id: str, pm_type: str
) -> None:
    pi["status"] = "requires_payment_method"
    pi["payment_method"] = None
    pi["last_payment_error"] = _lpe(ch["id"], code, decline, message, pi["id"], pm_id, pm_type)
    sb.emit(owner, "charge.failed", ch)
    sb.emit(owner, "payment_intent.payment_failed", pi)


def pay_with_bank(sb: Sandbox, session_id: str, email: str | None = None, name: str | None = None) -> None:
    """A delayed-notification bank debit: session completes unpaid, the PaymentIntent is processing."""
    session, x, owner = _session(sb, session_id)
    _require_open(session)
    if session["amount_total"] == 0:
        complete_free(sb, session_id, email, name)
        return
    if "us_bank_account" not in session["payment_method_types"]:
        raise invalid("This Checkout Session does not accept the payment method type `us_bank_account`.")
    pi = _ensure_intent(sb, session, x, owner)
    if pi["status"] == "requires_action":
        pi["next_action"] = None
        x.pop("pending_card", None)
    pm_id, pmd = _payment_method("bank", None)
    _customer(session, email, name)
    ch = _new_charge(sb, owner, pi, pm_id, pmd, "pending", email or session["customer_email"])
    pi["status"] = "processing"
    pi["last_payment_error"] = None
    sb.emit(owner, "payment_intent.processing", pi)
    sb.emit(owner, "charge.pending", ch)
    _complete(sb, owner, session, "unpaid")


def settle_bank_debit(sb: Sandbox, session_id: str, succeed: bool) -> Obj:
    session, _x, owner = _session(sb, session_id)
    pi = sb.store.find(session["payment_intent"] or "")
    if pi is None or pi["status"] != "processing":
        raise invalid("This Checkout Session has no bank debit awaiting settlement.")
    ch: Obj = sb.store.find(pi["latest_charge"]) or {}
    if succeed:
        ch["status"] = "succeeded"
        ch["paid"] = True
        ch["captured"] = True
        ch["amount_captured"] = ch["amount"]
        ch["balance_transaction"] = new_id("txn_")
        ch["outcome"] = objects.outcome("authorized")
        _succeed(sb, owner, session, pi, ch, async_event=True)
    else:
        ch["status"] = "failed"
        ch["failure_code"] = "insufficient_funds"
        ch["failure_message"] = "The customer's account has insufficient funds to cover this payment."
        pi["status"] = "requires_payment_method"
        pi["payment_method"] = None
        pi["last_payment_error"] = _lpe(
            ch["id"],
            "payment_method_provider_decline",
            None,
            ch["failure_message"],
            pi["id"],
            ch["payment_method"],
            "us_bank_account",
        )
        sb.emit(owner, "charge.failed", ch)
        sb.emit(owner, "payment_intent.payment_failed", pi)
        sb.emit(owner, "checkout.session.async_payment_failed", session)
    return session


def complete_free(sb: Sandbox, session_id: str, email: str | None = None, name: str | None = None) -> None:
    """A zero-total session: no payment is collected, payment_status "no_payment_required"."""
    session, _x, owner = _session(sb, session_id)
    _require_open(session)
    if session["amount_total"] != 0:
        raise invalid("This Checkout Session requires a payment.")
    _customer(session, email, name)
    _complete(sb, owner, session, "no_payment_required")


def _complete(sb: Sandbox, owner: str, session: Obj, payment_status: str) -> None:
    """The session completes (however it was paid): its discount is redeemed, `checkout.session.completed`."""
    session["status"] = "complete"
    session["url"] = None  # "only present when the session is active"
    session["payment_status"] = payment_status
    for d in session["discounts"]:
        for key in ("coupon", "promotion_code"):
            target = sb.store.find(d[key] or "")
            if target is not None:
                target["times_redeemed"] += 1
    sb.emit(owner, "checkout.session.completed", session)


def follow_total(sb: Sandbox, session: Obj) -> None:
    """After the total of an open session changed, its unpaid PaymentIntent follows: the new amount (Stripe
    has no `payment_intent.updated` event), or canceled when nothing is left to pay."""
    pi = sb.store.find(session["payment_intent"] or "")
    if pi is None or pi["status"] not in ("requires_payment_method", "requires_action"):
        return
    if pi["status"] == "requires_action":  # a pending 3-D Secure challenge was for the old amount
        sb.store.hidden(session["id"]).pop("pending_card", None)
        pi["status"] = "requires_payment_method"
        pi["next_action"] = None
    if session["amount_total"] == 0:
        _cancel_intent(sb, pi)
    else:
        pi["amount"] = session["amount_total"]


def _cancel_intent(sb: Sandbox, pi: Obj) -> None:
    pi["status"] = "canceled"
    pi["canceled_at"] = now()
    pi["cancellation_reason"] = "automatic"
    pi["next_action"] = None
    sb.emit(sb.store.owner(pi["id"]), "payment_intent.canceled", pi)


def _succeed(sb: Sandbox, owner: str, session: Obj, pi: Obj, ch: Obj, async_event: bool = False) -> None:
    pi["status"] = "succeeded"
    pi["amount_received"] = pi["amount"]
    pi["last_payment_error"] = None
    platform = sb.platform
    fee_amount: int | None = pi["application_fee_amount"]
    sb.store.credit(owner, ch["currency"], ch["amount"])
    sb.emit(owner, "charge.succeeded", ch)
    sb.emit(owner, "payment_intent.succeeded", pi)
    if pi["transfer_data"]:
        dest = pi["transfer_data"]["destination"]
        tr_amount = pi["transfer_data"].get("amount") or ch["amount"]
        tr = create_transfer(sb, tr_amount, ch["currency"], dest, ch["id"], pi["transfer_group"], {}, None, emit=False)
        ch["transfer"] = tr["id"]
        sb.emit(platform, "transfer.created", tr)
        if fee_amount:
            py = sb.store.find(tr["destination_payment"]) or {}
            fee = objects.application_fee(
                account_id=dest, amount=fee_amount, currency=ch["currency"], charge_id=py["id"], originating=ch["id"]
            )
            sb.store.add("application_fee", platform, fee)
            ch["application_fee"] = fee["id"]
            py["application_fee"] = fee["id"]
            py["application_fee_amount"] = fee_amount
            sb.store.credit(dest, ch["currency"], -fee_amount)
            sb.store.credit(platform, ch["currency"], fee_amount)
            sb.emit(platform, "application_fee.created", fee)
    elif owner != platform and fee_amount:
        fee = objects.application_fee(
            account_id=owner, amount=fee_amount, currency=ch["currency"], charge_id=ch["id"], originating=None
        )
        sb.store.add("application_fee", platform, fee)
        ch["application_fee"] = fee["id"]
        sb.store.credit(owner, ch["currency"], -fee_amount)
        sb.store.credit(platform, ch["currency"], fee_amount)
        sb.emit(platform, "application_fee.created", fee)
    if async_event:
        session["payment_status"] = "paid"
        sb.emit(owner, "checkout.session.async_payment_succeeded", session)
    else:
        _complete(sb, owner, session, "paid")


def expire_session(sb: Sandbox, session_id: str, owner_check: str | None = None) -> Obj:
    session, _x, owner = _session(sb, session_id)
    if owner_check is not None and owner != owner_check:
        raise StripeError(
            f"No such checkout.session: '{session_id}'", status=404, code="resource_missing", param="session"
        )
    if session["status"] != "open":
        raise invalid(
            'Only Checkout Sessions with a status in ["open"] can be expired. '
            f"This Checkout Session has a status of `{session['status']}`."
        )
    pi = sb.store.find(session["payment_intent"] or "")
    if pi is not None and pi["status"] in ("requires_payment_method", "requires_action"):
        _cancel_intent(sb, pi)
    session["status"] = "expired"
    session["url"] = None
    sb.emit(owner, "checkout.session.expired", session)
    return session


def expire_due_sessions(sb: Sandbox) -> int:
    count = 0
    current = now()
    for s in sb.store.all("checkout.session"):
        if s["status"] == "open" and s["expires_at"] <= current:
            expire_session(sb, s["id"])
            count += 1
    return count


# ---- transfers ---------------------------------------------------------------------------------
def check_destination(sb: Sandbox, dest: str, param: str) -> Obj:
    rec = sb.store.record(dest)
    if rec is None or rec["kind"] != "account" or rec["owner"] != sb.platform or rec["x"].get("deauthorized"):
        raise invalid(f"No such destination: '{dest}'", param, code="resource_missing")
    acct: Obj = rec["obj"]
    if acct["capabilities"].get("transfers") != "active":
        raise invalid(
            "Your destination account needs to have at least one of the following capabilities enabled: "
            "transfers, crypto_transfers, legacy_payments",
            param,
            code="insufficient_capabilities_for_transfer",
        )
    return acct


def create_transfer(
    sb: Sandbox,
    amount: int,
    currency: str,
    dest: str,
    source_transaction: str | None,
    group: str | None,
    metadata: dict[str, str],
    description: str | None,
    emit: bool = True,
) -> Obj:
    platform = sb.platform
    tr = objects.transfer(
        amount=amount,
        currency=currency,
        destination=dest,
        source_transaction=source_transaction,
        transfer_group=group,
        metadata=metadata,
        description=description,
    )
    sb.store.add("transfer", platform, tr)
    py = objects.charge(
        charge_id=new_id("py_"),
        amount=amount,
        currency=currency,
        payment_intent=None,
        payment_method=None,
        payment_method_details={"stripe_account": {}, "type": "stripe_account"},
        status="succeeded",
        billing_email=None,
        application_fee_amount=None,
        on_behalf_of=None,
        transfer_data=None,
        transfer_group=None,
        metadata={},
        description=None,
        application=objects.APPLICATION_ID,
        outcome=None,
    )
    py["source_transfer"] = tr["id"]
    sb.store.add("charge", dest, py)
    tr["destination_payment"] = py["id"]
    sb.store.credit(platform, currency, -amount)
    sb.store.credit(dest, currency, amount)
    if emit:
        sb.emit(platform, "transfer.created", tr)
    return tr


def reverse_transfer(
    sb: Sandbox, tr: Obj, amount: int | None, metadata: dict[str, str], source_refund: str | None, param: str = "amount"
) -> Obj:
    remaining = tr["amount"] - tr["amount_reversed"]
    amt = remaining if amount is None else amount
    if remaining <= 0:
        raise invalid(f"Transfer {tr['id']} has already been fully reversed.")
    if amt > remaining or amt <= 0:
        raise invalid(
            f"You have requested to reverse {money(amt, tr['currency'])}, but the transfer only has "
            f"{money(remaining, tr['currency'])} left to reverse.",
            param,
        )
    trr = objects.transfer_reversal(amt, tr, metadata, source_refund)
    sb.store.add("transfer_reversal", sb.platform, trr, {"transfer": tr["id"]})
    previous = {"amount_reversed": tr["amount_reversed"], "reversed": tr["reversed"]}
    tr["amount_reversed"] += amt
    tr["reversed"] = tr["amount_reversed"] >= tr["amount"]
    tr["reversals"]["data"].insert(0, trr)
    tr["reversals"]["total_count"] += 1
    sb.store.credit(tr["destination"], tr["currency"], -amt)
    sb.store.credit(sb.platform, tr["currency"], amt)
    sb.emit(sb.platform, "transfer.reversed", tr, previous)
    return trr


# ---- application fees --------------------------------------------------------------------------
def refund_fee(sb: Sandbox, fee: Obj, amount: int | None, metadata: dict[str, str], param: str = "amount") -> Obj:
    remaining = fee["amount"] - fee["amount_refunded"]
    amt = remaining if amount is None else amount
    if remaining <= 0:
        raise invalid(f"Application fee {fee['id']} has already been refunded.", code="charge_already_refunded")
    if amt > remaining or amt <= 0:
        raise invalid(
            f"Refund amount ({money(amt, fee['currency'])}) is greater than the unrefunded amount on the "
            f"application fee ({money(remaining, fee['currency'])}).",
            param,
            code="amount_too_large",
        )
    fr = objects.fee_refund(amt, fee, metadata)
    sb.store.add("fee_refund", sb.platform, fr, {"fee": fee["id"]})
    fee["amount_refunded"] += amt
    fee["refunded"] = fee["amount_refunded"] >= fee["amount"]
    fee["refunds"]["data"].insert(0, fr)
    fee["refunds"]["total_count"] += 1
    sb.store.credit(sb.platform, fee["currency"], -amt)
    sb.store.credit(fee["account"], fee["currency"], amt)
    sb.emit(sb.platform, "application_fee.refunded", fee)
    return fr


# ---- refunds -----------------------------------------------------------------------------------
def refund_charge(
    sb: Sandbox,
    owner: str,
    ch: Obj,
    amount: int | None,
    reason: str | None,
    metadata: dict[str, str],
    reverse: bool,
    refund_app_fee: bool,
) -> Obj:
    if ch["status"] != "succeeded":
        raise invalid(f"Charge {ch['id']} has not succeeded and cannot be refunded.", code="charge_not_refundable")
    if ch["disputed"]:
        raise invalid(f"Charge {ch['id']} has been charged back; cannot issue a refund.", code="charge_disputed")
    remaining = ch["amount"] - ch["amount_refunded"]
    if remaining <= 0:
        raise invalid(f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
    amt = remaining if amount is None else amount
    if amt <= 0:
        raise invalid("This value must be greater than or equal to 1.", "amount")
    if amt > remaining:
        raise invalid(
            f"Refund amount ({money(amt, ch['currency'])}) is greater than unrefunded amount on charge "
            f"({money(remaining, ch['currency'])})",
            "amount",
            code="amount_too_large",
        )
    if reverse and not ch["transfer"]:
        raise invalid(
            "You cannot reverse the transfer of a charge that was not created with transfer_data[destination].",
            "reverse_transfer",
        )
    re = objects.refund(amount=amt, charge_obj=ch, reason=reason, metadata=metadata, status="succeeded")
    if ch["payment_method_details"] and ch["payment_method_details"].get("type") != "card":
        re["destination_details"] = {
            "type": ch["payment_method_details"]["type"],
            ch["payment_method_details"]["type"]: {},
        }
    sb.store.add("refund", owner, re)
    previous = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amt
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    sb.store.credit(owner, ch["currency"], -amt)
    if reverse:
        tr = sb.store.find(ch["transfer"]) or {}
        share = min(tr["amount"] - tr["amount_reversed"], round(tr["amount"] * amt / ch["amount"]))
        if share > 0:
            trr = reverse_transfer(sb, tr, share, {}, re["id"])
            re["transfer_reversal"] = trr["id"]
    if refund_app_fee and ch["application_fee"]:
        fee = sb.store.find(ch["application_fee"]) or {}
        share = min(fee["amount"] - fee["amount_refunded"], round(fee["amount"] * amt / ch["amount"]))
        if share > 0:
            refund_fee(sb, fee, share, {})
    sb.emit(owner, "refund.created", re)
    sb.emit(owner, "charge.refunded", ch, previous)
    return re


def fail_refund(sb: Sandbox, refund_id: str) -> Obj:
    rec = sb.store.record(refund_id)
    if rec is None or rec["kind"] != "refund":
        raise StripeError(f"No such refund: '{refund_id}'", status=404, code="resource_missing")
    re: Obj = rec["obj"]
    owner: str = rec["owner"]
    if re["status"] != "succeeded":
        raise invalid("Only a succeeded refund can be failed.")
    previous = {"status": re["status"], "failure_reason": None}
    re["status"] = "failed"
    re["failure_reason"] = "expired_or_canceled_card"
    re["failure_balance_transaction"] = new_id("txn_")
    ch = sb.store.find(re["charge"]) or {}
    ch["amount_refunded"] -= re["amount"]
    ch["refunded"] = False
    sb.store.credit(owner, ch["currency"], re["amount"])
    sb.emit(owner, "refund.updated", re, previous)
    sb.emit(owner, "charge.refund.updated", re, previous)
    sb.emit(owner, "refund.failed", re)
    return re


# ---- disputes ----------------------------------------------------------------------------------
def open_dispute(sb: Sandbox, charge_id: str, amount: int | None, reason: str) -> Obj:
    rec = sb.store.record(charge_id)
    if rec is None or rec["kind"] != "charge":
        raise StripeError(f"No such charge: '{charge_id}'", status=404, code="resource_missing")
    ch: Obj = rec["obj"]
    owner: str = rec["owner"]
    if ch["status"] != "succeeded" or ch["disputed"]:
        raise invalid(f"Charge {charge_id} cannot be disputed (status {ch['status']}, disputed {ch['disputed']}).")
    dp = objects.dispute(ch, amount or ch["amount"] - ch["amount_refunded"], reason)
    sb.store.add("dispute", owner, dp)
    ch["disputed"] = True
    sb.store.credit(owner, ch["currency"], -dp["amount"])
    dp["balance_transactions"] = [
        {
            "id": new_id("txn_"),
            "object": "balance_transaction",
            "amount": -dp["amount"],
            "currency": dp["currency"],
            "type": "adjustment",
        }
    ]
    sb.emit(owner, "charge.dispute.created", dp)
    sb.emit(owner, "charge.dispute.funds_withdrawn", dp)
    return dp


def update_dispute(
    sb: Sandbox,
    dispute_id: str,
    owner: str | None,
    status: str | None,
    evidence: dict[str, Any] | None,
    metadata: dict[str, str] | None,
    submit: bool = False,
) -> Obj:
    dp = sb.store.get("dispute", dispute_id, owner)
    real_owner = sb.store.owner(dispute_id)
    if dp["status"] in ("won", "lost"):
        raise invalid(f"This dispute is already closed (status: {dp['status']}).")
    previous: Obj = {}
    if evidence:
        previous["evidence"] = dict(dp["evidence"])
        for k, v in evidence.items():
            if k not in dp["evidence"]:
                raise invalid(f"Received unknown parameter: evidence[{k}]", f"evidence[{k}]")
            dp["evidence"][k] = v
        dp["evidence_details"]["has_evidence"] = True
    if metadata is not None:
        previous["metadata"] = dp["metadata"]
        dp["metadata"] = metadata
    if submit:
        previous.setdefault("evidence_details", dict(dp["evidence_details"]))
        dp["evidence_details"]["submission_count"] += 1
        dp["evidence_details"]["submission_method"] = "manual"
        status = status or "under_review"
    if status and status != dp["status"]:
        previous["status"] = dp["status"]
        dp["status"] = status
    sb.emit(real_owner, "charge.dispute.updated", dp, previous)
    return dp


def close_dispute(sb: Sandbox, dispute_id: str, owner: str | None, status: str) -> Obj:
    dp = sb.store.get("dispute", dispute_id, owner)
    real_owner = sb.store.owner(dispute_id)
    if dp["status"] in ("won", "lost"):
        raise invalid(f"This dispute is already closed (status: {dp['status']}).")
    dp["status"] = status
    dp["is_charge_refundable"] = False
    if status == "won":
        sb.store.credit(real_owner, dp["currency"], dp["amount"])
        dp["balance_transactions"].append(
            {
                "id": new_id("txn_"),
                "object": "balance_transaction",
                "amount": dp["amount"],
                "currency": dp["currency"],
                "type": "adjustment",
            }
        )
        sb.emit(real_owner, "charge.dispute.funds_reinstated", dp)
    sb.emit(real_owner, "charge.dispute.closed", dp)
    return dp


# ---- payouts -----------------------------------------------------------------------------------
def create_payout(
    sb: Sandbox,
    account: str,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    description: str | None,
    automatic: bool,
    check_balance: bool = True,
) -> Obj:
    if check_balance and sb.store.available(account, currency) < amount:
        raise invalid(
            "You have insufficient funds in your Stripe account for this transfer. Your card balance is too low. "
            "You can use the /v1/balance endpoint to view your Stripe balance (for more details, see "
            "stripe.com/docs/api#balance).",
            "amount",
            code="balance_insufficient",
        )
    po = objects.payout(amount, currency, metadata, automatic, description)
    sb.store.add("payout", account, po)
    sb.store.credit(account, currency, -amount)
    sb.emit(account, "payout.created", po)
    return po


def finish_payout(sb: Sandbox, payout_id: str, paid: bool, failure_code: str = "account_closed") -> Obj:
    rec = sb.store.record(payout_id)
    if rec is None or rec["kind"] != "payout":
        raise StripeError(f"No such payout: '{payout_id}'", status=404, code="resource_missing")
    po: Obj = rec["obj"]
    owner: str = rec["owner"]
    if po["status"] not in ("pending", "in_transit"):
        raise invalid(f"Payout {payout_id} is already {po['status']}.")
    previous = {"status": po["status"]}
    if paid:
        po["status"] = "paid"
        po["trace_id"] = {"status": "supported", "value": new_id("TRACE", 10)}
        sb.emit(owner, "payout.updated", po, previous)
        sb.emit(owner, "payout.paid", po)
    else:
        po["status"] = "failed"
        po["failure_code"] = failure_code
        po["failure_message"] = "The bank account has been closed."
        po["failure_balance_transaction"] = new_id("txn_")
        po["trace_id"] = {"status": "unsupported", "value": None}
        sb.store.credit(owner, po["currency"], po["amount"])
        sb.emit(owner, "payout.updated", po, previous)
        sb.emit(owner, "payout.failed", po)
    return po
