"""Team views: the feed a viewer may see, a team's goal board, the team's drift list.

The feed is a k-way merge, newest first, of the per-owner feed indexes the
fold keeps sorted by ``(occurred_at, event id)`` (``ProjectionState.feeds``).
A cursor is the key of the last item returned; the next page holds the keys
strictly below it, so paging never repeats an item and never skips one that
was already known, however many events arrive between pages (events that
arrive *above* the cursor show up on the next refresh, not in older pages)::

    page n:     k1 > k2 > ... > k50 = cursor
    page n+1:   keys < cursor, merged over the owners, filtered for the viewer

Every item is checked with the visibility rule of ``projections.visibility``
at read time: a private item never appears in another person's view.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from functools import partial
from typing import Annotated

import msgspec
from msgspec import Meta

from events import bodies as b
from events.envelope import Event
from projections.drift import DriftSignal, drift_signals
from projections.goals import MilestoneView, ObjectiveView, Unavailable, goal_tree
from projections.health import Health, tree_health
from projections.kudos import kudos_counts, kudos_givers
from projections.settings import DEFAULT_SETTINGS, DriftSettings
from projections.state import PLACEHOLDER, FeedKey, ProjectionState, Sharing, feed_key
from projections.visibility import audience, can_see, item_sharing

MAX_PAGE = 500
"""The largest page a caller may ask for."""

PERSON_WIDE_DRIFT = frozenset({"overload", "underplanned", "slowdown"})
"""Drift kinds about a person as a whole rather than one item."""


class InvalidCursor(ValueError):
    """A cursor that this module did not produce (callers answer 400)."""


class FeedItem(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of a feed: who did what, about which item, when."""

    id: str
    kind: str  # the event's type tag, e.g. ``milestone.completed``
    actor: str
    occurred_at: datetime
    recorded_at: datetime
    subject: str  # milestone, key result or indicator id (a journal entry: itself)
    subject_title: str | None  # None for a bare journal entry
    objective_title: str | None
    summary: str
    visibility: str
    confidence: str | None = None
    value: float | None = None
    unit: str | None = None
    percent: float | None = None
    note: str | None = None
    due_on: date | None = None
    did: str | None = None
    why: str | None = None
    outcome: str | None = None
    text: str | None = None
    polarity: str | None = None
    stage_name: str | None = None
    kudos: tuple[str, ...] = ()  # on a completion: who gave kudos (projections.kudos)
    completion: str | None = None  # on a kudos: the completion event it reacts to


class FeedPage(msgspec.Struct, frozen=True):
    """A page of a feed, newest first; ``next_cursor`` is None on the last page."""

    items: list[FeedItem]
    next_cursor: str | None


class MemberBoard(msgspec.Struct, frozen=True, omit_defaults=True):
    """One member's goals as the viewer may see them, with milestone counts.

    ``unavailable`` (omitted when empty): items whose view failed (see ``GoalTree``).
    """

    person: str
    objectives: list[ObjectiveView]
    standalone_milestones: list[MilestoneView]
    open_milestones: int
    completed_milestones: int
    overdue_milestones: int
    unavailable: list[Unavailable] = []


class TeamBoard(msgspec.Struct, frozen=True):
    """A team's goal board; ``members`` is empty when the viewer is not in the team.

    ``health`` holds every shown objective's, key result's and milestone's health by id
    (``projections.health``: pace, due dates and the drift signals the viewer may see).
    """

    team: str
    viewer: str
    as_of: datetime
    members: list[MemberBoard]
    health: dict[str, Health] = msgspec.field(default_factory=dict)


# --- cursors ----------------------------------------------------------------------------

_Aware = Annotated[datetime, Meta(tz=True)]
_CURSOR_TYPE = tuple[_Aware, str]


def encode_cursor(key: FeedKey) -> str:
    """An opaque, URL-safe cursor naming a feed position."""
    raw = msgspec.json.encode([key[0], key[1]])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> FeedKey:
    """The feed position named by a cursor; InvalidCursor if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, event_id = msgspec.json.decode(raw, type=_CURSOR_TYPE)
    except (binascii.Error, ValueError, msgspec.DecodeError) as error:
        raise InvalidCursor(f"not a feed cursor: {cursor!r}") from error
    return (moment, event_id)


# --- what a feed event is about, and who may see it -------------------------------------


class _Subject(msgspec.Struct, frozen=True):
    """A feed event's subject as resolved once per call."""

    owner: str
    sharing: Sharing
    title: str | None
    objective_title: str | None
    unit: str | None = None
    stages: tuple[str, ...] = ()


class SubjectResolver:
    """Resolves feed events for one viewer, caching each subject's verdict.

    A subject is hidden when it (or an item above it: key result, objective,
    indicator) is retracted or unknown, and invisible when ``can_see`` says
    so. Events by someone other than the subject's owner are ignored, as the
    goal views ignore them.
    """

    __slots__ = ("_allowed_cache", "_cache", "state", "viewer")

    def __init__(self, state: ProjectionState, viewer: str) -> None:
        self.state = state
        self.viewer = viewer
        self._cache: dict[str, _Subject | None] = {}
        self._allowed_cache: dict[tuple[str, Sharing], bool] = {}

    def subject_of(self, event: Event) -> str | None:
        """The id of the item a feed event is about (None if not a feed event)."""
        body = event.body
        if isinstance(body, b.MilestonePlanned | b.ObservationRecorded):
            if isinstance(body, b.ObservationRecorded) and body.indicator is not None:
                return body.indicator
            return event.id
        if isinstance(body, b.MilestoneCompleted):
            return body.milestone
        if isinstance(body, b.CheckInRecorded):
            return body.subject
        return None

    def visible_subject(self, subject_id: str) -> _Subject | None:
        """The subject if the viewer may see it and it is live, else None (cached)."""
        cache = self._cache
        if subject_id in cache:
            return cache[subject_id]
        found: _Subject | None = None
        event = self.state.events.get(subject_id)
        if event is not None:
            # Cheap gate first (most hidden items stop here), details only when allowed.
            sharing = item_sharing(self.state, subject_id)
            if self._allowed(event.actor, sharing):
                found = self._resolve(subject_id, event, sharing)
        cache[subject_id] = found
        return found

    def _allowed(self, owner: str, sharing: Sharing) -> bool:
        """``can_see`` for the viewer, cached per (owner, sharing)."""
        if owner == self.viewer:
            return True
        key = (owner, sharing)
        allowed = self._allowed_cache.get(key)
        if allowed is None:
            allowed = self._allowed_cache[key] = can_see(self.state, self.viewer, owner, sharing)
        return allowed

    def can_see_item(self, item_id: str) -> bool:
        """Whether the viewer may see a live item (its whole chain unretracted)."""
        return self.visible_subject(item_id) is not None

    def _objective_title(self, objective_id: str | None, owner: str) -> str | bool | None:
        """Title of a live objective the viewer may see; None if hidden; False if retracted."""
        if objective_id is None:
            return None
        state = self.state
        node = state.objectives.get(objective_id)
        if node is None or node.event is PLACEHOLDER:
            return None
        if state.is_retracted(objective_id):
            return False
        objective_owner = node.event.actor
        if objective_owner != owner and not self._allowed(
            objective_owner, state.own_sharing(objective_id)
        ):
            return None
        body = state.body(objective_id)
        assert isinstance(body, b.ObjectiveCreated)
        return body.title

    def _resolve(self, subject_id: str, event: Event, sharing: Sharing) -> _Subject | None:
        state = self.state
        if state.is_retracted(subject_id):
            return None
        owner = event.actor
        body = state.body(subject_id)
        objective_id: str | None = None
        unit: str | None = None
        stages: tuple[str, ...] = ()
        title: str | None
        if isinstance(body, b.MilestonePlanned):
            title = body.title
            link = state.milestones[subject_id].link.value or (None, None)
            key_result_id, objective_id = link
            if key_result_id is not None:
                key_result = state.key_results.get(key_result_id)
                if key_result is None or key_result.event is PLACEHOLDER:
                    key_result_id = None
                elif state.is_retracted(key_result_id):
                    return None
                else:
                    kr_body = key_result.event.body
                    assert isinstance(kr_body, b.KeyResultAdded)
                    objective_id = kr_body.objective
        elif isinstance(body, b.KeyResultAdded):
            title, unit, objective_id = body.title, body.unit, body.objective
        elif isinstance(body, b.IndicatorDefined):
            title, stages, objective_id = body.title, body.stages, body.objective
        elif isinstance(body, b.ObservationRecorded):
            title = None  # a bare journal entry is its own subject
        elif isinstance(body, b.ObjectiveCreated):
            title = body.title
        else:
            return None
        objective_title = self._objective_title(objective_id, owner)
        if objective_title is False:
            return None  # the objective above it was retracted
        assert not isinstance(objective_title, bool)
        return _Subject(
            owner=owner,
            sharing=sharing,
            title=title,
            objective_title=objective_title,
            unit=unit,
            stages=stages,
        )

    def item(self, event_id: str) -> FeedItem | None:
        """The feed item for an event, or None if the viewer may not see it or it is gone."""
        state = self.state
        event = state.events.get(event_id)
        if event is None or state.is_retracted(event_id):
            return None
        if type(event.body) is b.KudosGiven:
            return self._kudos_item(event, event.body)
        subject_id = self.subject_of(event)
        if subject_id is None:
            return None
        subject = self.visible_subject(subject_id)
        if subject is None or subject.owner != event.actor:
            return None
        return _feed_item(state, event, subject_id, subject)

    def _kudos_item(self, event: Event, body: b.KudosGiven) -> FeedItem | None:
        """A kudos shows to whoever sees the completion it names, when it counts."""
        completion = self.item(body.completion)
        if completion is None or not kudos_counts(self.state, event.id):
            return None
        return FeedItem(
            id=event.id,
            kind=event.type,
            actor=event.actor,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            subject=completion.subject,
            subject_title=completion.subject_title,
            objective_title=completion.objective_title,
            summary=(
                f"{event.actor} gave kudos to {completion.actor}"
                f" for {_quote(completion.subject_title)}"
            ),
            visibility=completion.visibility,
            note=body.note or None,
            completion=body.completion,
        )


def _quote(title: str | None) -> str:
    return f"'{title}'" if title is not None else "an item"


def _clip(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _number(value: float) -> str:
    return f"{value:g}"


def _feed_item(
    state: ProjectionState, event: Event, subject_id: str, subject: _Subject
) -> FeedItem:
    body = state.body(event.id)
    actor = event.actor
    title = subject.title

    def item(summary: str) -> FeedItem:
        return FeedItem(
            id=event.id,
            kind=event.type,
            actor=actor,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            subject=subject_id,
            subject_title=title,
            objective_title=subject.objective_title,
            summary=summary,
            visibility=subject.sharing.visibility,
        )

    replace = msgspec.structs.replace
    if isinstance(body, b.MilestonePlanned):
        due = f" (due {body.due_on.isoformat()})" if body.due_on is not None else ""
        return replace(item(f"{actor} planned {_quote(title)}{due}"), due_on=body.due_on)
    if isinstance(body, b.MilestoneCompleted):
        return replace(
            item(f"{actor} completed {_quote(title)}"),
            did=body.did,
            why=body.why,
            outcome=body.outcome,
            kudos=tuple(kudos_givers(state, event.id)),
        )
    if isinstance(body, b.CheckInRecorded):
        parts = []
        if body.value is not None:
            unit = f" {subject.unit}" if subject.unit else ""
            parts.append(f"{_number(body.value)}{unit}")
        if body.percent is not None:
            parts.append(f"{_number(body.percent)}%")
        parts.append(body.confidence)
        return replace(
            item(f"{actor} checked in on {_quote(title)}: {', '.join(parts)}"),
            confidence=body.confidence,
            value=body.value,
            unit=subject.unit if body.value is not None else None,
            percent=body.percent,
            note=body.note or None,
        )
    assert isinstance(body, b.ObservationRecorded)
    stage_name = None
    if body.stage is not None and body.stage < len(subject.stages):
        stage_name = subject.stages[body.stage]
    what = "a win" if body.polarity == "positive" else "a lesson"
    if title is None:
        summary = f"{actor} noted {what}: {_clip(body.text)}"
    else:
        stage = f" (stage: {stage_name})" if stage_name is not None else ""
        summary = f"{actor} noted {what} on {_quote(title)}{stage}: {_clip(body.text)}"
    return replace(item(summary), text=body.text, polarity=body.polarity, stage_name=stage_name)


# --- feeds ------------------------------------------------------------------------------


def _descending(feed: Sequence[Event], below: FeedKey | None) -> Iterator[Event]:
    """The feed's events strictly below ``below`` (all when None), newest first, read in
    place."""
    index = len(feed) if below is None else bisect_left(feed, below, key=feed_key)
    return map(feed.__getitem__, range(index - 1, -1, -1))


def _page(
    state: ProjectionState,
    viewer: str,
    owners: Iterable[str],
    cursor: str | None,
    limit: int,
) -> FeedPage:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    below = decode_cursor(cursor) if cursor is not None else None
    streams = [
        _descending(feed.events, below)
        for owner in sorted(set(owners))
        if (feed := state.feeds.get(owner)) is not None and feed.events
    ]
    resolver = SubjectResolver(state, viewer)
    items: list[FeedItem] = []
    last: Event | None = None
    more = False
    for event in heapq.merge(*streams, key=feed_key, reverse=True):
        item = resolver.item(event.id)
        if item is None:
            continue
        if len(items) == limit:
            more = True
            break
        items.append(item)
        last = event
    next_cursor = encode_cursor(feed_key(last)) if more and last is not None else None
    return FeedPage(items, next_cursor)


def is_member(state: ProjectionState, team: str, person: str) -> bool:
    """Whether the person currently belongs to the team."""
    return team in state.teams_of(person)


def team_feed(
    state: ProjectionState, team: str, viewer: str, *, cursor: str | None = None, limit: int = 50
) -> FeedPage:
    """What ``viewer`` may see of the team's current members, newest first.

    An empty page when the viewer is not a current member of the team.
    Raises InvalidCursor for a foreign cursor, ValueError for a bad limit.
    """
    if not is_member(state, team, viewer):
        if cursor is not None:
            decode_cursor(cursor)
        return FeedPage([], None)
    return _page(state, viewer, state.members_of(team), cursor, limit)


def viewer_owners(state: ProjectionState, viewer: str) -> set[str]:
    """Whose feeds may hold items for the viewer: self, teammates, people naming them partner."""
    owners = {viewer}
    for team in state.teams_of(viewer):
        owners |= state.members_of(team)
    owners |= state.partnered_by.get(viewer, set())
    return owners


def viewer_feed(
    state: ProjectionState, viewer: str, *, cursor: str | None = None, limit: int = 50
) -> FeedPage:
    """Everything the viewer may see: their own items, their teams', items shared with them."""
    return _page(state, viewer, viewer_owners(state, viewer), cursor, limit)


# --- the board --------------------------------------------------------------------------


def _member_board(
    state: ProjectionState, member: str, viewer: str, now: datetime, cycle: str | None
) -> MemberBoard:
    tree = goal_tree(state, member, now, viewer=viewer, cycle=cycle)
    milestones: dict[str, MilestoneView] = {}
    for objective in tree.objectives:
        for milestone in objective.milestones:
            milestones[milestone.id] = milestone
        for key_result in objective.key_results:
            for milestone in key_result.milestones:
                milestones[milestone.id] = milestone
    for milestone in tree.standalone_milestones:
        milestones[milestone.id] = milestone
    today = now.date()
    open_ = [m for m in milestones.values() if m.state == "open"]
    return MemberBoard(
        person=member,
        objectives=tree.objectives,
        standalone_milestones=tree.standalone_milestones,
        open_milestones=len(open_),
        completed_milestones=sum(1 for m in milestones.values() if m.state == "completed"),
        overdue_milestones=sum(1 for m in open_ if m.due_on is not None and m.due_on < today),
        unavailable=tree.unavailable,
    )


def team_board(
    state: ProjectionState,
    team: str,
    viewer: str,
    now: datetime,
    *,
    cycle: str | None = None,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> TeamBoard:
    """Each current member's goals as the viewer may see them (none if not a member),
    with every shown item's health (from the drift signals the viewer may see)."""
    if not is_member(state, team, viewer):
        return TeamBoard(team, viewer, now, [])
    members: list[MemberBoard] = []
    health: dict[str, Health] = {}
    for member in sorted(state.members_of(team)):
        board, member_health = _member_part(state, member, viewer, now, cycle, settings)
        members.append(board)
        health.update(member_health)
    return TeamBoard(team, viewer, now, members, health)


def _member_part(
    state: ProjectionState,
    member: str,
    viewer: str,
    now: datetime,
    cycle: str | None,
    settings: DriftSettings,
) -> tuple[MemberBoard, dict[str, Health]]:
    """A member's part of a team's board as the viewer sees it, and the health of each item
    on it. The health of a member's item reads only signals about it, which are among
    the member's own drift signals; all of it reads only the member's items, the day and
    the viewer through what they may see (``audience``). So it is kept until the member's
    next event: one member's check-in recomputes their part alone."""

    def compute() -> tuple[MemberBoard, dict[str, Health]]:
        board = _member_board(state, member, viewer, now, cycle)
        signals = person_drift(state, member, viewer, now, settings)
        return board, tree_health(
            board.objectives, board.standalone_milestones, now.date(), signals, settings=settings
        )

    part: tuple[MemberBoard, dict[str, Health]] = state.memoized(
        ("board-member", member, now.date(), cycle, settings, audience(state, viewer, member)),
        compute,
        member,
    )
    return part


# --- drift ------------------------------------------------------------------------------


def visible_signals(
    state: ProjectionState,
    owner: str,
    viewer: str,
    signals: Iterable[DriftSignal],
    resolver: SubjectResolver | None = None,
) -> list[DriftSignal]:
    """The signals about ``owner`` the viewer may see.

    ``signals`` must be computed for this viewer (``drift_signals(..., viewer=viewer)``:
    a person-wide signal then counts only the items the viewer may see, and pauses only
    in the owner's own view); ``person_drift`` does both. A signal about an item shows
    only if the viewer may see the item; a signal about the person as a whole
    (overload, underplanned, slowdown) only to the person and to people sharing a team
    with them. Event ids the viewer may not see are removed from what is shown.
    """
    if viewer == owner:
        return list(signals)
    resolver = resolver or SubjectResolver(state, viewer)
    shares_team = bool(state.teams_of(viewer) & state.teams_of(owner))
    shown = []
    for signal in signals:
        if signal.kind in PERSON_WIDE_DRIFT or signal.subject == owner:
            if not shares_team:
                continue
        elif not resolver.can_see_item(signal.subject):
            continue
        events = tuple(e for e in signal.events if _event_visible(resolver, e))
        if len(events) != len(signal.events):
            signal = msgspec.structs.replace(signal, events=events)
        shown.append(signal)
    return shown


def _event_visible(resolver: SubjectResolver, event_id: str) -> bool:
    """Whether an event behind a signal may be shown (the item it is about is visible)."""
    state = resolver.state
    event = state.events.get(event_id)
    if event is None or state.is_retracted(event_id):
        return False
    subject = resolver.subject_of(event) or _item_of(state, event)
    if subject is None:
        return False
    found = resolver.visible_subject(subject)
    return found is not None and found.owner == event.actor


def _item_of(state: ProjectionState, event: Event) -> str | None:
    """The item an event creates or changes, for events that are not feed events."""
    body = event.body
    if isinstance(body, b.ObjectiveCreated | b.KeyResultAdded | b.IndicatorDefined):
        return event.id
    if isinstance(body, (*b.MILESTONE_EVENTS, b.TaskAdded)):
        return body.milestone
    if isinstance(body, b.TaskCompleted | b.TaskReopened):
        task = state.tasks.get(body.task)
        added = task.event.body if task is not None else None
        return added.milestone if isinstance(added, b.TaskAdded) else None
    if isinstance(body, b.SharingChanged):
        return body.subject
    return None


def person_drift(
    state: ProjectionState,
    person: str,
    viewer: str,
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
    resolver: SubjectResolver | None = None,
) -> list[DriftSignal]:
    """The drift signals about ``person`` the viewer may see, computed for that viewer.

    Drift reads ``now`` only as its day and the viewer only through what they may see
    (``audience``): one computation per person, day, audience and position serves every
    such viewer's board, drift list and person page (and their refreshes).
    """
    signals: list[DriftSignal] = state.memoized(
        ("drift", person, now.date(), settings, audience(state, viewer, person)),
        partial(drift_signals, state, person, now, settings, viewer=viewer),
        person,  # reads the person's items and who is in which team, nothing else
    )
    return visible_signals(state, person, viewer, signals, resolver)


def team_drift(
    state: ProjectionState,
    team: str,
    viewer: str,
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> list[DriftSignal]:
    """Every current member's drift signals the viewer may see (none if not a member)."""
    if not is_member(state, team, viewer):
        return []
    resolver = SubjectResolver(state, viewer)
    shown: list[DriftSignal] = []
    for member in sorted(state.members_of(team)):
        shown.extend(person_drift(state, member, viewer, now, settings, resolver))
    return shown
