"""The health ``milepost status`` shows: the one health rule (``projections.health``) over
the stored views, with the drift of the roots that can drift kept per day (``meta``)."""

from __future__ import annotations

import contextlib
from datetime import date, datetime
from typing import TYPE_CHECKING

import msgspec

from client.errors import StoreError
from client.store import Store
from client.views import stored_state
from projections.drift import DriftSignal
from projections.goals import GoalTree
from projections.state import ProjectionState

if TYPE_CHECKING:
    from projections.health import Health
    from projections.settings import DriftSettings


def drifting_roots(tree: GoalTree, today: date) -> list[str]:
    """The roots of ``tree`` drift can say something about an item of: an objective of a
    current cycle or with an open milestone, an open standalone milestone. (A root with
    nothing open in a past or future cycle has no item drift: folding it is wasted.)"""
    roots = [
        o.id
        for o in tree.objectives
        if o.starts_on <= today <= o.ends_on
        or any(m.state == "open" for m in o.milestones)
        or any(m.state == "open" for kr in o.key_results for m in kr.milestones)
    ]
    return roots + [m.id for m in tree.standalone_milestones if m.state == "open"]


_DRIFT_CACHE = "health.drift"
"""Meta key of the drift signals ``status`` last computed, with what they depend on."""


class _DriftCache(msgspec.Struct):
    key: str
    signals: list[DriftSignal]


async def stored_health(
    store: Store, person: str, tree: GoalTree, now: datetime, settings: DriftSettings
) -> dict[str, Health]:
    """Health of every item of the person's tree, as ``milepost status`` shows it: the one
    rule of the board and the page, with drift from the stored slices of the roots that
    can drift.

    Drift depends only on the events, the day, the settings and the roots folded: the
    signals are kept under that key (in ``meta``), so a second ``status`` on the same day
    with nothing new folds nothing."""
    from projections.drift import drift_signals
    from projections.health import tree_health

    roots = drifting_roots(tree, now.date())
    last = await store.scalar("SELECT coalesce(max(seq), 0) FROM events")
    key = "|".join(
        (person, str(last), now.date().isoformat(), msgspec.json.encode(settings).decode(), *roots)
    )
    signals: list[DriftSignal] | None = None
    for (held,) in await store.fetchall("SELECT value FROM meta WHERE key = ?", (_DRIFT_CACHE,)):
        try:
            cached = msgspec.json.decode(held, type=_DriftCache)
        except msgspec.ValidationError:  # written by another version: recompute
            continue
        if cached.key == key:
            signals = cached.signals
    if signals is None:
        state = await stored_state(store, person, roots)
        signals = drift_signals(state, person, now, settings)
        with contextlib.suppress(StoreError):  # a read-only database still shows status
            await store.set_meta(
                _DRIFT_CACHE, msgspec.json.encode(_DriftCache(key, signals)).decode()
            )
    return tree_health(
        tree.objectives, tree.standalone_milestones, now.date(), signals, settings=settings
    )


def health_of(
    state: ProjectionState, person: str, tree: GoalTree, now: datetime, settings: DriftSettings
) -> dict[str, Health]:
    """Health of every item of ``tree`` with the drift of ``person``'s own items in ``state``."""
    from projections.drift import drift_signals
    from projections.health import tree_health

    signals = drift_signals(state, person, now, settings)
    return tree_health(
        tree.objectives, tree.standalone_milestones, now.date(), signals, settings=settings
    )
