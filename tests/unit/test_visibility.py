"""Visibility roots: which events wait for an ancestor that has not arrived."""

from __future__ import annotations

from events import bodies as b
from projections.state import rebuild
from projections.visibility import awaits_ancestor, can_see_item
from tests.builders import History


def test_a_checkin_before_its_milestone_awaits_it_then_shows() -> None:
    h = History()
    h.join("web", "alice")
    h.join("web", "carol")
    objective = h.objective(visibility="team")
    kr = h.key_result(objective)
    milestone = h.milestone(key_result=kr)
    checkin = h.checkin(milestone, percent=10)
    early = [e for e in h.events if e.id != milestone]
    state = rebuild(early)
    assert awaits_ancestor(state, checkin)
    assert not can_see_item(state, "carol", checkin)
    state = rebuild(h.events)
    assert not awaits_ancestor(state, checkin)
    assert can_see_item(state, "carol", checkin)


def test_complete_private_chains_do_not_await_anything() -> None:
    h = History()
    objective = h.objective()  # private
    kr = h.key_result(objective)
    checkin = h.checkin(kr, value=5)
    indicator = h.make(b.IndicatorDefined(title="Empathy", stages=("asks", "anticipates")))
    observation = h.make(b.ObservationRecorded(text="asked first", indicator=indicator.id))
    state = rebuild(h.events)
    assert not awaits_ancestor(state, checkin)
    assert not awaits_ancestor(state, observation.id)
    assert not can_see_item(state, "carol", checkin)


def test_a_missing_objective_two_links_up_is_awaited() -> None:
    h = History()
    objective = h.objective(visibility="team")
    kr = h.key_result(objective)
    milestone = h.milestone(key_result=kr)
    task = h.make(b.TaskAdded(milestone=milestone, title="t")).id
    state = rebuild([e for e in h.events if e.id != objective])
    assert awaits_ancestor(state, task)
    assert awaits_ancestor(state, "01a2099d-b301-7027-8e1a-b8ad68ca2fc1")  # unknown event
