"""An independent model of the ownership and sharing rules, and every view a person can ask
for: what the property tests and the replica convergence machine check the real code against.

Written from docs/contract.md#domain and docs/sync.md, not from ``projections``:

* ``accepted_events`` — the ownership rule as a least fixpoint (an event is accepted when
  every event it names is accepted, by the same actor and of an allowed type; membership
  only from ``admin``), and ``refused_ids`` — the events some present reference makes
  refused (what the server dead-letters);
* ``Model`` — who may see which event *now*: their own, the events under a root whose
  owner's sharing admits them, and the membership changes of their teams;
* ``views_for`` — every view a viewer can ask for, encoded, to compare two folds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import msgspec

from events import AnyEvent, Event
from events import bodies as b
from events.clock import MAX_CLOCK_AHEAD_MS, physical_ms, wall_ms
from projections.drift import drift_signals
from projections.goals import goal_tree
from projections.review import review
from projections.state import ProjectionState
from projections.team import team_board, team_drift, team_feed, viewer_feed

ADMIN = "admin"

_MILESTONE_WRITES = (
    b.MilestoneRescheduled,
    b.MilestoneCompleted,
    b.MilestoneReopened,
    b.MilestoneDropped,
    b.MilestoneRestored,
)
NAMES_OF: dict[type, dict[str, tuple[type, ...]]] = {
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

_MEMBERSHIP = (b.TeamMemberJoined, b.TeamMemberLeft)


def _named(event: Event) -> Iterable[tuple[str, tuple[type, ...]]]:
    for field, allowed in NAMES_OF.get(type(event.body), {}).items():
        ref = getattr(event.body, field)
        if ref is not None:
            yield ref, allowed


Vouched = Mapping[str, tuple[str, str]]
"""What a server vouched for to a device: event id -> (actor, type tag) of an event it
accepted that the device may not receive (``events.wire.WireReferent``)."""


def accepted_events(history: Sequence[AnyEvent], vouched: Vouched | None = None) -> list[Event]:
    """The events the ownership rule accepts, as a least fixpoint: an event is accepted when
    every event it names is accepted, by the same actor and of an allowed type; membership
    only from admin. Independent of the order the fold sees them in. A ``vouched`` event
    may be named as if accepted, with the actor and type given (it is never itself one of
    the accepted events unless ``history`` holds it and it is accepted there)."""
    known = [e for e in history if isinstance(e, Event)]
    facts: dict[str, tuple[str, type]] = {
        event_id: (actor, b.BODY_TYPES.get(tag, _Unknown))
        for event_id, (actor, tag) in (vouched or {}).items()
    }
    facts.update((e.id, (e.actor, type(e.body))) for e in known if e.id not in facts)
    accepted: set[str] = set()
    nameable: set[str] = set(vouched or ())
    changed = True
    while changed:
        changed = False
        for event in known:
            if event.id in accepted:
                continue
            body = event.body
            if isinstance(body, _MEMBERSHIP):
                ok = event.actor == ADMIN
            elif isinstance(body, b.KudosGiven):  # someone else's accepted completion
                named = facts.get(body.completion)
                ok = (
                    named is not None
                    and body.completion in nameable
                    and issubclass(named[1], b.MilestoneCompleted)
                    and named[0] != event.actor
                )
            else:
                ok = all(
                    ref in nameable
                    and facts[ref][0] == event.actor
                    and (not allowed or issubclass(facts[ref][1], allowed))
                    for ref, allowed in _named(event)
                )
            if ok:
                accepted.add(event.id)
                nameable.add(event.id)
                changed = True
    return [e for e in known if e.id in accepted]


class _Unknown:
    """The type of a vouched event of a type this version does not know."""


def named_ids(event: AnyEvent) -> list[str]:
    """Every id an event names (its own references and its reaction's)."""
    if not isinstance(event, Event):
        return []
    names = [ref for ref, _ in _named(event)]
    if isinstance(event.body, b.KudosGiven):
        names.append(event.body.completion)
    return names


def refused_ids(history: Sequence[AnyEvent]) -> set[str]:
    """Events the server refuses outright: a clock further ahead of its wall clock than the
    bound, membership not by admin, or some named event that is accepted but someone else's
    or of the wrong kind. The rest of the unaccepted events
    wait (forever, if what they name never arrives or is itself refused)."""
    accepted = {e.id: e for e in accepted_events(history)}
    refused: set[str] = set()
    ceiling = wall_ms() + MAX_CLOCK_AHEAD_MS  # the server's bound on clocks, at its wall time
    for event in history:
        if isinstance(event, Event) and physical_ms(event.clock) > ceiling:
            refused.add(event.id)  # refused on arrival, whatever it names
            continue
        if not isinstance(event, Event) or event.id in accepted:
            continue
        if isinstance(event.body, _MEMBERSHIP):
            refused.add(event.id)
            continue
        if isinstance(event.body, b.KudosGiven):
            completion = accepted.get(event.body.completion)
            if completion is not None and (
                not isinstance(completion.body, b.MilestoneCompleted)
                or completion.actor == event.actor
            ):
                refused.add(event.id)
            continue
        for ref, allowed in _named(event):
            named = accepted.get(ref)
            if named is not None and (
                named.actor != event.actor or (allowed and not isinstance(named.body, allowed))
            ):
                refused.add(event.id)
                break
    return refused


Stamp = tuple[int, str]


class Model:
    """Sharing as docs/contract.md#domain states it, computed directly from a history (its
    accepted events: the rest changes nothing)."""

    def __init__(self, history: Sequence[AnyEvent]) -> None:
        self.all = {e.id: e for e in history if isinstance(e, Event)}
        accepted = accepted_events(history)
        self.by_id = {e.id: e for e in accepted}
        self.retracted = {
            r.body.target
            for r in accepted
            if isinstance(r.body, b.Retracted)
            and r.body.target in self.by_id
            and self.by_id[r.body.target].actor == r.actor
        }
        self.sharing: dict[str, tuple[Stamp, str, tuple[str, ...]]] = {}
        self.links: dict[str, tuple[Stamp, str | None, str | None]] = {}
        self.members: dict[tuple[str, str], tuple[Stamp, bool]] = {}
        for event in sorted(accepted, key=lambda e: (e.clock, e.id)):
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
            if isinstance(body, _MEMBERSHIP):
                joined = isinstance(body, b.TeamMemberJoined)
                self.members[(body.team, body.person)] = (stamp, joined)

    def _share(
        self, item: str, actor: str, stamp: Stamp, vis: str, partners: tuple[str, ...]
    ) -> None:
        owner = self.by_id.get(item)
        if owner is None or owner.actor != actor:
            return
        current = self.sharing.get(item)
        if current is None or stamp > current[0]:
            self.sharing[item] = (stamp, vis, partners)

    def root(self, item: str) -> str | None:
        """The item whose sharing decides who sees ``item`` (any accepted event)."""
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
        if isinstance(body, b.IndicatorDefined):
            return body.objective if body.objective is not None else item
        if isinstance(body, b.ObservationRecorded):
            return self.root(body.indicator) if body.indicator is not None else item
        for field in ("milestone", "task", "subject", "target"):  # writes to an item
            named = getattr(body, field, None)
            if isinstance(named, str):
                return self.root(named)
        return None  # pauses, membership

    def teams(self, person: str) -> set[str]:
        return {t for (t, p), (_, joined) in self.members.items() if p == person and joined}

    def may_see(self, viewer: str, item: str) -> bool:
        """Whether ``viewer`` may see the accepted item ``item`` (its root's sharing)."""
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

    def may_receive(self, viewer: str, event_id: str) -> bool:
        """Whether the server may send ``viewer`` this stored event now: their own events
        always (even those still waiting for what they name), a membership change of a
        team they are in, and any accepted event they ``may_see``."""
        event = self.all[event_id]
        if event.actor == viewer:
            return True
        if event_id not in self.by_id:
            return False  # waiting: its author's alone
        if isinstance(event.body, _MEMBERSHIP):
            return event.body.team in self.teams(viewer)
        return self.may_see(viewer, event_id)

    def received_by(self, viewer: str) -> set[str]:
        """Every event of the history ``viewer`` may receive now."""
        return {event_id for event_id in self.all if self.may_receive(viewer, event_id)}

    def vouched_for(self, viewer: str, delivered: Iterable[AnyEvent]) -> dict[str, tuple[str, str]]:
        """What the server vouches for with ``delivered`` (events sent to ``viewer`` now):
        every event they name that it accepted and ``viewer`` may not receive now."""
        out: dict[str, tuple[str, str]] = {}
        for event in delivered:
            for ref in named_ids(event):
                named = self.by_id.get(ref)
                if named is not None and not self.may_receive(viewer, ref):
                    out[ref] = (named.actor, named.type)
        return out


# --- every view a viewer can ask for --------------------------------------------------


def all_pages(fetch: Callable[[Any], Any]) -> list[Any]:
    """Every item of a paged feed."""
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        page = fetch(cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("feed paging did not end")


def people_and_teams(history: Iterable[AnyEvent]) -> tuple[list[str], list[str]]:
    """Everyone and every team a history names (its actors, members and partners)."""
    people: set[str] = set()
    teams: set[str] = set()
    for event in history:
        if not isinstance(event, Event):
            continue
        if event.actor != ADMIN:
            people.add(event.actor)
        if isinstance(event.body, _MEMBERSHIP):
            people.add(event.body.person)
            teams.add(event.body.team)
        if isinstance(event.body, b.ObjectiveCreated | b.SharingChanged):
            people.update(event.body.partners)
    return sorted(people), sorted(teams)


def views_for(
    state: ProjectionState,
    viewer: str,
    people: Iterable[str],
    teams: Iterable[str],
    now: datetime,
    period: tuple[date, date],
) -> dict[str, bytes]:
    """Every view ``viewer`` can ask for, encoded, keyed by name."""
    encode = msgspec.json.encode
    out: dict[str, bytes] = {}
    for person in people:
        out[f"tree/{person}"] = encode(goal_tree(state, person, now, viewer=viewer))
        out[f"review/{person}"] = encode(
            review(state, person, period[0], period[1], now, viewer=viewer)
        )
    out["drift"] = encode(drift_signals(state, viewer, now))
    for team in teams:

        def page(cursor: Any, team: str = team) -> Any:
            return team_feed(state, team, viewer, cursor=cursor, limit=7)

        out[f"feed/{team}"] = encode(all_pages(page))
        out[f"board/{team}"] = encode(team_board(state, team, viewer, now))
        out[f"team-drift/{team}"] = encode(team_drift(state, team, viewer, now))
    out["viewer-feed"] = encode(all_pages(lambda c: viewer_feed(state, viewer, cursor=c, limit=5)))
    return out
