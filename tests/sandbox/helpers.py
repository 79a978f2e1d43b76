"""Shared flows for the sandbox tests: onboarded accounts, sessions, webhook endpoints."""

from __future__ import annotations

from typing import Any

import stripe

from sandbox.control import SandboxControl


def error_of(exc: stripe.StripeError) -> dict[str, Any]:
    """The `error` object of an SDK exception's JSON body."""
    body = exc.json_body
    assert isinstance(body, dict)
    err = body["error"]
    assert isinstance(err, dict)
    return err


async def onboarded_account(client: stripe.StripeClient, control: SandboxControl, dashboard: str = "express") -> str:
    acct = await client.v1.accounts.create_async(
        params={
            "controller": {
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
                "stripe_dashboard": {"type": dashboard},
            }
            if dashboard != "full"
            else {"stripe_dashboard": {"type": "full"}},
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "email": "seller@example.com",
            "country": "US",
        }
    )
    await control.complete_onboarding(acct.id)
    return acct.id


def session_params(amount: int = 2000, quantity: int = 1, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "usd", "unit_amount": amount, "product_data": {"name": "Poster"}},
                "quantity": quantity,
            }
        ],
        "success_url": "https://shop.example/ok?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        "metadata": {"order_id": "ord_1"},
        "client_reference_id": "ord_1",
    }
    params.update(extra)
    return params


async def destination_session(
    client: stripe.StripeClient, dest: str, amount: int = 2000, fee: int = 200, **extra: Any
) -> Any:
    return await client.v1.checkout.sessions.create_async(
        params=session_params(
            amount,
            payment_intent_data={
                "application_fee_amount": fee,
                "transfer_data": {"destination": dest},
                "metadata": {"order_id": "ord_1"},
            },
            **extra,
        )
    )


async def direct_session(
    client: stripe.StripeClient, acct: str, amount: int = 2000, fee: int = 150, **extra: Any
) -> Any:
    return await client.v1.checkout.sessions.create_async(
        params=session_params(amount, payment_intent_data={"application_fee_amount": fee}, **extra),
        options={"stripe_account": acct},
    )


async def endpoints(client: stripe.StripeClient, base: str, events: Any = None) -> tuple[Any, Any]:
    platform = await client.v1.webhook_endpoints.create_async(
        params={"url": f"{base}/platform", "enabled_events": events or ["*"], "api_version": "2026-10-28.endive"}
    )
    connect = await client.v1.webhook_endpoints.create_async(
        params={
            "url": f"{base}/connect",
            "enabled_events": events or ["*"],
            "connect": True,
            "api_version": "2026-10-28.endive",
        }
    )
    return platform, connect
