"""Recompute every projection from the stored events, and compare with the incremental fold.

The *incremental* state is what a running server holds: events folded page by
page in position order as they were stored (``ProjectionFollower``). The
*rebuilt* state folds the same events from scratch in a different order (by
event id), which the projections must not notice (docs/contract.md#projections). Equality is
checked on what users see: every person's goal tree, drift and review (as
themself), and every team's board, full feed and drift as each member sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import msgspec

from events import AnyEvent, CodecError, decode
from projections.drift import drift_signals
from projections.goals import goal_tree
from projections.review import review
from projections.settings import DEFAULT_SETTINGS, DriftSettings
from projections.state import ProjectionState, rebuild
from projections.team import team_board, team_drift, team_feed
from server.partition import split_key
from server.projection import ProjectionFollower
from server.store.protocol import ServerStore

_encode = msgspec.json.Encoder().encode


async def stored_events(
    store: ServerStore, page: int = 5_000, upto: int | None = None
) -> list[AnyEvent]:
    """Every stored event that decodes, in position order (up to position ``upto``)."""
    found: list[AnyEvent] = []
    position = 0
    while True:
        rows = await store.events_after(position, page)
        if upto is not None:
            rows = [row for row in rows if row.position <= upto]
        if not rows:
            return found
        for row in rows:
            try:
                found.append(decode(row.raw))
            except CodecError:
                continue
        position = rows[-1].position


async def incremental_state(store: ServerStore, page: int = 5_000) -> ProjectionState:
    """The state a server builds: pages folded in position order."""
    follower = ProjectionFollower(store, page=page)
    await follower.catch_up()
    return follower.state


async def rebuilt_state(store: ServerStore) -> ProjectionState:
    """A fresh fold of every stored event, in event-id order."""
    events = await stored_events(store)
    events.sort(key=lambda e: e.id)
    return rebuild(events)


def people_and_teams(state: ProjectionState) -> tuple[list[str], list[str]]:
    """Everyone with items, feed entries or a membership, and every team ever joined."""
    people = set(state.people) | set(state.feeds)
    teams: set[str] = set()
    for team, person in state.memberships:
        teams.add(team)
        people.add(person)
    return sorted(people), sorted(teams)


def person_views(
    state: ProjectionState,
    person: str,
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
    *,
    with_review: bool = True,
) -> Iterator[tuple[str, bytes]]:
    """(name, JSON) of every view of ``person`` a user can ask for, at ``now``."""
    year_start, year_end = date(now.year, 1, 1), date(now.year, 12, 31)
    yield f"goals/{person}", _encode(goal_tree(state, person, now))
    yield f"drift/{person}", _encode(drift_signals(state, person, now, settings))
    if with_review:
        yield (
            f"review/{person}",
            _encode(review(state, person, year_start, year_end, now, settings=settings)),
        )


def team_views(
    state: ProjectionState,
    team: str,
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
) -> Iterator[tuple[str, bytes]]:
    """(name, JSON) of every view of ``team`` as each member sees it, at ``now``."""
    for member in sorted(state.members_of(team)):
        yield f"board/{team}/{member}", _encode(team_board(state, team, member, now))
        yield (
            f"team-drift/{team}/{member}",
            _encode(team_drift(state, team, member, now, settings)),
        )
        cursor: str | None = None
        page_number = 0
        while True:
            page = team_feed(state, team, member, cursor=cursor, limit=200)
            yield f"feed/{team}/{member}/{page_number}", _encode(page)
            if page.next_cursor is None:
                break
            cursor, page_number = page.next_cursor, page_number + 1


def views(
    state: ProjectionState,
    now: datetime,
    settings: DriftSettings = DEFAULT_SETTINGS,
    *,
    with_review: bool = True,
) -> Iterator[tuple[str, bytes]]:
    """(name, JSON) of every view a user can ask for, at ``now``."""
    people, teams = people_and_teams(state)
    for person in people:
        yield from person_views(state, person, now, settings, with_review=with_review)
    for team in teams:
        yield from team_views(state, team, now, settings)


def partition_views(
    state: ProjectionState, partition: str, now: datetime
) -> Iterator[tuple[str, bytes]]:
    """(name, JSON) of the views a working-set partition answers: ``team:T`` a team's,
    ``person:X`` a person's (``server.working_set``)."""
    parsed = split_key(partition)
    if parsed is None:
        raise ValueError(f"not a partition: {partition!r}")
    kind, name = parsed
    yield from (team_views if kind == "team" else person_views)(state, name, now)


def differences(
    left: ProjectionState,
    right: ProjectionState,
    now: datetime,
    *,
    with_review: bool = True,
    limit: int = 20,
    partition: str | None = None,
) -> tuple[int, list[str]]:
    """How many views were compared, and the names of those that differ (at most
    ``limit``): every view, or those the working-set ``partition`` answers."""
    if partition is not None:
        mine = dict(partition_views(left, partition, now))
        theirs = dict(partition_views(right, partition, now))
    else:
        mine = dict(views(left, now, with_review=with_review))
        theirs = dict(views(right, now, with_review=with_review))
    differ = sorted(
        name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name)
    )
    return len(mine.keys() | theirs.keys()), differ[:limit]
