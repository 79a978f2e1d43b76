"""In-memory state: records scoped by account, ids, list pagination, idempotency records, snapshots."""

from __future__ import annotations

import copy
import json
import os
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import bad_param, missing
from sandbox.forms import Params, get_int, get_str

Obj = dict[str, Any]
PLATFORM_ID = "acct_1SandboxPlatform"
_ALPHABET = string.ascii_letters + string.digits
SNAPSHOT_VERSION = 1


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


@dataclass
class IdempotencyEntry:
    fingerprint: str
    status: int
    body: Obj
    created: int


@dataclass
class Store:
    """Everything the sandbox knows. All mutation happens synchronously inside one request."""

    platform_id: str = PLATFORM_ID
    # id -> {"kind", "owner", "seq", "obj", "x"}; `x` holds fields Stripe does not show.
    records: dict[str, Obj] = field(default_factory=dict)
    seq: int = 0
    idempotency: dict[str, IdempotencyEntry] = field(default_factory=dict)
    # account -> currency -> {"available": n, "pending": n}
    balances: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    deliveries: dict[str, Obj] = field(default_factory=dict)
    delivery_seq: int = 0
    # kind -> ids in the order they were added (oldest first): listing a kind never walks every record
    # (each event looks up the webhook endpoints; a scan made the k-th checkout cost O(k)).
    by_kind: dict[str, dict[str, None]] = field(default_factory=dict, repr=False)

    # ---- records -------------------------------------------------------------------------------
    def add(self, kind: str, owner: str, obj: Obj, extra: Obj | None = None) -> Obj:
        self.seq += 1
        self._unindex(obj["id"])
        self.records[obj["id"]] = {"kind": kind, "owner": owner, "seq": self.seq, "obj": obj, "x": extra or {}}
        self.by_kind.setdefault(kind, {})[obj["id"]] = None
        return obj

    def _unindex(self, object_id: str) -> None:
        rec = self.records.get(object_id)
        if rec is not None:
            self.by_kind.get(rec["kind"], {}).pop(object_id, None)

    def record(self, object_id: str) -> Obj | None:
        return self.records.get(object_id)

    def get(self, kind: str, object_id: str, owner: str | None, noun: str | None = None, param: str = "id") -> Obj:
        """The live object, or Stripe's 404 when it does not exist in `owner`'s scope."""
        rec = self.records.get(object_id)
        if rec is None or rec["kind"] != kind or (owner is not None and rec["owner"] != owner):
            raise missing(noun or kind, object_id, param)
        obj: Obj = rec["obj"]
        return obj

    def hidden(self, object_id: str) -> Obj:
        x: Obj = self.records[object_id]["x"]
        return x

    def owner(self, object_id: str) -> str:
        owner: str = self.records[object_id]["owner"]
        return owner

    def find(self, object_id: str) -> Obj | None:
        rec = self.records.get(object_id)
        return None if rec is None else rec["obj"]

    def all(self, kind: str, owner: str | None = None) -> list[Obj]:
        """Objects of a kind, newest first (Stripe's list order)."""
        recs = (self.records[object_id] for object_id in reversed(self.by_kind.get(kind, {})))
        return [r["obj"] for r in recs if owner is None or r["owner"] == owner]

    def remove(self, object_id: str) -> None:
        self._unindex(object_id)
        self.records.pop(object_id, None)

    # ---- balances ------------------------------------------------------------------------------
    def credit(self, account: str, currency: str, amount: int, bucket: str = "available") -> None:
        cur = self.balances.setdefault(account, {}).setdefault(currency, {"available": 0, "pending": 0})
        cur[bucket] += amount

    def available(self, account: str, currency: str) -> int:
        return self.balances.get(account, {}).get(currency, {}).get("available", 0)

    # ---- idempotency ---------------------------------------------------------------------------
    @staticmethod
    def idem_key(account: str, key: str) -> str:
        return f"{account}\x00{key}"

    # ---- snapshot ------------------------------------------------------------------------------
    def dump(self) -> Obj:
        return {
            "version": SNAPSHOT_VERSION,
            "platform_id": self.platform_id,
            "records": self.records,
            "seq": self.seq,
            "idempotency": {
                k: {"fingerprint": e.fingerprint, "status": e.status, "body": e.body, "created": e.created}
                for k, e in self.idempotency.items()
            },
            "balances": self.balances,
            "deliveries": self.deliveries,
            "delivery_seq": self.delivery_seq,
        }

    def load(self, data: Obj) -> None:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sandbox snapshot version {data.get('version')!r}")
        self.platform_id = data["platform_id"]
        self.records = data["records"]
        self.by_kind = {}
        for object_id, rec in sorted(self.records.items(), key=lambda item: item[1]["seq"]):
            self.by_kind.setdefault(rec["kind"], {})[object_id] = None
        self.seq = data["seq"]
        self.idempotency = {k: IdempotencyEntry(**v) for k, v in data["idempotency"].items()}
        self.balances = data["balances"]
        self.deliveries = data["deliveries"]
        self.delivery_seq = data["delivery_seq"]

    def save_file(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp"
        # The state holds webhook signing secrets: readable by its owner only, from the first byte. An
        # older file's mode does not matter: the replacement carries the new one.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(tmp, 0o600)  # a stale tmp file keeps its mode through O_CREAT
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.dump(), fh)
        os.replace(tmp, path)

    def load_file(self, path: str) -> bool:
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as fh:
            self.load(json.load(fh))
        return True

    def reset(self) -> None:
        fresh = Store(platform_id=self.platform_id)
        self.__dict__.update(fresh.__dict__)


def snapshot(obj: Obj) -> Obj:
    """A deep copy: events carry the object as it was at that moment."""
    return copy.deepcopy(obj)


def paginate(items: list[Obj], params: Params, url: str) -> Obj:
    """Stripe list pagination over `items` (already newest first)."""
    limit = get_int(params, "limit")
    if limit is None:
        limit = 10
    if limit < 1 or limit > 100:
        raise bad_param("This value must be greater than or equal to 1 and less than or equal to 100.", "limit")
    after = get_str(params, "starting_after")
    before = get_str(params, "ending_before")
    if after and before:
        raise bad_param("You may only specify one of these parameters: ending_before, starting_after.", "ending_before")
    ids = [o["id"] for o in items]
    if after is not None:
        if after not in ids:
            raise missing(_noun(after), after, "starting_after")
        start = ids.index(after) + 1
        page = items[start : start + limit]
        has_more = start + limit < len(items)
    elif before is not None:
        if before not in ids:
            raise missing(_noun(before), before, "ending_before")
        end = ids.index(before)
        begin = max(0, end - limit)
        page = items[begin:end]
        has_more = begin > 0
    else:
        page = items[:limit]
        has_more = len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


_PREFIX_NOUNS = {
    "cs_": "checkout.session",
    "pi_": "payment_intent",
    "ch_": "charge",
    "py_": "charge",
    "re_": "refund",
    "pyr_": "refund",
    "tr_": "transfer",
    "trr_": "transfer_reversal",
    "fee_": "application_fee",
    "fr_": "fee_refund",
    "dp_": "dispute",
    "po_": "payout",
    "evt_": "event",
    "we_": "webhook_endpoint",
    "acct_": "account",
    "promo_": "promotion_code",
    "price_": "price",
    "prod_": "product",
}


def _noun(object_id: str) -> str:
    for prefix, noun in _PREFIX_NOUNS.items():
        if object_id.startswith(prefix):
            return noun
    return "object"


def created_filter(items: list[Obj], params: Params, key: str = "created") -> list[Obj]:
    """Apply `created=ts` or `created[gt|gte|lt|lte]=ts`."""
    raw = params.get(key)
    if raw is None or raw == "":
        return items
    if isinstance(raw, str):
        exact = get_int(params, key)
        return [o for o in items if o[key] == exact]
    if not isinstance(raw, dict):
        raise bad_param("Invalid hash", key)
    ops: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    result = items
    for op in raw:
        if op not in ops:
            raise bad_param(f"Received unknown parameter: {key}[{op}]", f"{key}[{op}]")
        bound = get_int(raw, op, f"{key}[{op}]")
        if bound is None:
            continue
        fn = ops[op]
        result = [o for o in result if fn(o[key], bound)]
    return result


def changes(before: Obj, after: Obj) -> Obj:
    """`previous_attributes`: old values of what changed; hashes recurse (added keys show null), arrays whole."""
    result: Obj = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and "object" not in old:
            result[key] = changes(old, new)
        else:
            result[key] = old
    return result
