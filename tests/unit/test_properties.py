"""Properties over random histories of several people, devices and teams.

* any permutation of the same events yields identical views (replicas converge);
* folding one at a time (reading views in between) equals a rebuild;
* a private item never appears in another viewer's views, and a partners item
  only for the named partners — checked against an independent model of the
  sharing rules written here, not the projection's own code;
* every valid event round-trips through the codec; arbitrary bytes raise
  nothing but ``CodecError``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import events
from events import bodies as b
from events.codec import CodecError
from events.envelope import Event
from milepost_testkit.strategies import events_strategy, histories
from projections.drift import drift_signals
from projections.goals import goal_tree
from projections.review import review
from projections.state import ProjectionState, apply, rebuild
from projections.team import team_board, team_drift, team_feed, viewer_feed

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
PERIOD = (date(2026, 1, 1), date(2026, 12, 31))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pages(fetch: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        page = fetch(cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("feed paging did not end")


def people_and_teams(history: list[Event]) -> tuple[list[str], list[str]]:
    people = {e.actor for e in history if e.actor != "admin"}
    teams = set()
    for event in history:
        if isinstance(event.body, b.TeamMemberJoined | b.TeamMemberLeft):
            people.add(event.body.person)
            teams.add(event.body.team)
        if isinstance(event.body, b.ObjectiveCreated | b.SharingChanged):
            people.update(event.body.partners)
    return sorted(people), sorted(teams)


def views_for(
    state: ProjectionState, viewer: str, people: list[str], teams: list[str]
) -> dict[str, bytes]:
    """Every view ``viewer`` can ask for, encoded, keyed by name."""
    encode = msgspec.json.encode
    out: dict[str, bytes] = {}
    for person in people:
        out[f"tree/{person}"] = encode(goal_tree(state, person, NOW, viewer=viewer))
        out[f"review/{person}"] = encode(
            review(state, person, PERIOD[0], PERIOD[1], NOW, viewer=viewer)
        )
    out["drift"] = encode(drift_signals(state, viewer, NOW))
    for team in teams:
        out[f"feed/{team}"] = encode(
            _pages(lambda c, t=team: team_feed(state, t, viewer, cursor=c, limit=7))
        )
        out[f"board/{team}"] = encode(team_board(state, team, viewer, NOW))
        out[f"team-drift/{team}"] = encode(team_drift(state, team, viewer, NOW))
    out["viewer-feed"] = encode(_pages(lambda c: viewer_feed(state, viewer, cursor=c, limit=5)))
    return out


def all_views(state: ProjectionState, history: list[Event]) -> dict[str, dict[str, bytes]]:
    people, teams = people_and_teams(history)
    return {viewer: views_for(state, viewer, people, teams) for viewer in people}


@SETTINGS
@given(history=histories(), data=st.data())
def test_any_permutation_yields_identical_views(history: list[Event], data: st.DataObject) -> None:
    expected = all_views(rebuild(history), history)
    shuffled = data.draw(st.permutations(history))
    assert all_views(rebuild(shuffled), history) == expected


@SETTINGS
@given(history=histories())
def test_folding_one_by_one_equals_rebuilding(history: list[Event]) -> None:
    people, teams = people_and_teams(history)
    state = ProjectionState()
    for index, event in enumerate(history):
        apply(state, event)
        if index % 7 == 0 and people:  # reading views must not disturb the fold
            views_for(state, people[0], people, teams)
    for event in history[: len(history) // 3]:
        assert apply(state, event) is False  # redelivery is a no-op
    assert all_views(state, history) == all_views(rebuild(history), history)


# --- an independent model of who may see what ----------------------------------------


_MILESTONE_WRITES = (
    b.MilestoneRescheduled,
    b.MilestoneCompleted,
    b.MilestoneReopened,
    b.MilestoneDropped,
    b.MilestoneRestored,
)
_NAMES_OF: dict[type, dict[str, tuple[type, ...]]] = {
    b.KeyResultAdded: {"objective": (b.ObjectiveCreated,)},
    b.MilestonePlanned: {"key_result": (b.KeyResultAdded,), "objective": (b.ObjectiveCreated,)},
    **{write: {"milestone": (b.MilestonePlanned,)} for write in _MILESTONE_WRITES},
    b.MilestoneRelinked: {
        "milestone": (b.MilestonePlanned,),
        "key_result": (b.KeyResultAdded,),
        "objective": (b.ObjectiveCreated,),
    },
    b.TaskAdded: {"milestone": (b.MilestonePlanned,)},
    b.TaskCompleted: {"task": (b.TaskAdded,)},
    b.TaskReopened: {"task": (b.TaskAdded,)},
    b.CheckInRecorded: {"subject": (b.KeyResultAdded, b.MilestonePlanned)},
    b.IndicatorDefined: {"objective": (b.ObjectiveCreated,)},
    b.ObservationRecorded: {"indicator": (b.IndicatorDefined,)},
    b.SharingChanged: {
        "subject": (
            b.ObjectiveCreated,
            b.MilestonePlanned,
            b.IndicatorDefined,
            b.ObservationRecorded,
        )
    },
    b.Corrected: {"target": ()},
    b.Retracted: {"target": ()},
}
"""The ownership rule written out again, independently of ``projections.ownership``: the
events each body names, and the types they may be (empty: any)."""


def accepted_events(history: list[Event]) -> list[Event]:
    """The events the ownership rule accepts, as a least fixpoint: an event is accepted when
    every event it names is accepted, by the same actor and of an allowed type; membership
    only from admin. Independent of the order the fold sees them in."""
    by_id = {e.id: e for e in history}
    accepted: set[str] = set()
    changed = True
    while changed:
        changed = False
        for event in history:
            if event.id in accepted:
                continue
            body = event.body
            if isinstance(body, b.TeamMemberJoined | b.TeamMemberLeft):
                ok = event.actor == "admin"
            elif isinstance(body, b.KudosGiven):  # someone else's accepted completion
                named = by_id.get(body.completion)
                ok = (
                    named is not None
                    and body.completion in accepted
                    and isinstance(named.body, b.MilestoneCompleted)
                    and named.actor != event.actor
                )
            else:
                ok = True
                for field, allowed in _NAMES_OF.get(type(body), {}).items():
                    ref = getattr(body, field)
                    if ref is None:
                        continue
                    named = by_id.get(ref)
                    if (
                        named is None
                        or ref not in accepted
                        or named.actor != event.actor
                        or (allowed and not isinstance(named.body, allowed))
                    ):
                        ok = False
                        break
            if ok:
                accepted.add(event.id)
                changed = True
    return [e for e in history if e.id in accepted]


class _Model:
    """Sharing as docs/contract.md#domain states it, computed directly from the history (its
    accepted events: the rest changes nothing)."""

    def __init__(self, history: list[Event]) -> None:
        history = accepted_events(history)
        self.by_id = {e.id: e for e in history}
        retractions = [e for e in history if isinstance(e.body, b.Retracted)]
        self.retracted = {
            r.body.target
            for r in retractions
            if isinstance(r.body, b.Retracted)
            and r.body.target in self.by_id
            and self.by_id[r.body.target].actor == r.actor
        }
        self.sharing: dict[str, tuple[tuple[int, str], str, tuple[str, ...]]] = {}
        self.links: dict[str, tuple[tuple[int, str], str | None, str | None]] = {}
        self.members: dict[tuple[str, str], tuple[tuple[int, str], bool]] = {}
        for event in sorted(history, key=lambda e: (e.clock, e.id)):
            body = event.body
            stamp = (event.clock, event.id)
            if isinstance(body, b.ObjectiveCreated | b.MilestonePlanned | b.IndicatorDefined):
                self._share(event.id, event.actor, stamp, body.visibility, body.partners)
            if isinstance(body, b.ObservationRecorded) and body.indicator is None:
                self._share(event.id, event.actor, stamp, body.visibility, body.partners)
            if isinstance(body, b.SharingChanged):
                self._share(body.subject, event.actor, stamp, body.visibility, body.partners)
            if isinstance(body, b.MilestonePlanned):
                self.links[event.id] = (stamp, body.key_result, body.objective)
            if isinstance(body, b.MilestoneRelinked) and body.milestone in self.links:
                self.links[body.milestone] = (stamp, body.key_result, body.objective)
            if isinstance(body, b.TeamMemberJoined | b.TeamMemberLeft):
                joined = isinstance(body, b.TeamMemberJoined)
                self.members[(body.team, body.person)] = (stamp, joined)

    def _share(
        self, item: str, actor: str, stamp: tuple[int, str], vis: str, partners: tuple[str, ...]
    ) -> None:
        owner = self.by_id.get(item)
        if owner is None or owner.actor != actor:
            return
        current = self.sharing.get(item)
        if current is None or stamp > current[0]:
            self.sharing[item] = (stamp, vis, partners)

    def root(self, item: str) -> str | None:
        event = self.by_id.get(item)
        if event is None:
            return None
        body = event.body
        if isinstance(body, b.ObjectiveCreated):
            return item
        if isinstance(body, b.KeyResultAdded):
            return body.objective
        if isinstance(body, b.MilestonePlanned):
            _, key_result, objective = self.links[item]
            if key_result is not None:
                kr = self.by_id.get(key_result)
                if kr is not None and isinstance(kr.body, b.KeyResultAdded):
                    return kr.body.objective
            return objective if objective is not None else item
        if isinstance(body, b.TaskAdded):
            return self.root(body.milestone)
        if isinstance(body, b.CheckInRecorded):
            return self.root(body.subject)
        if isinstance(body, b.IndicatorDefined):
            return body.objective if body.objective is not None else item
        if isinstance(body, b.ObservationRecorded):
            return self.root(body.indicator) if body.indicator is not None else item
        return None

    def teams(self, person: str) -> set[str]:
        return {t for (t, p), (_, joined) in self.members.items() if p == person and joined}

    def may_see(self, viewer: str, item: str) -> bool:
        owner = self.by_id[item].actor
        if viewer == owner:
            return True
        root = self.root(item)
        if root is None or root not in self.by_id or self.by_id[root].actor != owner:
            return False
        _, visibility, partners = self.sharing.get(root, ((0, ""), "private", ()))
        if visibility == "partners":
            return viewer in partners
        if visibility == "team":
            return bool(self.teams(viewer) & self.teams(owner))
        return False


SHAREABLE = (
    b.ObjectiveCreated,
    b.KeyResultAdded,
    b.MilestonePlanned,
    b.TaskAdded,
    b.CheckInRecorded,
    b.IndicatorDefined,
    b.ObservationRecorded,
)


@SETTINGS
@given(history=histories())
def test_nobody_sees_what_sharing_does_not_allow(history: list[Event]) -> None:
    model = _Model(history)
    state = rebuild(history)
    views = all_views(state, history)
    items = [e for e in history if isinstance(e.body, SHAREABLE)]
    assert set(state.events) == {e.id for e in accepted_events(history)}
    for viewer, named in views.items():
        blob = b"\n".join(named.values())
        for event in items:
            if event.id.encode() in blob:
                assert event.id in model.by_id and model.may_see(viewer, event.id), (
                    f"{viewer} sees {event.body.__struct_config__.tag} {event.id} "
                    f"owned by {event.actor}"
                )


@settings(max_examples=300, deadline=None)
@given(event=events_strategy())
def test_every_valid_event_round_trips(event: Event) -> None:
    data = events.encode(event)
    again = events.decode(data)
    assert again == event
    assert events.encode(again) == data


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    try:
        decoded = events.decode(data)
    except CodecError as error:
        assert error.field and error.reason  # named, never empty
    else:
        assert isinstance(decoded, events.Event | events.OpaqueEvent)


@settings(max_examples=300, deadline=None)
@given(event=events_strategy(), data=st.data())
def test_mutated_events_raise_only_codec_errors(event: Event, data: st.DataObject) -> None:
    encoded = bytearray(events.encode(event))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    try:
        decoded = events.decode(bytes(encoded))
    except CodecError:
        return
    assert isinstance(decoded, events.Event | events.OpaqueEvent)
