"""`SandboxControl`: a typed async client (httpx) for the `/_sandbox` control API, with polling helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx

Json = dict[str, Any]


def _pick(data: Json, key: str) -> Json:
    value: Json = data[key]
    return value


def _pick_list(data: Json, key: str) -> list[Json]:
    value: list[Json] = data[key]
    return value


class SandboxControlError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"sandbox control error {status}: {body}")
        self.status = status
        self.body = body


class SandboxControl:
    """Drive the sandbox from tests: complete payments, change accounts, inject faults, inspect deliveries."""

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=30.0)
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> SandboxControl:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self, method: str, path: str, body: Json | None = None, params: dict[str, str] | None = None
    ) -> Json:
        resp = await self._client.request(method, f"{self.base_url}/_sandbox{path}", json=body or {}, params=params)
        data = resp.json()
        if resp.status_code >= 400:
            raise SandboxControlError(resp.status_code, data)
        result: Json = data
        return result

    # ---- general -------------------------------------------------------------------------------
    async def health(self) -> Json:
        return await self._call("GET", "/health")

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    # ---- checkout ------------------------------------------------------------------------------
    async def complete_checkout(
        self,
        session_id: str,
        card: str = "4242424242424242",
        stripe_account: str | None = None,
        email: str | None = None,
    ) -> Json:
        """Pay with a test card; returns {"outcome": "succeeded"|"declined"|"requires_action", "session": {...}}."""
        return await self._call(
            "POST",
            f"/checkout/sessions/{session_id}/complete",
            {"card": card, "stripe_account": stripe_account, "email": email},
        )

    async def three_d_secure(self, session_id: str, approve: bool = True, stripe_account: str | None = None) -> Json:
        return await self._call(
            "POST",
            f"/checkout/sessions/{session_id}/three_d_secure",
            {"approve": approve, "stripe_account": stripe_account},
        )

    async def pay_with_bank_debit(self, session_id: str, stripe_account: str | None = None) -> Json:
        return await self._call(
            "POST", f"/checkout/sessions/{session_id}/bank_debit", {"stripe_account": stripe_account}
        )

    async def settle_bank_debit(self, session_id: str, stripe_account: str | None = None) -> Json:
        return await self._call("POST", f"/checkout/sessions/{session_id}/settle", {"stripe_account": stripe_account})

    async def fail_bank_debit(self, session_id: str, stripe_account: str | None = None) -> Json:
        return await self._call(
            "POST", f"/checkout/sessions/{session_id}/fail_debit", {"stripe_account": stripe_account}
        )

    async def expire_session(self, session_id: str, stripe_account: str | None = None) -> Json:
        return await self._call("POST", f"/checkout/sessions/{session_id}/expire", {"stripe_account": stripe_account})

    # ---- accounts ------------------------------------------------------------------------------
    async def complete_onboarding(self, account_id: str) -> Json:
        return _pick(await self._call("POST", f"/accounts/{account_id}/complete_onboarding"), "account")

    async def restrict_onboarding(
        self,
        account_id: str,
        currently_due: list[str] | None = None,
        details_submitted: bool | None = None,
        disabled_reason: str = "requirements.past_due",
    ) -> Json:
        body = {
            "currently_due": currently_due,
            "details_submitted": details_submitted,
            "disabled_reason": disabled_reason,
        }
        return _pick(await self._call("POST", f"/accounts/{account_id}/restrict", body), "account")

    async def deauthorize(self, account_id: str) -> None:
        await self._call("POST", f"/accounts/{account_id}/deauthorize")

    async def expire_account_link(self, url: str) -> None:
        """Expire the account link at `url` (its hosted `/setup/<token>` URL) as if its minutes had passed."""
        token = url.rstrip("/").rsplit("/", 1)[-1]
        await self._call("POST", f"/account_links/{token}/expire")

    # ---- disputes, payouts, refunds ------------------------------------------------------------
    async def open_dispute(self, charge_id: str, amount: int | None = None, reason: str = "fraudulent") -> Json:
        return _pick(
            await self._call("POST", f"/charges/{charge_id}/dispute", {"amount": amount, "reason": reason}), "dispute"
        )

    async def update_dispute(
        self, dispute_id: str, status: str = "under_review", evidence: dict[str, str] | None = None
    ) -> Json:
        body = {"status": status, "evidence": evidence}
        return _pick(await self._call("POST", f"/disputes/{dispute_id}/update", body), "dispute")

    async def close_dispute(self, dispute_id: str, status: Literal["won", "lost", "warning_closed"] = "lost") -> Json:
        return _pick(await self._call("POST", f"/disputes/{dispute_id}/close", {"status": status}), "dispute")

    async def create_payout(
        self, account_id: str | None, amount: int, currency: str = "usd", check_balance: bool = False
    ) -> Json:
        """Create a pending automatic payout on `account_id` (None = platform)."""
        body = {"account": account_id, "amount": amount, "currency": currency, "check_balance": check_balance}
        return _pick(await self._call("POST", "/payouts", body), "payout")

    async def pay_payout(self, payout_id: str) -> Json:
        return _pick(await self._call("POST", f"/payouts/{payout_id}/pay"), "payout")

    async def fail_payout(self, payout_id: str, failure_code: str = "account_closed") -> Json:
        return _pick(await self._call("POST", f"/payouts/{payout_id}/fail", {"failure_code": failure_code}), "payout")

    async def fail_refund(self, refund_id: str) -> Json:
        return _pick(await self._call("POST", f"/refunds/{refund_id}/fail"), "refund")

    async def roll_webhook_secret(self, endpoint_id: str, expires_in: int = 86400) -> str:
        """Add a new signing secret; the old ones stay active for `expires_in` seconds (0 = now)."""
        return str(
            (await self._call("POST", f"/webhook_endpoints/{endpoint_id}/roll_secret", {"expires_in": expires_in}))[
                "secret"
            ]
        )

    # ---- faults --------------------------------------------------------------------------------
    async def fail_next(
        self,
        n: int = 1,
        status: int | Literal["timeout"] = 500,
        retry_after: int | None = None,
        hang: float = 5.0,
        should_retry: bool | None = None,
    ) -> Json:
        """The next `n` /v1 requests fail before reaching the API (nothing is recorded for idempotency)."""
        body = {"count": n, "status": status, "retry_after": retry_after, "hang": hang, "should_retry": should_retry}
        return await self._call("POST", "/faults/api", body)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults/api")
        await self.set_latency(0)
        await self.set_delivery_faults(duplicate=0, delay=0.0, reorder=0, drop=0)

    async def set_latency(self, ms: float, *, response_ms: float = 0) -> None:
        """Delay every /v1 request by `ms` before it is handled and `response_ms` after (the answer is
        made, and kept for its idempotency key, but arrives late)."""
        await self._call("POST", "/latency", {"ms": ms, "response_ms": response_ms})

    async def release_answers(self) -> int:
        """Let every answer held back by `response_ms` arrive now (see `faults()["answers_held"]`)."""
        return int((await self._call("POST", "/latency/release"))["released"])

    async def set_delivery_faults(
        self,
        duplicate: int | None = None,
        delay: float | None = None,
        reorder: int | None = None,
        drop: int | None = None,
    ) -> Json:
        body = {
            k: v
            for k, v in {"duplicate": duplicate, "delay": delay, "reorder": reorder, "drop": drop}.items()
            if v is not None
        }
        return await self._call("POST", "/faults/deliveries", body)

    async def faults(self) -> Json:
        return await self._call("GET", "/faults")

    # ---- deliveries ----------------------------------------------------------------------------
    async def deliveries(
        self,
        event: str | None = None,
        endpoint: str | None = None,
        type: str | None = None,
        status: str | None = None,
        account: str | None = None,
    ) -> list[Json]:
        """Every delivery (one per event and endpoint, plus duplicates) with its recorded attempts."""
        query = {
            k: v
            for k, v in {
                "event": event,
                "endpoint": endpoint,
                "type": type,
                "status": status,
                "account": account,
            }.items()
            if v is not None
        }
        return _pick_list(await self._call("GET", "/deliveries", params=query), "data")

    async def attempts(self, delivery_id: str) -> list[Json]:
        for d in await self.deliveries():
            if d["id"] == delivery_id:
                return _pick_list(d, "attempts")
        raise KeyError(delivery_id)

    async def wait_for_deliveries(
        self,
        predicate: Callable[[list[Json]], bool] | None = None,
        timeout: float = 60.0,
        interval: float = 0.02,
        **filters: str,
    ) -> list[Json]:
        """Poll until no matching delivery is pending (or until `predicate(deliveries)` holds).

        The deadline only ends a wait for something that is not coming: generous, so that a loaded
        machine (deliveries settle in well under a second on an idle one) is never mistaken for it."""
        deadline = time.monotonic() + timeout
        items: list[Json] = []
        while time.monotonic() < deadline:
            items = await self.deliveries(**filters)
            done = predicate(items) if predicate is not None else all(d["status"] != "pending" for d in items)
            if done:
                return items
            await asyncio.sleep(interval)
        raise TimeoutError(f"deliveries not settled within {timeout}s: {[(d['type'], d['status']) for d in items]}")

    async def expire_due_sessions(self) -> int:
        return int((await self._call("POST", "/expire_due_sessions"))["expired"])
