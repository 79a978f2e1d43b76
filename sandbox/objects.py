"""Object shapes of Stripe's API version pinned by stripe-python (every documented field, null when unset)."""

from __future__ import annotations

from typing import Any

from sandbox.store import Obj, new_id, now

API_VERSION = "2026-10-28.endive"
APPLICATION_ID = "ca_SandboxPlatformApp"

ONBOARDING_FIELDS = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "representative.first_name",
    "representative.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]


def lst(url: str, data: list[Obj] | None = None) -> Obj:
    items = data or []
    return {"object": "list", "data": items, "has_more": False, "total_count": len(items), "url": url}


def requirements(due: list[str] | None = None, disabled_reason: str | None = None) -> Obj:
    items = list(due or [])
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": items,
        "disabled_reason": disabled_reason,
        "errors": [],
        "eventually_due": list(items),
        "past_due": list(items),
        "pending_verification": [],
    }


def controller_for_type(account_type: str) -> Obj:
    base: Obj = {"is_controller": True, "type": "application"}
    if account_type == "standard":
        return {
            **base,
            "fees": {"payer": "account"},
            "losses": {"payments": "stripe"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "full"},
        }
    if account_type == "express":
        return {
            **base,
            "fees": {"payer": "application_express"},
            "losses": {"payments": "application"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express"},
        }
    return {
        **base,
        "fees": {"payer": "application_custom"},
        "losses": {"payments": "application"},
        "requirement_collection": "application",
        "stripe_dashboard": {"type": "none"},
    }


def type_for_controller(ctrl: Obj) -> str:
    dash = ctrl["stripe_dashboard"]["type"]
    payer = ctrl["fees"]["payer"]
    losses = ctrl["losses"]["payments"]
    coll = ctrl["requirement_collection"]
    if dash == "full" and payer == "account" and losses == "stripe" and coll == "stripe":
        return "standard"
    if dash == "express" and payer in ("application", "application_express") and losses == "application":
        return "express"
    if dash == "none" and coll == "application" and losses == "application":
        return "custom"
    return "none"


def account(
    account_id: str,
    *,
    account_type: str,
    controller: Obj,
    country: str,
    email: str | None,
    business_type: str | None,
    default_currency: str,
    capabilities: dict[str, str],
    metadata: dict[str, str],
    business_profile: Obj | None = None,
) -> Obj:
    bp: Obj = {
        "annual_revenue": None,
        "estimated_worker_count": None,
        "mcc": None,
        "minority_owned_business_designation": None,
        "monthly_estimated_revenue": {"amount": 0, "currency": default_currency},
        "name": None,
        "product_description": None,
        "specified_commercial_transactions_act_url": None,
        "support_address": None,
        "support_email": None,
        "support_phone": None,
        "support_url": None,
        "url": None,
    }
    bp.update(business_profile or {})
    return {
        "id": account_id,
        "object": "account",
        "business_profile": bp,
        "business_type": business_type,
        "capabilities": dict(capabilities),
        "charges_enabled": False,
        "controller": controller,
        "country": country,
        "created": now(),
        "default_currency": default_currency,
        "details_submitted": False,
        "email": email,
        "external_accounts": lst(f"/v1/accounts/{account_id}/external_accounts"),
        "future_requirements": requirements(),
        "groups": None,
        "metadata": metadata,
        "payouts_enabled": False,
        "requirements": requirements(
            ONBOARDING_FIELDS if capabilities else [], "requirements.past_due" if capabilities else None
        ),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                "statement_descriptor_prefix": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": None, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
            "payments": {
                "statement_descriptor": None,
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
            },
            "payouts": {
                "debit_negative_balances": True,
                "schedule": {"delay_days": 2, "interval": "daily"},
                "statement_descriptor": None,
            },
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": account_type,
    }


def capability(account_id: str, name: str, status: str, requested_at: int, due: list[str]) -> Obj:
    return {
        "id": name,
        "object": "capability",
        "account": account_id,
        "future_requirements": requirements(),
        "requested": True,
        "requested_at": requested_at,
        "requirements": requirements(due, "requirements.past_due" if due else None),
        "status": status,
    }


def application() -> Obj:
    return {"id": APPLICATION_ID, "object": "application", "name": "Sandbox Platform"}


def account_link(url: str, expires_at: int) -> Obj:
    return {"object": "account_link", "created": now(), "expires_at": expires_at, "url": url}


def login_link(url: str) -> Obj:
    return {"object": "login_link", "created": now(), "url": url}


def product(name: str, description: str | None, metadata: dict[str, str]) -> Obj:
    ts = now()
    return {
        "id": new_id("prod_", 14),
        "object": "product",
        "active": True,
        "created": ts,
        "default_price": None,
        "description": description,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": metadata,
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": ts,
        "url": None,
    }


def price(product_id: str, currency: str, unit_amount: int, metadata: dict[str, str]) -> Obj:
    return {
        "id": new_id("price_"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": metadata,
        "nickname": None,
        "product": product_id,
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def coupon(
    coupon_id: str,
    *,
    percent_off: float | None,
    amount_off: int | None,
    currency: str | None,
    duration: str,
    duration_in_months: int | None,
    max_redemptions: int | None,
    redeem_by: int | None,
    name: str | None,
    metadata: dict[str, str],
) -> Obj:
    return {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount_off,
        "applies_to": None,
        "created": now(),
        "currency": currency,
        "currency_options": None,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "livemode": False,
        "max_redemptions": max_redemptions,
        "metadata": metadata,
        "name": name,
        "percent_off": percent_off,
        "redeem_by": redeem_by,
        "times_redeemed": 0,
        "valid": True,
    }


def promotion_code(
    code: str,
    coupon_obj: Obj,
    *,
    active: bool,
    expires_at: int | None,
    max_redemptions: int | None,
    metadata: dict[str, str],
    minimum_amount: int | None,
    minimum_amount_currency: str | None,
    first_time_transaction: bool,
) -> Obj:
    return {
        "id": new_id("promo_"),
        "object": "promotion_code",
        "active": active,
        "code": code,
        "created": now(),
        "customer": None,
        "customer_account": None,
        "expires_at": expires_at,
        "livemode": False,
        "max_redemptions": max_redemptions,
        "metadata": metadata,
        "promotion": {"coupon": coupon_obj["id"], "type": "coupon"},
        "restrictions": {
            "first_time_transaction": first_time_transaction,
            "minimum_amount": minimum_amount,
            "minimum_amount_currency": minimum_amount_currency,
        },
        "times_redeemed": 0,
    }


def line_item(price_obj: Obj, product_obj: Obj, quantity: int, discount_amount: int, discounts: list[Obj]) -> Obj:
    subtotal = price_obj["unit_amount"] * quantity
    return {
        "id": new_id("li_"),
        "object": "item",
        "adjustable_quantity": None,
        "amount_discount": discount_amount,
        "amount_subtotal": subtotal,
        "amount_tax": 0,
        "amount_total": subtotal - discount_amount,
        "currency": price_obj["currency"],
        "description": product_obj["name"],
        "discounts": discounts,
        "metadata": {},
        "price": price_obj,
        "quantity": quantity,
        "taxes": [],
    }


def checkout_session(
    session_id: str,
    *,
    url: str,
    currency: str,
    amount_subtotal: int,
    amount_discount: int,
    success_url: str | None,
    cancel_url: str | None,
    client_reference_id: str | None,
    customer_email: str | None,
    metadata: dict[str, str],
    expires_at: int,
    allowed_payment_method_types: list[str] | None,
    payment_method_types: list[str],
    allow_promotion_codes: bool | None,
    discounts: list[Obj],
    locale: str | None,
    submit_type: str | None,
) -> Obj:
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": allow_promotion_codes,
        "allowed_payment_method_types": allowed_payment_method_types,
        "amount_subtotal": amount_subtotal,
        "amount_total": amount_subtotal - amount_discount,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "branding_settings": None,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": now(),
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_account": None,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": customer_email,
        "discounts": discounts,
        "excluded_payment_method_types": None,
        "expires_at": expires_at,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": False,
        "locale": locale,
        "managed_payments": None,
        "metadata": metadata,
        "mode": "payment",
        "name_collection": None,
        "optional_items": None,
        "origin_context": None,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": payment_method_types,
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "presentment_details": None,
        "recovered_from": None,
        "redirect_on_completion": None,
        "return_url": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": submit_type,
        "subscription": None,
        "success_url": success_url,
        "tax_id_collection": {"enabled": False, "required": "never"},
        "total_details": {"amount_discount": amount_discount, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": url,
        "wallet_options": None,
    }


def customer_details(email: str | None, name: str | None) -> Obj:
    return {
        "address": {
            "city": None,
            "country": "US",
            "line1": None,
            "line2": None,
            "postal_code": "94103",
            "state": None,
        },
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": name,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def payment_intent(
    *,
    amount: int,
    currency: str,
    payment_method_types: list[str],
    application_fee_amount: int | None,
    on_behalf_of: str | None,
    transfer_data: Obj | None,
    transfer_group: str | None,
    metadata: dict[str, str],
    description: str | None,
    receipt_email: str | None,
    application: str | None,
) -> Obj:
    pi_id = new_id("pi_")
    return {
        "id": pi_id,
        "object": "payment_intent",
        "allowed_payment_method_types": None,
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": application,
        "application_fee_amount": application_fee_amount,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": now(),
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "hooks": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": on_behalf_of,
        "payment_details": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": payment_method_types,
        "payment_record": None,
        "presentment_details": None,
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": transfer_data,
        "transfer_group": transfer_group,
    }


def card_details(number: str, amount: int) -> Obj:
    return {
        "amount_authorized": amount,
        "authorization_code": None,
        "brand": "visa",
        "capture_before": None,
        "checks": {"address_line1_check": None, "address_postal_code_check": "pass", "cvc_check": "pass"},
        "country": "US",
        "exp_month": 12,
        "exp_year": 2034,
        "extended_authorization": {"status": "disabled"},
        "fingerprint": "sbx" + number[-8:],
        "funding": "credit",
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "last4": number[-4:],
        "mandate": None,
        "multicapture": {"status": "unavailable"},
        "network": "visa",
        "network_token": {"used": False},
        "network_transaction_id": "1234567890",
        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
        "regulated_status": "unregulated",
        "three_d_secure": None,
        "wallet": None,
    }


def charge(
    *,
    charge_id: str | None = None,
    amount: int,
    currency: str,
    payment_intent: str | None,
    payment_method: str | None,
    payment_method_details: Obj | None,
    status: str,
    billing_email: str | None,
    application_fee_amount: int | None,
    on_behalf_of: str | None,
    transfer_data: Obj | None,
    transfer_group: str | None,
    metadata: dict[str, str],
    description: str | None,
    application: str | None,
    outcome: Obj | None,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> Obj:
    ch_id = charge_id or new_id("ch_")
    succeeded = status == "succeeded"
    return {
        "id": ch_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": application,
        "application_fee": None,
        "application_fee_amount": application_fee_amount,
        "balance_transaction": new_id("txn_") if succeeded else None,
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": billing_email,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "SANDBOX",
        "captured": succeeded,
        "created": now(),
        "currency": currency,
        "customer": None,
        "description": description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "livemode": False,
        "metadata": metadata,
        "on_behalf_of": on_behalf_of,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": payment_intent,
        "payment_method": payment_method,
        "payment_method_details": payment_method_details,
        "presentment_details": None,
        "radar_options": {},
        "receipt_email": billing_email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/sandbox/{ch_id}",
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer": None,
        "transfer_data": transfer_data,
        "transfer_group": transfer_group,
    }


def outcome(kind: str, decline_code: str | None = None) -> Obj:
    if kind == "authorized":
        return {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 32,
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
    return {
        "advice_code": "try_again_later" if decline_code == "insufficient_funds" else "do_not_try_again",
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "declined_by_network",
        "reason": decline_code,
        "risk_level": "normal",
        "risk_score": 40,
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }


def refund(
    *,
    amount: int,
    charge_obj: Obj,
    reason: str | None,
    metadata: dict[str, str],
    status: str,
) -> Obj:
    return {
        "id": new_id("re_"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn_"),
        "charge": charge_obj["id"],
        "created": now(),
        "currency": charge_obj["currency"],
        "customer": None,
        "customer_account": None,
        "description": None,
        "destination_details": {
            "card": {"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"},
            "type": "card",
        },
        "failure_balance_transaction": None,
        "failure_reason": None,
        "instructions_email": None,
        "metadata": metadata,
        "next_action": None,
        "payment_intent": charge_obj["payment_intent"],
        "payment_method": charge_obj["payment_method"],
        "pending_reason": None,
        "presentment_details": None,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }


def transfer(
    *,
    amount: int,
    currency: str,
    destination: str,
    source_transaction: str | None,
    transfer_group: str | None,
    metadata: dict[str, str],
    description: str | None,
) -> Obj:
    tr_id = new_id("tr_")
    return {
        "id": tr_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": new_id("txn_"),
        "created": now(),
        "currency": currency,
        "description": description,
        "destination": destination,
        "destination_payment": None,
        "livemode": False,
        "metadata": metadata,
        "reversals": lst(f"/v1/transfers/{tr_id}/reversals"),
        "reversed": False,
        "source_transaction": source_transaction,
        "source_type": "card",
        "transfer_group": transfer_group,
    }


def transfer_reversal(amount: int, transfer_obj: Obj, metadata: dict[str, str], source_refund: str | None) -> Obj:
    return {
        "id": new_id("trr_"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": new_id("txn_"),
        "created": now(),
        "currency": transfer_obj["currency"],
        "destination_payment_refund": new_id("pyr_"),
        "metadata": metadata,
        "source_refund": source_refund,
        "transfer": transfer_obj["id"],
    }


def application_fee(*, account_id: str, amount: int, currency: str, charge_id: str, originating: str | None) -> Obj:
    fee_id = new_id("fee_")
    return {
        "id": fee_id,
        "object": "application_fee",
        "account": account_id,
        "amount": amount,
        "amount_refunded": 0,
        "application": APPLICATION_ID,
        "balance_transaction": new_id("txn_"),
        "charge": charge_id,
        "created": now(),
        "currency": currency,
        "fee_source": {"charge": charge_id, "type": "charge"},
        "livemode": False,
        "originating_transaction": originating,
        "refunded": False,
        "refunds": lst(f"/v1/application_fees/{fee_id}/refunds"),
    }


def fee_refund(amount: int, fee_obj: Obj, metadata: dict[str, str]) -> Obj:
    return {
        "id": new_id("fr_"),
        "object": "fee_refund",
        "amount": amount,
        "balance_transaction": new_id("txn_"),
        "created": now(),
        "currency": fee_obj["currency"],
        "fee": fee_obj["id"],
        "metadata": metadata,
    }


EVIDENCE_FIELDS = [
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
]


def dispute(charge_obj: Obj, amount: int, reason: str) -> Obj:
    evidence: dict[str, Any] = dict.fromkeys(EVIDENCE_FIELDS)
    evidence["enhanced_evidence"] = {}
    return {
        "id": new_id("dp_"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge_obj["id"],
        "created": now(),
        "currency": charge_obj["currency"],
        "enhanced_eligibility_types": [],
        "evidence": evidence,
        "intended_submission_method": None,
        "evidence_details": {
            "due_by": now() + 7 * 86400,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
            "submission_method": None,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "network_reason_code": "10.4",
        "payment_intent": charge_obj["payment_intent"],
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
        "reason": reason,
        "status": "needs_response",
    }


def payout(amount: int, currency: str, metadata: dict[str, str], automatic: bool, description: str | None) -> Obj:
    return {
        "id": new_id("po_"),
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": now() + 2 * 86400,
        "automatic": automatic,
        "balance_transaction": new_id("txn_"),
        "created": now(),
        "currency": currency,
        "description": description,
        "destination": new_id("ba_"),
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": metadata,
        "method": "standard",
        "original_payout": None,
        "payout_method": None,
        "reconciliation_status": "not_applicable",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": "pending",
        "trace_id": {"status": "pending", "value": None},
        "type": "bank_account",
    }


def balance(buckets: dict[str, dict[str, int]], is_platform: bool, default_currency: str) -> Obj:
    currencies = sorted(buckets) or [default_currency]

    def rows(name: str) -> list[Obj]:
        return [
            {
                "amount": buckets.get(c, {}).get(name, 0),
                "currency": c,
                "source_types": {"card": buckets.get(c, {}).get(name, 0)},
            }
            for c in currencies
        ]

    body: Obj = {
        "object": "balance",
        "available": rows("available"),
        "livemode": False,
        "pending": rows("pending"),
        "refund_and_dispute_prefunding": {
            "available": [{"amount": 0, "currency": c} for c in currencies],
            "pending": [{"amount": 0, "currency": c} for c in currencies],
        },
    }
    if is_platform:
        body["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies]
    body["instant_available"] = [
        {"amount": 0, "currency": c, "net_available": [], "source_types": {"card": 0}} for c in currencies
    ]
    body["issuing"] = {"available": [{"amount": 0, "currency": c} for c in currencies]}
    return body


def webhook_endpoint(
    url: str,
    enabled_events: list[str],
    api_version: str | None,
    description: str | None,
    metadata: dict[str, str],
    connect: bool,
) -> Obj:
    return {
        "id": new_id("we_"),
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": APPLICATION_ID if connect else None,
        "created": now(),
        "description": description,
        "enabled_events": enabled_events,
        "livemode": False,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
    }


def event(
    event_type: str,
    obj: Obj,
    previous: Obj | None,
    account_id: str | None,
    request_id: str | None,
    idempotency_key: str | None,
) -> Obj:
    data: Obj = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    body: Obj = {"id": new_id("evt_"), "object": "event"}
    if account_id is not None:
        body["account"] = account_id
    body.update(
        {
            "api_version": API_VERSION,
            "created": now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        }
    )
    return body
