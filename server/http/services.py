"""What the routes decide before calling a projection: who may see whom, and parameters.

Thin controllers call these; the projections apply the per-item visibility rule
(their ``viewer`` parameter). Here is only the coarser rule about whole people
and teams, which decides between 200 and 404:

- a team is visible to its current members only;
- a person is visible to themself, to anyone sharing a team with them, and to
  anyone who can see at least one of their items (a partner); everyone else
  gets 404, exactly as for a person who does not exist.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from litestar import Response

from events import bodies as b
from events import cycle_bounds
from projections.goals import ALL, CURRENT, goal_tree
from projections.review import review
from projections.state import ProjectionState
from projections.team import is_member
from server.http.errors import InvalidParameter, NotVisible

# The range every date of an event has (events.bodies): a query outside it can match nothing.
MIN_DATE = b.MIN_DATE
MAX_DATE = b.MAX_DATE
MAX_REVIEW_DAYS = 366 * 5


def json_response(payload: bytes) -> Response[Any]:
    """A 200 with already encoded JSON (views are encoded once and may be reused)."""
    return Response(payload, media_type="application/json")


def require_person(state: ProjectionState, viewer: str, person: str, now: datetime) -> None:
    """NotVisible unless the viewer may know ``person`` exists (see the module docstring)."""
    if viewer == person:
        return
    if state.teams_of(viewer) & state.teams_of(person):
        return
    if person in state.partnered_by.get(viewer, ()):
        tree = goal_tree(state, person, now, viewer=viewer)
        if tree.objectives or tree.standalone_milestones:
            return
        shared = review(state, person, now.date() - timedelta(days=365), now.date(), now, viewer)
        if shared.observations or shared.checkins:
            return
    raise NotVisible()


def require_member(state: ProjectionState, team: str, viewer: str) -> None:
    """NotVisible unless the viewer currently belongs to ``team``."""
    if not is_member(state, team, viewer):
        raise NotVisible()


def check_date(field: str, value: date) -> date:
    """``value`` if it is a usable calendar date."""
    if not MIN_DATE <= value <= MAX_DATE:
        raise InvalidParameter(field, f"must be between {MIN_DATE} and {MAX_DATE}")
    return value


def end_of_day(day: date) -> datetime:
    """The last instant of ``day`` in UTC."""
    return datetime.combine(day, time.max, tzinfo=UTC)


def check_cycle(cycle: str | None) -> str | None:
    """``cycle`` if it is ``current``, ``all`` or a cycle such as 2026, 2026-H1, 2026-Q1."""
    if cycle is None or cycle in (CURRENT, ALL):
        return cycle
    try:
        cycle_bounds(cycle)
    except ValueError as exc:
        raise InvalidParameter("cycle", str(exc)) from None
    return cycle


def review_period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    """The review period: defaults to the current calendar year; at most five years."""
    if start is not None:
        check_date("from", start)
    if end is not None:
        check_date("to", end)
    if start is None and end is None:
        return date(today.year, 1, 1), date(today.year, 12, 31)
    if start is None:
        assert end is not None
        start = date(end.year, 1, 1)
    if end is None:
        end = date(start.year, 12, 31)
    if end < start:
        raise InvalidParameter("to", f"must be on or after from ({start})")
    if (end - start).days > MAX_REVIEW_DAYS:
        raise InvalidParameter("to", "a review covers at most five years")
    return start, end
