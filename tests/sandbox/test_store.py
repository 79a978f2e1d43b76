"""The sandbox's store lists a kind newest first, scoped by owner, through its per-kind index."""

from __future__ import annotations

import stat
from pathlib import Path

from sandbox.store import Store


def test_listing_a_kind_is_newest_first_by_owner_and_survives_remove_readd_and_a_snapshot() -> None:
    store = Store()
    for object_id, owner in [("a", "acct_1"), ("b", "acct_2"), ("c", "acct_1"), ("d", "acct_1")]:
        store.add("thing", owner, {"id": object_id})
    store.add("other", "acct_1", {"id": "x"})
    assert [o["id"] for o in store.all("thing")] == ["d", "c", "b", "a"]
    assert [o["id"] for o in store.all("thing", "acct_1")] == ["d", "c", "a"]
    store.remove("c")
    store.add("thing", "acct_1", {"id": "a", "again": True})  # re-added: now the newest
    assert [o["id"] for o in store.all("thing", "acct_1")] == ["a", "d"]
    store.add("other", "acct_2", {"id": "b"})  # an id that changes kind leaves the first kind's list
    assert [o["id"] for o in store.all("thing")] == ["a", "d"]
    assert [o["id"] for o in store.all("other")] == ["b", "x"]
    loaded = Store()
    loaded.load(store.dump())
    assert [o["id"] for o in loaded.all("thing")] == ["a", "d"]
    assert [o["id"] for o in loaded.all("other", "acct_1")] == ["x"]
    assert loaded.all("missing") == []


def test_the_saved_state_is_readable_by_its_owner_only_even_over_an_older_world_readable_file(
    tmp_path: Path,
) -> None:
    """`.data/sandbox.json` holds the webhook endpoints' signing secrets (`make run` saves it there)."""
    path = tmp_path / "sandbox.json"
    path.write_text("{}")
    path.chmod(0o644)  # as earlier versions wrote it
    (tmp_path / "sandbox.json.tmp").write_text("")
    (tmp_path / "sandbox.json.tmp").chmod(0o644)  # a crash's leftover
    store = Store()
    store.add("webhook_endpoint", "platform", {"id": "we_1", "secret": "whsec_x"})
    store.save_file(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Store()
    assert loaded.load_file(str(path))
    assert loaded.all("webhook_endpoint")[0]["secret"] == "whsec_x"
