"""Taking snapshots of the follower's state and starting from the newest valid one.

A snapshot is only ever a shortcut to the state a full fold gives: one that is corrupt
(its bytes do not match their digest), of another fold (``FOLD_VERSION``), of another
store (the event at its position is not the one it was taken after) or beyond the
store's end is skipped with a warning, and the next older one is tried; with none left
the follower folds every event as before. The state is swapped in only whole, before
the first request, so a view is never computed from a mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, NamedTuple

from projections import persist
from projections.state import ProjectionState
from server.snapshots.protocol import SnapshotInfo, SnapshotStore, in_parts, to_prune
from server.store.protocol import ServerStore

if TYPE_CHECKING:  # the working set, which the follower holds, loads snapshots too
    from server.metrics import SnapshotStats
    from server.projection import ProjectionFollower

log = logging.getLogger(__name__)

KEEP = 2
"""Snapshots of the current fold kept; older ones are deleted after each new one."""

KEEP_PER_PARTITION = 1
"""Of a working-set partition (one missing or corrupt means folding it from the store)."""


async def encode_yielding(
    state: ProjectionState, fields: persist.Follower, pause_every: int = 1
) -> list[bytes]:
    """``persist.encode_pieces`` on the event loop, yielding to it every ``pause_every``
    pieces (each one short msgspec call): requests go on meanwhile. The state must not
    change until it returns."""
    pieces: list[bytes] = []
    for count, piece in enumerate(persist.encode_pieces(state, fields), 1):
        pieces.append(piece)
        if count % pause_every == 0:
            await asyncio.sleep(0)
    return pieces


async def anchor_of(store: ServerStore, position: int) -> str | None:
    """The id of the event stored at ``position`` (None if there is none)."""
    if position <= 0:
        return "" if position == 0 else None
    rows = await store.events_after(position - 1, 1)
    return rows[0].id if rows and rows[0].position == position else None


async def why_invalid(store: ServerStore, info: SnapshotInfo) -> str | None:
    """Why a snapshot cannot be loaded by this code on this store (None: it may be)."""
    if info.fold_version != persist.FOLD_VERSION:
        return f"it is of fold {info.fold_version}, this server folds {persist.FOLD_VERSION}"
    anchor = await anchor_of(store, info.position)
    if anchor is None:
        return f"the store has no event at its position {info.position}"
    if anchor != info.anchor:
        return f"the store holds another event at its position {info.position}"
    return None


async def _decode_and_check(
    blob: bytes | bytearray, digest: str
) -> tuple[tuple[ProjectionState, persist.Follower] | None, str | None]:
    """Decode ``blob`` while its digest is computed beside it (hashing releases the GIL:
    on two cores the check costs no time); what was decoded is kept only if they match."""
    checking = asyncio.to_thread(persist.checksum, blob)
    decoding = asyncio.to_thread(persist.decode, blob)
    actual, loaded = await asyncio.gather(checking, decoding, return_exceptions=True)
    if isinstance(actual, BaseException):
        raise actual
    if actual != digest:
        return None, persist.CORRUPT
    if isinstance(loaded, persist.SnapshotInvalid):
        return None, str(loaded)
    if isinstance(loaded, BaseException):
        raise loaded
    return loaded, None


class Loaded(NamedTuple):
    """A snapshot decoded: what it is, its state and the follower fields beside it."""

    info: SnapshotInfo
    state: ProjectionState
    fields: persist.Follower


async def newest_valid(
    store: ServerStore, snapshots: SnapshotStore, partition: str = "", upto: int | None = None
) -> tuple[Loaded | None, int]:
    """The newest snapshot of ``partition`` ("": all history) this code can load on this
    store, at or before ``upto`` when given, decoded (None if there is none); and how many
    newer ones were skipped, each logged with its reason."""
    skipped = 0
    for info in await snapshots.listing(partition):
        if upto is not None and info.position > upto:
            continue  # taken by a replica further on: a state cannot be unfolded
        reason = await why_invalid(store, info)
        loaded: tuple[ProjectionState, persist.Follower] | None = None
        if reason is None:
            blob = await snapshots.blob(info.id)
            if blob is None:
                reason = "its bytes are gone"
            else:
                loaded, reason = await _decode_and_check(blob, info.checksum)
                del blob
        if loaded is not None and loaded[1].position != info.position:
            reason = f"it holds position {loaded[1].position}, not {info.position}"
            loaded = None
        if loaded is None:
            skipped += 1
            log.warning("snapshot %d at position %d ignored: %s", info.id, info.position, reason)
            if reason == persist.CORRUPT:
                # It can never be loaded: not read again, and a partition's refresh then
                # finds it missing and takes a new one.
                await snapshots.delete([info.id])
                log.warning("snapshot %d deleted: its bytes are corrupt", info.id)
            continue
        return Loaded(info, *loaded), skipped
    return None, skipped


async def load_newest(
    store: ServerStore, snapshots: SnapshotStore, follower: ProjectionFollower, stats: SnapshotStats
) -> SnapshotInfo | None:
    """Restore ``follower`` from the newest valid snapshot; None if there is none (the
    follower is then untouched and folds from the start)."""
    began = time.perf_counter()
    found, skipped = await newest_valid(store, snapshots)
    stats.skipped += skipped
    if found is None:
        if skipped:
            log.warning("no valid snapshot: folding every stored event")
        return None
    follower.restore(found.state, found.fields)
    stats.load_seconds = time.perf_counter() - began
    stats.position = stats.loaded_position = found.info.position
    stats.taken_at = found.info.taken_at.timestamp()
    return found.info


async def save(
    store: ServerStore,
    snapshots: SnapshotStore,
    pieces: list[bytes],
    position: int,
    seconds: float,
    partition: str = "",
) -> SnapshotInfo | None:
    """Store the encoded ``pieces`` of a state at ``position`` (emptied as they go) and prune
    the older snapshots of ``partition``; None if the store no longer has that position."""
    anchor = await anchor_of(store, position)
    if anchor is None:
        return None  # the store lost events the state folded: never keep that
    parts = await asyncio.to_thread(in_parts, pieces)
    digest = await asyncio.to_thread(persist.checksum_parts, parts)
    info = await snapshots.save(
        position, anchor, persist.FOLD_VERSION, digest, parts, seconds, partition
    )
    del parts
    keep = KEEP if not partition else KEEP_PER_PARTITION
    with contextlib.suppress(Exception):
        listed = await snapshots.listing(partition)
        await snapshots.delete(to_prune(listed, persist.FOLD_VERSION, keep))
    return info


async def take(
    store: ServerStore, snapshots: SnapshotStore, follower: ProjectionFollower, stats: SnapshotStats
) -> SnapshotInfo | None:
    """Snapshot the follower's state now and prune old ones; None when there is nothing
    new to keep (the newest snapshot of this fold is already at this position)."""
    began = time.perf_counter()
    pieces, position = await follower.snapshot()
    info = await save(store, snapshots, pieces, position, time.perf_counter() - began)
    if info is None:
        return None
    stats.position, stats.taken_at = info.position, info.taken_at.timestamp()
    stats.taken += 1
    stats.last_take_seconds, stats.last_size = info.seconds, info.size
    return info


async def newest_position(snapshots: SnapshotStore) -> int:
    """Position of the newest snapshot of this fold in the store (any replica's); 0 if none."""
    for info in await snapshots.listing():
        if info.fold_version == persist.FOLD_VERSION:
            return info.position
    return 0


async def run_periodically(
    store: ServerStore,
    snapshots: SnapshotStore,
    follower: ProjectionFollower,
    stats: SnapshotStats,
    stop: asyncio.Event,
    *,
    every_events: int,
    every_seconds: float,
    check_interval: float = 5.0,
) -> None:
    """Take a snapshot once ``every_events`` events were folded since the newest one in
    the store, or ``every_seconds`` passed with any, or at once when the store has none
    of this fold, until ``stop``. Replicas sharing a store see each other's snapshots,
    so they do not all take one."""
    last_check = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), check_interval)
        if stop.is_set():
            return
        try:
            newest = await newest_position(snapshots)
            behind = follower.position - newest
            due = behind > 0 and (
                behind >= every_events
                or newest == 0  # none of this fold yet (a first start, or after an upgrade)
                or time.monotonic() - last_check >= every_seconds
            )
            if due:
                info = await take(store, snapshots, follower, stats)
                last_check = time.monotonic()
                if info is not None:
                    log.info("snapshot %d at position %d", info.id, info.position)
            elif behind <= 0:
                last_check = time.monotonic()
        except Exception:
            log.exception("taking a snapshot failed; trying again later")
