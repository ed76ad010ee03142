"""Indicators as a person reads them: the stage reached and the latest observations.

The current stage is the one named by the latest live positive observation
of the indicator's owner that names a stage (a setback does not move it: it
is shown among the latest observations). Pure: no I/O.
"""

from __future__ import annotations

from datetime import date

import msgspec

from events import bodies as b
from projections.state import PLACEHOLDER, ProjectionState

LATEST = 3
"""Observations shown per indicator."""


class ObservationLine(msgspec.Struct, frozen=True):
    id: str
    on: date
    text: str
    polarity: str
    stage: str | None


class IndicatorView(msgspec.Struct, frozen=True):
    id: str
    title: str
    stages: list[str]
    stage: int | None  # 1-based current stage, None before any evidence
    stage_name: str | None
    reached_on: date | None
    latest: list[ObservationLine]


def indicator_views(state: ProjectionState, person: str) -> list[IndicatorView]:
    """The person's live indicators, by title."""
    out = []
    for indicator_id in state.person(person).indicators:
        node = state.indicators[indicator_id]
        if node.event is PLACEHOLDER or state.is_retracted(indicator_id):
            continue
        body = state.body(indicator_id)
        assert isinstance(body, b.IndicatorDefined)
        stage: int | None = None
        reached_on: date | None = None
        lines: list[ObservationLine] = []
        for event in reversed(node.observations):
            observation_id = event.id
            if event.actor != node.event.actor or state.is_retracted(observation_id):
                continue
            seen = state.body(observation_id)
            assert isinstance(seen, b.ObservationRecorded)
            named = (
                body.stages[seen.stage]
                if seen.stage is not None and seen.stage < len(body.stages)
                else None
            )
            if len(lines) < LATEST:
                lines.append(
                    ObservationLine(
                        observation_id, event.occurred_at.date(), seen.text, seen.polarity, named
                    )
                )
            if stage is None and named is not None and seen.polarity == "positive":
                assert seen.stage is not None
                stage, reached_on = seen.stage + 1, event.occurred_at.date()
        out.append(
            IndicatorView(
                id=indicator_id,
                title=body.title,
                stages=list(body.stages),
                stage=stage,
                stage_name=body.stages[stage - 1] if stage is not None else None,
                reached_on=reached_on,
                latest=lines,
            )
        )
    out.sort(key=lambda v: (v.title.casefold(), v.id))
    return out
