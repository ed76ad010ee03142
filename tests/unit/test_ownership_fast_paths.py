"""The ownership rule is ``projections.ownership.judge``; two hot paths skip it when an event
plainly names stored events of its own (the fold's ``apply`` and the server's append). A
fast path may only ever say "accepted" where ``judge`` would: these properties hold each
one to ``judge`` on random histories, hostile writes included, in any arrival order."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Event
from milepost_testkit.strategies import History, histories
from projections.ownership import Referent, Refused, Waiting, judge
from projections.state import ProjectionState, apply
from server.store.append import _accepted_at_once

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(history=histories(), data=st.data())
def test_the_folds_fast_path_agrees_with_judge(history: History, data: st.DataObject) -> None:
    state = ProjectionState()
    for event in data.draw(st.permutations(history)):
        if event.id in state.events or event.id in state.pending or event.id in state.refused:
            continue
        verdict = judge(event, state.referent)
        apply(state, event)
        if verdict is None:
            assert event.id in state.events, f"{event.type} accepted by judge, not folded"
        elif isinstance(verdict, Refused):
            assert event.id in state.refused, f"{event.type}: judge refuses ({verdict.reason})"
        else:
            assert isinstance(verdict, Waiting)
            assert event.id in state.pending, f"{event.type}: judge waits for {verdict.missing}"


@SETTINGS
@given(history=histories(), data=st.data())
def test_the_appends_fast_path_agrees_with_judge(history: History, data: st.DataObject) -> None:
    known: dict[str, Referent] = {}
    for event in data.draw(st.permutations(history)):
        assert isinstance(event, Event)
        verdict = judge(event, known.get)
        if _accepted_at_once(event, known):
            assert verdict is None, f"{event.type}: fast path accepts, judge says {verdict}"
        if verdict is None:
            known[event.id] = Referent(event.actor, event.type)
