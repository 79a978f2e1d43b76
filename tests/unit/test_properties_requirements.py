"""Properties of when a sync that kept the account's status tells the seller about its requirements.

`before` is the stored `requirements` column (a dict, or the JSON text when read without load_json);
`after` is `AccountSnapshot.requirements()` of the account just read.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from marketplace.sellers.sync import _due, _requirements_to_announce

PROPERTY = settings(max_examples=100, deadline=None, database=None)

ANNOUNCING = ("restricted", "active")

# Requirement names (a few that sort close to each other); only set membership and order matter.
fields = st.sampled_from(
    [
        "external_account",
        "business_profile.url",
        "business_profile.mcc",
        "tos_acceptance.date",
        "tos_acceptance.ip",
        "individual.verification.document",
        "individual.id_number",
        "individual",
        "company.tax_id",
        "a",
        "A",
        "a.b",
    ]
)
field_sets = st.frozensets(fields, max_size=6)
deadlines = st.none() | st.integers(min_value=1_500_000_000, max_value=2_500_000_000)
other_statuses = st.one_of(
    st.sampled_from(["onboarding", "disabled", "disconnected", "pending", "Active", "RESTRICTED", ""]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzAR ", max_size=12),
).filter(lambda s: s not in ANNOUNCING)


@st.composite
def laid_out(draw: st.DrawFn, due: frozenset[str], deadline: int | None) -> dict[str, Any]:
    """Requirements whose due set is `due`, split over currently_due/past_due in any order (a field may
    be in both), with other requirement lists varying freely; empty lists and no deadline in every form.
    """
    fields_in_order = draw(st.permutations(sorted(due)))
    places = draw(st.lists(st.sampled_from(["currently", "past", "both"]), min_size=len(due), max_size=len(due)))
    currently = [f for f, where in zip(fields_in_order, places, strict=True) if where != "past"]
    past = [f for f, where in zip(fields_in_order, places, strict=True) if where != "currently"]
    if draw(st.booleans()):  # the two lists need not list their common fields in the same order
        past.reverse()
    requirements: dict[str, Any] = {"eventually_due": draw(st.lists(fields, max_size=3))}
    # An empty list may also come as null or not at all; no deadline as null or not at all.
    for key, values in (("currently_due", currently), ("past_due", past)):
        empty_as = draw(st.sampled_from(["list", "null", "absent"])) if not values else "list"
        if empty_as == "list":
            requirements[key] = values
        elif empty_as == "null":
            requirements[key] = None
    if deadline is not None or draw(st.booleans()):
        requirements["current_deadline"] = deadline
    return requirements


@st.composite
def requirements(draw: st.DrawFn) -> dict[str, Any]:
    return draw(laid_out(draw(field_sets), draw(deadlines)))


def stored(data: st.DataObject, value: dict[str, Any] | None) -> Any:
    """How the previous value may come from the row: the dict (or None), or its JSON text."""
    return json.dumps(value) if data.draw(st.booleans(), label="before as JSON text") else value


# ---- _due ------------------------------------------------------------------------------------------------


def test_no_requirements_are_nothing_due() -> None:
    assert _due(None) == ([], None)
    assert _due({}) == ([], None)


@PROPERTY
@given(due=field_sets, deadline=deadlines, data=st.data())
def test_due_is_the_sorted_union_of_current_and_past_due_and_the_deadline(
    due: frozenset[str], deadline: int | None, data: st.DataObject
) -> None:
    assert _due(data.draw(laid_out(due, deadline))) == (sorted(due), deadline)


# ---- _requirements_to_announce ---------------------------------------------------------------------------


@PROPERTY
@given(status=other_statuses, before=st.none() | requirements(), after=requirements(), as_json=st.booleans())
def test_only_restricted_or_active_accounts_announce(
    status: str, before: dict[str, Any] | None, after: dict[str, Any], as_json: bool
) -> None:
    assert not _requirements_to_announce(status, json.dumps(before) if as_json else before, after)


@PROPERTY
@given(status=st.sampled_from(ANNOUNCING), before=st.none() | requirements(), data=st.data())
def test_nothing_due_and_no_deadline_never_announces(
    status: str, before: dict[str, Any] | None, data: st.DataObject
) -> None:
    after = data.draw(laid_out(frozenset(), None), label="after")
    assert not _requirements_to_announce(status, stored(data, before), after)


@PROPERTY
@given(status=st.sampled_from(ANNOUNCING), due=field_sets, deadline=deadlines, data=st.data())
def test_the_same_due_set_and_deadline_never_announce_however_laid_out(
    status: str, due: frozenset[str], deadline: int | None, data: st.DataObject
) -> None:
    before = data.draw(laid_out(due, deadline), label="before")
    after = data.draw(laid_out(due, deadline), label="after")
    assert not _requirements_to_announce(status, stored(data, before), after)


@PROPERTY
@given(
    status=st.sampled_from([*ANNOUNCING, "onboarding", "disabled"]),
    before=st.none() | requirements(),
    after=requirements(),
)
def test_a_previous_value_as_json_text_behaves_like_the_dict(
    status: str, before: dict[str, Any] | None, after: dict[str, Any]
) -> None:
    expected = _requirements_to_announce(status, before, after)
    assert _requirements_to_announce(status, json.dumps(before), after) == expected
    assert _requirements_to_announce(status, json.dumps(before, indent=2, sort_keys=True), after) == expected


@PROPERTY
@given(status=st.sampled_from(ANNOUNCING), due=field_sets, deadline=deadlines, data=st.data())
def test_a_newly_due_field_announces(
    status: str, due: frozenset[str], deadline: int | None, data: st.DataObject
) -> None:
    new = data.draw(fields.filter(lambda f: f not in due), label="new field")
    before = data.draw(laid_out(due, deadline), label="before")
    after = data.draw(laid_out(due | {new}, deadline), label="after")
    assert _requirements_to_announce(status, stored(data, before), after)


@PROPERTY
@given(
    status=st.sampled_from(ANNOUNCING),
    due=field_sets,
    old=deadlines,
    new=st.integers(min_value=1_500_000_000, max_value=2_500_000_000),
    data=st.data(),
)
def test_a_new_deadline_announces(
    status: str, due: frozenset[str], old: int | None, new: int, data: st.DataObject
) -> None:
    assume(new != old)
    before = data.draw(laid_out(due, old), label="before")
    after = data.draw(laid_out(due, new), label="after")
    assert _requirements_to_announce(status, stored(data, before), after)


@PROPERTY
@given(status=st.sampled_from(ANNOUNCING), due=field_sets, deadline=deadlines, data=st.data())
def test_something_due_after_no_previous_value_announces(
    status: str, due: frozenset[str], deadline: int | None, data: st.DataObject
) -> None:
    assume(due or deadline is not None)
    after = data.draw(laid_out(due, deadline), label="after")
    assert _requirements_to_announce(status, stored(data, None), after)
