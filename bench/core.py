"""Core benchmark: decode + rebuild of every view vs msgspec's bare decode, and incremental folds.

Run ``python bench/core.py`` (about 1,000,000 events) or ``--quick`` (100,000).
Prints one ``figure:`` line per figure at the end. Ratios compare against a
baseline measured in the same run, so a noisy shared machine moves both.

``board_after_an_event_*``: one team's board read after each new check-in by anyone, as a
server answers between ingests; the baseline computes every sub-view again each time.

Memory, two ways: ``peak_rss_during_rebuild`` is this process's peak while it holds every
event's bytes (the input, ~400 MB at 1M) and the state; ``peak_rss_streamed_rebuild`` is
the peak of a second rebuild that reads the input a page of 5,000 lines at a time, as the
server reads the store, and ``streamed_rebuild_growth_per_1m_events`` what that rebuild
added to the process (the state and every view, per million events).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events
from events import bodies as b
from milepost_testkit.history import history_bytes, history_path
from projections.drift import drift_signals
from projections.goals import goal_tree
from projections.state import ProjectionState, apply
from projections.team import team_board, team_feed


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_decode_rate(data: list[bytes]) -> float:
    """Events/s of msgspec decoding the same bytes into the Event type, nothing else."""
    decoder = msgspec.json.Decoder(events.Event)
    decode = decoder.decode
    began = time.perf_counter()
    for item in data:
        decode(item)
    return len(data) / (time.perf_counter() - began)


def every_view(state: ProjectionState, now: datetime) -> int:
    """Compute every view once: goal trees and drift of everyone, each team's feed and board."""
    people = sorted(p for p in state.people if p != "admin")
    teams = sorted({team for team, _ in state.memberships})
    produced = 0
    for person in people:
        produced += len(goal_tree(state, person, now).objectives)
        produced += len(drift_signals(state, person, now))
    for team in teams:
        members = sorted(state.members_of(team))
        if not members:
            continue
        produced += len(team_feed(state, team, members[0], limit=50).items)
        produced += len(team_board(state, team, members[0], now).members)
    return produced


def rebuild_from_bytes(
    data: list[bytes], now: datetime
) -> tuple[ProjectionState, float, float, int]:
    """Decode and fold every event, then compute every view once.

    Returns (state, seconds to decode + fold, seconds for every view, rows produced).
    """
    began = time.perf_counter()
    state = ProjectionState()
    for event in events.decode_many(data):  # as the client and the server rebuild
        apply(state, event)
    folded = time.perf_counter()
    produced = every_view(state, now)
    return state, folded - began, time.perf_counter() - folded, produced


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux: ``clear_refs`` 5); say whether it was."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_since_reset_mb() -> float:
    """VmHWM: the peak resident memory since the last ``reset_peak_rss``, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def rss_now_mb() -> float:
    """VmRSS: this process's resident memory now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def streamed_rebuild_peak_mb(path: Path, now: datetime, page: int = 5_000) -> tuple[float, float]:
    """(peak RSS, RSS just before) of a rebuild that reads its input a page at a time, as
    the server reads ``events_after`` pages (never every event's bytes at once): decode +
    fold + every view."""
    gc.collect()
    before = rss_now_mb()
    if not reset_peak_rss():
        return float("nan"), before
    state = ProjectionState()
    gc.disable()
    try:
        with path.open("rb") as lines:
            while True:
                chunk = [line.rstrip(b"\n") for _, line in zip(range(page), lines, strict=False)]
                if not chunk:
                    break
                for event in events.decode_many(chunk):
                    apply(state, event)
        every_view(state, now)
    finally:
        gc.enable()
    return peak_rss_since_reset_mb(), before


def fresh_checkins(state: ProjectionState, count: int) -> list[events.Event]:
    """New check-ins on existing subjects, later than anything in the history."""
    latest = max(event.recorded_at for event in state.events.values())
    clock = max(event.clock for event in state.events.values())
    subjects = [(kr, node.event.actor) for kr, node in list(state.key_results.items())[:200]]
    made = []
    for i in range(count):
        subject, owner = subjects[i % len(subjects)]
        moment = latest + timedelta(seconds=i + 1)
        made.append(
            events.Event(
                id=events.new_event_id(int(moment.timestamp() * 1000)),
                actor=owner,
                device="bench",
                clock=clock + i + 1,
                recorded_at=moment,
                occurred_at=moment,
                body=b.CheckInRecorded(subject=subject, confidence="at-risk", value=float(i)),
            )
        )
    return made


def incremental_fold_us(state: ProjectionState, samples: int = 2000) -> float:
    """Median µs to fold one new event into existing state."""
    new = fresh_checkins(state, samples)
    timings = []
    clock = time.perf_counter_ns
    for event in new:
        began = clock()
        apply(state, event)
        timings.append(clock() - began)
    return statistics.median(timings) / 1000


def board_after_events_ms(
    state: ProjectionState, now: datetime, samples: int = 200, *, keep_memo: bool = True
) -> tuple[float, float]:
    """(p50, p99) ms of one team's board read after each of ``samples`` new check-ins by
    people all over the state, as a server answers between ingests. ``keep_memo=False`` is
    the baseline: every sub-view computed again (as when any event cleared them all)."""
    team = min({team for team, _ in state.memberships})
    viewer = min(state.members_of(team))
    team_board(state, team, viewer, now)
    timings = []
    for event in fresh_checkins(state, samples):
        apply(state, event)
        if not keep_memo:
            state.memo.clear()
        began = time.perf_counter()
        team_board(state, team, viewer, now)
        timings.append(time.perf_counter() - began)
    timings.sort()
    return timings[len(timings) // 2] * 1000, timings[int(len(timings) * 0.99)] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1M")
    args = parser.parse_args()
    size = 100_000 if args.quick else 1_000_000
    small = 10_000

    print(f"loading a generated history of about {size:,} events (cached in bench/data/)")
    data = history_bytes(target_events=size)
    small_data = history_bytes(people=10, teams=2, target_events=small)
    now = datetime.fromisoformat("2026-12-31T18:00:00+00:00")
    gc.collect()
    rss_before = peak_rss_mb()

    bare = bare_decode_rate(data)
    print(f"bare msgspec decode: {bare:,.0f} events/s over {len(data):,} events")

    gc.disable()  # a rebuild allocates millions of long-lived objects; gc passes only cost
    try:
        state, fold_seconds, view_seconds, produced = rebuild_from_bytes(data, now)
    finally:
        gc.enable()
    seconds = fold_seconds + view_seconds
    size_read = len(data)
    rate = size_read / seconds
    fold_rate = size_read / fold_seconds
    rss_peak = peak_rss_mb()
    print(
        f"decode + fold: {fold_seconds:.2f} s ({fold_rate:,.0f} events/s); every view of "
        f"every person and team once: {view_seconds:.2f} s ({produced} rows)"
    )

    # A fresh state per measurement would cost a rebuild each: the baseline first, on
    # check-ins later than any other, then the same count again with sub-views kept.
    gc.freeze()  # the state is long-lived: collections would only time its traversal
    cleared_p50, cleared_p99 = board_after_events_ms(state, now, keep_memo=False)
    kept_p50, kept_p99 = board_after_events_ms(state, now)
    gc.unfreeze()
    big_fold = incremental_fold_us(state)
    del state, data
    gc.collect()
    streamed_peak, streamed_base = streamed_rebuild_peak_mb(history_path(target_events=size), now)
    per_million = (streamed_peak - streamed_base) * 1e6 / size
    small_state, _, _, _ = rebuild_from_bytes(small_data, now)
    small_fold = incremental_fold_us(small_state)
    print(
        f"incremental fold: {small_fold:.2f} µs at {len(small_data):,}, "
        f"{big_fold:.2f} µs at {size_read:,}"
    )

    print(f"figure: events = {size_read} events")
    print(f"figure: bare_decode_rate = {bare:.0f} events/s")
    print(f"figure: decode_fold_rate = {fold_rate:.0f} events/s")
    print(f"figure: decode_fold_vs_bare_decode = {fold_rate / bare:.3f} ratio")
    print(f"figure: all_views_seconds = {view_seconds:.2f} s")
    print(f"figure: rebuild_rate = {rate:.0f} events/s")
    print(f"figure: rebuild_seconds = {seconds:.2f} s")
    print(f"figure: rebuild_vs_bare_decode = {rate / bare:.3f} ratio")
    print(f"figure: fold_one_event_small_history = {small_fold:.2f} us")
    print(f"figure: fold_one_event_full_history = {big_fold:.2f} us")
    print(f"figure: fold_cost_full_vs_small = {big_fold / small_fold:.2f} ratio")
    print(f"figure: board_after_an_event_p50 = {kept_p50:.2f} ms")
    print(f"figure: board_after_an_event_p99 = {kept_p99:.2f} ms")
    print(f"figure: board_every_subview_again_p50 = {cleared_p50:.1f} ms")
    print(f"figure: board_every_subview_again_p99 = {cleared_p99:.1f} ms")
    kept_vs_cleared = kept_p99 / cleared_p99
    print(f"figure: board_after_an_event_vs_every_subview_again = {kept_vs_cleared:.3f} ratio")
    print(f"figure: peak_rss_during_rebuild = {rss_peak:.0f} MB")
    print(f"figure: rss_before_rebuild = {rss_before:.0f} MB")
    print(f"figure: peak_rss_streamed_rebuild = {streamed_peak:.0f} MB")
    print(f"figure: rss_before_streamed_rebuild = {streamed_base:.0f} MB")
    print(f"figure: streamed_rebuild_growth_per_1m_events = {per_million:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
