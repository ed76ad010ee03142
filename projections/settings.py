"""Thresholds of every drift rule in one place, with the defaults of
docs/contract.md#projections."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

Days = Annotated[int, Meta(ge=1, le=3650)]
Points = Annotated[float, Meta(ge=0, le=100)]
Count = Annotated[int, Meta(ge=0, le=1000)]


class DriftSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Configurable drift thresholds; staleness follows each goal's own cadence."""

    stale_warning_periods: Annotated[float, Meta(gt=0, le=52)] = 1.0
    stale_alert_periods: Annotated[float, Meta(gt=0, le=52)] = 2.0
    behind_pace_points: Points = 20.0
    overload_open_milestones: Count = 9
    underplanned_open_milestones: Count = 4
    slowdown_recent_weeks: Annotated[int, Meta(ge=1, le=52)] = 4
    slowdown_baseline_weeks: Annotated[int, Meta(ge=1, le=104)] = 8
    slowdown_ratio: Annotated[float, Meta(gt=0, le=1)] = 0.5
    unreviewed_days: Days = 30
    one_sided_observations: Annotated[int, Meta(ge=2, le=100)] = 5
    quiet_days: Days = 30
    due_soon_days: Days = 7

    def __post_init__(self) -> None:
        if self.stale_alert_periods < self.stale_warning_periods:
            raise ValueError("stale_alert_periods must be at least stale_warning_periods")


DEFAULT_SETTINGS = DriftSettings()
