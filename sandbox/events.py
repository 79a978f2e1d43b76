"""Event creation and routing: which endpoints (platform vs Connect, enabled_events) get each event."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sandbox import objects
from sandbox.store import Obj, Store, new_id, now, snapshot

if TYPE_CHECKING:
    from sandbox.delivery import Deliverer


def endpoint_matches(store: Store, endpoint: Obj, owner: str, event_type: str) -> bool:
    """Whether `endpoint` wants an event of `owner` now: enabled, platform vs Connect, `enabled_events`, and
    (for a connected account) the platform still has access, except for the deauthorization itself."""
    if endpoint["status"] != "enabled":
        return False
    connect = bool(store.hidden(endpoint["id"]).get("connect"))
    if connect == (owner == store.platform_id):
        return False
    rec = store.record(owner)
    if rec is not None and rec["x"].get("deauthorized") and event_type != "account.application.deauthorized":
        return False
    enabled: list[str] = endpoint["enabled_events"]
    return "*" in enabled or event_type in enabled


def create_event(
    store: Store,
    deliverer: Deliverer | None,
    owner: str,
    event_type: str,
    obj: Obj,
    previous: Obj | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> Obj:
    """Record an event on `owner` carrying a snapshot of `obj`, and queue its deliveries."""
    account_id = None if owner == store.platform_id else owner
    evt = objects.event(event_type, snapshot(obj), previous, account_id, request_id, idempotency_key)
    targets = [
        ep for ep in store.all("webhook_endpoint", store.platform_id) if endpoint_matches(store, ep, owner, event_type)
    ]
    evt["pending_webhooks"] = len(targets)
    store.add("event", owner, evt, {"delivered_to": []})
    for ep in targets:
        payload = dict(evt)
        payload["api_version"] = ep["api_version"] or objects.API_VERSION
        store.delivery_seq += 1
        delivery: Obj = {
            "id": new_id("whdel_"),
            "seq": store.delivery_seq,
            "event": evt["id"],
            "type": event_type,
            "account": account_id,
            "endpoint": ep["id"],
            "url": ep["url"],  # the latest attempt's; each attempt posts to the endpoint's url at that time
            "payload": json.dumps(payload, indent=2),
            "status": "pending",
            "fault": None,
            "attempts": [],
            "created": now(),
        }
        store.deliveries[delivery["id"]] = delivery
        if deliverer is not None:
            deliverer.enqueue(delivery["id"])
    return evt


def mark_delivered(store: Store, event_id: str, endpoint_id: str) -> None:
    rec = store.record(event_id)
    if rec is None:
        return
    delivered: list[str] = rec["x"].setdefault("delivered_to", [])
    if endpoint_id in delivered:
        return
    delivered.append(endpoint_id)
    rec["obj"]["pending_webhooks"] = max(0, rec["obj"]["pending_webhooks"] - 1)
