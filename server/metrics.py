"""Counters the server keeps and their Prometheus text rendering."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from server.ingest import BatchReport
from server.snapshots.refresh import RefreshStats
from server.store.protocol import ServerStore
from server.working_set import WorkingSet


@dataclass
class IngestCounters:
    """Totals since this process started (Prometheus derives rates from them)."""

    batches: int = 0
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    failures: int = 0
    rate_limited: int = 0
    pull_refused: int = 0
    started_at: float = field(default_factory=time.time)

    def add(self, report: BatchReport) -> None:
        """Count one ingest round."""
        if report.fetched:
            self.batches += 1
        self.fetched += report.fetched
        self.stored += report.stored
        self.duplicates += report.duplicates
        self.dead_lettered += report.dead_lettered
        self.rate_limited += report.rate_limited


@dataclass
class SnapshotStats:
    """What /metrics reports about snapshots."""

    position: int | None = None
    """Position of the newest snapshot this process took or loaded."""
    taken_at: float | None = None
    """Wall time (epoch s) that snapshot was taken."""
    load_seconds: float | None = None
    """How long loading the snapshot at start took (None: no snapshot was loaded)."""
    loaded_position: int | None = None
    taken: int = 0
    skipped: int = 0
    """Snapshots found invalid at start (corrupt, another fold, another store)."""
    last_take_seconds: float | None = None
    last_size: int | None = None


class DeadLetterCount:
    """Counts the store's dead letters incrementally (by id, never a full scan twice)."""

    def __init__(self) -> None:
        self._after = 0
        self.total = 0

    async def refresh(self, store: ServerStore) -> int:
        """Read dead letters added since the last call; return the total."""
        while True:
            page = await store.dead_letters(self._after, 1000)
            if not page:
                return self.total
            self.total += len(page)
            self._after = page[-1].id


def _line(name: str, kind: str, help_text: str, value: float | int | None) -> list[str]:
    if value is None:
        return []
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]


async def render(
    store: ServerStore,
    ingest: IngestCounters,
    dead: DeadLetterCount,
    projection_position: int,
    consumer_lag: Callable[[], Awaitable[int | None]] | None,
    snapshots: SnapshotStats | None = None,
    working_set: WorkingSet | None = None,
    partition_refreshes: RefreshStats | None = None,
) -> str:
    """The Prometheus text exposition of the server's state."""
    stored = await store.max_position()  # positions are dense: the last one is the count
    dead_total = await dead.refresh(store)
    lag = await consumer_lag() if consumer_lag is not None else None
    lines: list[str] = []
    lines += _line("milepost_events_stored", "gauge", "Events in the store.", stored)
    lines += _line(
        "milepost_dead_letters", "gauge", "Messages in the dead-letter table.", dead_total
    )
    lines += _line(
        "milepost_ingest_batches_total", "counter", "Ingest batches processed.", ingest.batches
    )
    lines += _line(
        "milepost_ingest_messages_total", "counter", "Messages fetched by ingest.", ingest.fetched
    )
    lines += _line(
        "milepost_ingest_stored_total", "counter", "New events stored by ingest.", ingest.stored
    )
    lines += _line(
        "milepost_ingest_duplicates_total",
        "counter",
        "Messages whose event was already stored.",
        ingest.duplicates,
    )
    lines += _line(
        "milepost_ingest_dead_lettered_total",
        "counter",
        "Messages dead-lettered by ingest.",
        ingest.dead_lettered,
    )
    lines += _line(
        "milepost_ingest_rate_limited_total",
        "counter",
        "Messages refused by the per-person rate limits (dead-lettered, retryable).",
        ingest.rate_limited,
    )
    lines += _line(
        "milepost_pull_refused_total",
        "counter",
        "Pull requests dropped or refused (a reply subject not the asker's, too many waiting).",
        ingest.pull_refused,
    )
    lines += _line(
        "milepost_ingest_failures_total", "counter", "Ingest rounds that failed.", ingest.failures
    )
    lines += _line(
        "milepost_consumer_lag", "gauge", "Messages not yet acknowledged by the consumer.", lag
    )
    lines += _line(
        "milepost_projection_position",
        "gauge",
        "Store position the in-memory projections reflect.",
        projection_position,
    )
    lines += _line(
        "milepost_projection_lag",
        "gauge",
        "Stored events not yet folded into the projections.",
        max(0, stored - projection_position),
    )
    if snapshots is not None:
        lines += _snapshot_lines(snapshots)
    if working_set is not None:
        lines += _working_set_lines(working_set)
    if partition_refreshes is not None:
        lines += _refresh_lines(partition_refreshes)
    return "\n".join(lines) + "\n"


def _refresh_lines(stats: RefreshStats) -> list[str]:
    lines: list[str] = []
    lines += _line(
        "milepost_partition_snapshot_refreshes_total",
        "counter",
        "Runs of the child process that snapshots every stale partition.",
        stats.runs,
    )
    lines += _line(
        "milepost_partition_snapshot_refresh_failures_total",
        "counter",
        "Of those, runs that failed (the log says why).",
        stats.failures,
    )
    lines += _line(
        "milepost_partition_snapshots_refreshed_total",
        "counter",
        "Partition snapshots those runs took.",
        stats.taken,
    )
    lines += _line(
        "milepost_partition_snapshot_refresh_seconds_total",
        "counter",
        "Seconds those runs took.",
        round(stats.seconds, 3),
    )
    age = None if stats.succeeded_at is None else max(0.0, time.time() - stats.succeeded_at)
    lines += _line(
        "milepost_partition_snapshot_refresh_age_seconds",
        "gauge",
        "Seconds since the last good run: every partition's snapshot was fresh then.",
        None if age is None else round(age, 3),
    )
    lines += _line(
        "milepost_partition_snapshot_most_behind_events",
        "gauge",
        "After the last good run, the events the stalest partition snapshot was behind.",
        stats.most_behind,
    )
    return lines


def _working_set_lines(working_set: WorkingSet) -> list[str]:
    lines: list[str] = []
    lines += _line(
        "milepost_working_set_partitions",
        "gauge",
        "Partitions (teams, people in none) held in memory.",
        working_set.loaded,
    )
    lines += _line(
        "milepost_working_set_events",
        "gauge",
        "Events the held partitions fold.",
        working_set.held_events,
    )
    lines += _line(
        "milepost_working_set_budget_events",
        "gauge",
        "Events the memory budget allows (--memory-budget at ~0.9 KB per event).",
        working_set.budget_events,
    )
    lines += _line(
        "milepost_working_set_rows",
        "gauge",
        "Events the loaded partitions hold as rows of columns, not objects (compacted).",
        working_set.held_rows,
    )
    lines += _line(
        "milepost_working_set_compactions_total",
        "counter",
        "Compactions of loaded partitions (after a load as objects, then every 5,000 events).",
        working_set.compactions,
    )
    lines += _line(
        "milepost_working_set_compactions_pending",
        "gauge",
        "Compactions queued or under way (each waits for a second without loads).",
        working_set.compactor.pending(),
    )
    lines += _line(
        "milepost_working_set_loads_total",
        "counter",
        "Partitions folded from the store on demand.",
        working_set.loads,
    )
    lines += _line(
        "milepost_working_set_evictions_total",
        "counter",
        "Partitions dropped (over the budget, or a team that gained a member).",
        working_set.evictions,
    )
    lines += _line(
        "milepost_working_set_load_seconds_total",
        "counter",
        "Seconds spent folding partitions on demand.",
        round(working_set.load_seconds, 3),
    )
    lines += _line(
        "milepost_working_set_snapshot_loads_total",
        "counter",
        "Partitions loaded from a snapshot of their own (then only the events after it).",
        working_set.snapshot_loads,
    )
    lines += _line(
        "milepost_working_set_snapshots_taken_total",
        "counter",
        "Snapshots of partitions taken (after a load, or when the budget dropped one).",
        working_set.snapshots_taken,
    )
    return lines


def _snapshot_lines(stats: SnapshotStats) -> list[str]:
    age = None if stats.taken_at is None else round(max(0.0, time.time() - stats.taken_at), 3)
    lines: list[str] = []
    lines += _line(
        "milepost_snapshot_position",
        "gauge",
        "Store position of the newest snapshot this process took or started from.",
        stats.position,
    )
    lines += _line(
        "milepost_snapshot_age_seconds", "gauge", "Seconds since that snapshot was taken.", age
    )
    lines += _line(
        "milepost_snapshot_load_seconds",
        "gauge",
        "Seconds the start took to load its snapshot (absent: it folded every event).",
        stats.load_seconds,
    )
    lines += _line(
        "milepost_snapshots_taken_total", "counter", "Snapshots this process took.", stats.taken
    )
    lines += _line(
        "milepost_snapshots_skipped_total",
        "counter",
        "Snapshots found invalid at start (corrupt, another fold, another store).",
        stats.skipped,
    )
    lines += _line(
        "milepost_snapshot_take_seconds",
        "gauge",
        "Seconds the last snapshot took to encode.",
        stats.last_take_seconds,
    )
    lines += _line(
        "milepost_snapshot_bytes", "gauge", "Size of the last snapshot taken.", stats.last_size
    )
    return lines
