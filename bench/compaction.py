"""Compaction (``projections.compact``): the memory a state's events take as objects and
as rows, and what reading rows costs the views.

One run, two passes over the same generated history (1M events; ``--quick``: 100,000):

1. the fold, then every view (``core.every_view``: goal trees, drift, each team's feed
   and board) and each team's board alone, with the state's events as objects; then
   ``compact``, timed; then the same views again on the compacted state;
2. the fold again under ``tracemalloc``: the bytes the state holds, before and after
   ``compact``, and those of the compacted state loaded from its snapshot;
3. the state's snapshot (``projections.persist``) as objects and compacted (its rows
   kept as columns): the bytes, and the time to load each.

Prints one ``figure:`` line per figure at the end; the ratios compare the compacted
state against the same state before its compaction, in the same run.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events
from bench.core import every_view
from milepost_testkit.history import history_bytes
from projections import persist
from projections.compact import HeldEvents, compact, held_as_rows
from projections.state import ProjectionState, apply
from projections.team import team_board

NOW = datetime.fromisoformat("2026-12-31T18:00:00+00:00")


def folded(data: list[bytes]) -> ProjectionState:
    state = ProjectionState()
    for event in events.decode_many(data):
        apply(state, event)
    return state


def views_seconds(state: ProjectionState) -> float:
    state.memo.clear()
    began = time.perf_counter()
    every_view(state, NOW)
    seconds = time.perf_counter() - began
    state.memo.clear()
    return seconds


def boards_ms(state: ProjectionState) -> list[float]:
    """Each team's board as its first member sees it, computed from nothing (no memo)."""
    times = []
    for team in sorted({team for team, _ in state.memberships}):
        members = sorted(state.members_of(team))
        if not members:
            continue
        state.memo.clear()
        began = time.perf_counter()
        team_board(state, team, members[0], NOW)
        times.append((time.perf_counter() - began) * 1000)
    state.memo.clear()
    return times


def load_seconds(blob: bytes) -> float:
    """Decoding a snapshot into a state (``persist.decode``), the faster of two."""
    times = []
    for _ in range(2):
        began = time.perf_counter()
        loaded = persist.decode(blob)
        times.append(time.perf_counter() - began)
        del loaded
        gc.collect()
    return min(times)


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def read_costs_us(state: ProjectionState, samples: int = 20_000) -> tuple[float, float]:
    """µs to make one row's event again, and to find a row by id (``events.get``)."""
    held = state.events
    assert isinstance(held, HeldEvents)
    rows = held.rows
    step = max(1, len(rows) // samples)
    picked = range(0, len(rows), step)
    ids = [rows.id_of(row) for row in picked]
    began = time.perf_counter()
    for row in picked:
        rows.event(row)
    made = (time.perf_counter() - began) / len(picked) * 1e6
    get = held.get
    began = time.perf_counter()
    for event_id in ids:
        get(event_id)
    found = (time.perf_counter() - began) / len(ids) * 1e6
    return made, found - made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1M")
    args = parser.parse_args()
    size = 100_000 if args.quick else 1_000_000
    print(f"loading a generated history of about {size:,} events (cached in bench/data/)")
    data = history_bytes(target_events=size)

    gc.disable()  # the state is long-lived: collections would only time its traversal
    state = folded(data)
    count = len(state.events)
    views_objects = views_seconds(state)
    boards_objects = boards_ms(state)
    fields = persist.Follower(count)
    snapshot_objects = persist.encode(state, fields)
    load_objects = load_seconds(snapshot_objects)
    began = time.perf_counter()
    moved = compact(state)
    compaction = time.perf_counter() - began
    snapshot_rows = persist.encode(state, fields)
    load_rows = load_seconds(snapshot_rows)
    len_objects = len(snapshot_objects)
    del snapshot_objects
    views_rows = views_seconds(state)
    boards_rows = boards_ms(state)
    made_us, find_us = read_costs_us(state)
    print(
        f"{count:,} events folded, {moved:,} moved into rows in {compaction:.2f} s; "
        f"every view {views_objects:.2f} s as objects, {views_rows:.2f} s compacted"
    )
    del state
    gc.collect()

    tracemalloc.start()
    state = folded(data)
    del data
    gc.collect()
    as_objects = tracemalloc.get_traced_memory()[0]
    compact(state)
    gc.collect()
    as_rows = tracemalloc.get_traced_memory()[0]
    rows = held_as_rows(state)
    del state
    gc.collect()
    before_load = tracemalloc.get_traced_memory()[0]
    loaded = persist.decode(snapshot_rows)
    gc.collect()
    as_loaded = tracemalloc.get_traced_memory()[0] - before_load
    del loaded
    tracemalloc.stop()
    gc.enable()

    print(f"figure: events = {count} events")
    print(f"figure: events_held_as_rows = {rows} events")
    print(f"figure: state_bytes_per_event_as_objects = {as_objects / count:.0f} B")
    print(f"figure: state_bytes_per_event_compacted = {as_rows / count:.0f} B")
    print(f"figure: state_bytes_compacted_vs_objects = {as_rows / as_objects:.3f} ratio")
    print(f"figure: state_bytes_per_event_loaded_compacted = {as_loaded / count:.0f} B")
    print(f"figure: compaction_seconds = {compaction:.2f} s")
    print(f"figure: compaction_per_event_moved = {compaction / max(1, moved) * 1e6:.2f} us")
    print(f"figure: every_view_seconds_as_objects = {views_objects:.2f} s")
    print(f"figure: every_view_seconds_compacted = {views_rows:.2f} s")
    print(f"figure: every_view_compacted_vs_objects = {views_rows / views_objects:.3f} ratio")
    print(f"figure: board_from_nothing_p50_as_objects = {statistics.median(boards_objects):.1f} ms")
    print(f"figure: board_from_nothing_p99_as_objects = {p99(boards_objects):.1f} ms")
    print(f"figure: board_from_nothing_p50_compacted = {statistics.median(boards_rows):.1f} ms")
    print(f"figure: board_from_nothing_p99_compacted = {p99(boards_rows):.1f} ms")
    print(
        "figure: board_from_nothing_compacted_vs_objects = "
        f"{statistics.median(boards_rows) / statistics.median(boards_objects):.3f} ratio"
    )
    print(f"figure: snapshot_mb_as_objects = {len_objects / 1e6:.1f} MB")
    print(f"figure: snapshot_mb_compacted = {len(snapshot_rows) / 1e6:.1f} MB")
    print(f"figure: snapshot_load_seconds_as_objects = {load_objects:.2f} s")
    print(f"figure: snapshot_load_seconds_compacted = {load_rows:.2f} s")
    print(f"figure: snapshot_load_compacted_vs_objects = {load_rows / load_objects:.3f} ratio")
    print(f"figure: make_one_row_event_again = {made_us:.2f} us")
    print(f"figure: find_one_row_by_id = {find_us:.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
