"""What the pages show, computed from the same view objects the JSON API returns.

Each page's data is a msgspec Struct: the page renders it and its JSON twin
(``….json``) returns it, so a page can never show more than the API. The
filters only remove things from the API's views; nothing here widens them.
"""

from __future__ import annotations

from datetime import date

import msgspec

from projections.drift import DriftSignal
from projections.goals import KeyResultView, MilestoneView, ObjectiveView
from projections.health import HEALTH_LEVELS, Health
from projections.review import Review
from projections.state import PLACEHOLDER, ProjectionState
from projections.team import FeedPage, MemberBoard, SubjectResolver, TeamBoard


class BoardFilters(msgspec.Struct, frozen=True):
    """The board's filters (None: everything)."""

    person: str | None = None
    cycle: str = "current"
    health: str | None = None


class BoardPage(msgspec.Struct, frozen=True):
    """The team board page: the API's board (filtered) and the filters applied."""

    board: TeamBoard
    filters: BoardFilters
    members: list[str]  # every member shown before the person filter (for the picker)
    health_levels: tuple[str, ...] = HEALTH_LEVELS


class FeedPageView(msgspec.Struct, frozen=True):
    """The feed page: one page of the API's team feed."""

    team: str
    viewer: str
    page: FeedPage
    position: int  # the store position the page was read at (the live stream resumes here)


class DriftGroup(msgspec.Struct, frozen=True):
    """The drift signals about one item (or one person as a whole)."""

    subject: str
    subject_title: str
    owner: str
    worst: str
    signals: list[DriftSignal]


class DriftPage(msgspec.Struct, frozen=True):
    """The team drift page: the API's drift list grouped by item, alerts first."""

    team: str
    viewer: str
    groups: list[DriftGroup]


def _matches(health: dict[str, Health], item_id: str, level: str) -> bool:
    found = health.get(item_id)
    return found is not None and found.level == level


def _filter_milestones(
    milestones: list[MilestoneView], health: dict[str, Health], level: str
) -> list[MilestoneView]:
    return [m for m in milestones if _matches(health, m.id, level)]


def _filter_key_result(
    key_result: KeyResultView, health: dict[str, Health], level: str
) -> KeyResultView | None:
    milestones = _filter_milestones(key_result.milestones, health, level)
    if milestones or _matches(health, key_result.id, level):
        return msgspec.structs.replace(key_result, milestones=milestones)
    return None


def _filter_objective(
    objective: ObjectiveView, health: dict[str, Health], level: str
) -> ObjectiveView | None:
    key_results = [
        kept
        for kr in objective.key_results
        if (kept := _filter_key_result(kr, health, level)) is not None
    ]
    milestones = _filter_milestones(objective.milestones, health, level)
    if key_results or milestones or _matches(health, objective.id, level):
        return msgspec.structs.replace(objective, key_results=key_results, milestones=milestones)
    return None


def _filter_member(member: MemberBoard, health: dict[str, Health], level: str) -> MemberBoard:
    objectives = [
        kept
        for objective in member.objectives
        if (kept := _filter_objective(objective, health, level)) is not None
    ]
    standalone = _filter_milestones(member.standalone_milestones, health, level)
    return msgspec.structs.replace(member, objectives=objectives, standalone_milestones=standalone)


def board_page(board: TeamBoard, filters: BoardFilters) -> BoardPage:
    """The board as the page shows it: the API's board narrowed by the filters.

    The health filter keeps the items of that health and, for context, the
    objectives and key results above them.
    """
    members = [m.person for m in board.members]
    shown = board.members
    if filters.person is not None:
        shown = [m for m in shown if m.person == filters.person]
    if filters.health is not None:
        shown = [_filter_member(m, board.health, filters.health) for m in shown]
    return BoardPage(msgspec.structs.replace(board, members=shown), filters, members)


_SEVERITY = {"alert": 0, "warning": 1}


def drift_page(team: str, viewer: str, signals: list[DriftSignal]) -> DriftPage:
    """The team's drift signals grouped by the item they are about, alerts first."""
    groups: dict[tuple[str, str], list[DriftSignal]] = {}
    for signal in signals:
        groups.setdefault((signal.owner, signal.subject), []).append(signal)
    shown = [
        DriftGroup(
            subject=subject,
            subject_title=found[0].subject_title,
            owner=owner,
            worst="alert" if any(s.severity == "alert" for s in found) else "warning",
            signals=found,
        )
        for (owner, subject), found in groups.items()
    ]
    shown.sort(key=lambda g: (_SEVERITY[g.worst], min(s.since for s in g.signals), g.owner))
    return DriftPage(team, viewer, shown)


def iso_week(day: date) -> tuple[int, int]:
    """(ISO year, ISO week) of a day."""
    year, week, _ = day.isocalendar()
    return year, week


class IndicatorView(msgspec.Struct, frozen=True):
    """An indicator the viewer may see: its ordered stages and the highest one reached (by
    the observations of the period, as the review shows them), with the counts."""

    id: str
    title: str
    stages: list[str]
    reached: int | None  # index into stages
    positive: int
    negative: int


def person_indicators(
    state: ProjectionState, person: str, viewer: str, shown: Review
) -> list[IndicatorView]:
    """The person's live indicators the viewer may see (the feed's visibility rule)."""
    resolver = SubjectResolver(state, viewer)
    found = []
    for indicator_id in state.person(person).indicators:
        node = state.indicators.get(indicator_id)
        if node is None or node.event is PLACEHOLDER:
            continue
        subject = resolver.visible_subject(indicator_id)
        if subject is None or subject.owner != person:
            continue
        seen = [o for o in shown.observations if o.indicator == indicator_id]
        stages = [o.stage for o in seen if o.stage is not None and o.stage < len(subject.stages)]
        found.append(
            IndicatorView(
                id=indicator_id,
                title=subject.title or "",
                stages=list(subject.stages),
                reached=max(stages) if stages else None,
                positive=sum(1 for o in seen if o.polarity == "positive"),
                negative=sum(1 for o in seen if o.polarity == "negative"),
            )
        )
    return found
