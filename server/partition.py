"""One working-set partition: the projection state of a set of people, how stored events
fold into it, and how it is encoded as a snapshot (``server.working_set`` holds them)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from events import AnyEvent, CodecError, Event, decode
from events import bodies as b
from projections import persist
from projections.feed_log import FeedLog
from projections.state import FEED_TYPES, ProjectionState, apply
from server.snapshots import service as snapshotting
from server.store.protocol import StoredEvent


def split_key(key: str) -> tuple[str, str] | None:
    """(kind, name) of a partition key, ``team:NAME`` or ``person:NAME`` (as ``team_key`` and
    ``person_key`` make them); None if ``key`` is not one."""
    kind, _, name = key.partition(":")
    return (kind, name) if kind in ("team", "person") and name else None


@dataclass(eq=False)
class Partition:
    """The projection state of one set of people, at the follower's position."""

    key: str
    people: frozenset[str]
    state: ProjectionState = field(default_factory=ProjectionState)
    feed: FeedLog = field(default_factory=FeedLog)
    foreign_roots: set[str] = field(default_factory=set)
    """Roots of someone outside the partition that a member's kudos names a completion in:
    their events are folded too (the feed shows a kudos with what it names)."""
    kudos_given: bool = False
    """A member's kudos was folded since the last ``adopt_foreign``."""
    since_snapshot: int = 0
    """Events folded since the state was last snapshotted (or loaded from one)."""
    since_compaction: int = 0
    """Events folded since the state was last compacted (``projections.compact``)."""
    dropped_at: int | None = None
    """The position the budget dropped it at (it is whole up to there)."""
    discarded: bool = False
    """Dropped for being incomplete or wrong: never snapshotted."""

    def fold(self, position: int, event: AnyEvent) -> None:
        """Judge and fold one event; keep a feed-type event's position for the live feed."""
        self.since_snapshot += 1
        self.since_compaction += 1
        if apply(self.state, event) and isinstance(event, Event) and event.type in FEED_TYPES:
            self.feed.add(position, event.id)  # a foreign root's can come late
            if type(event.body) is b.KudosGiven and event.actor in self.people:
                self.kudos_given = True

    def feed_events_after(self, position: int) -> Iterator[tuple[int, str]]:
        """(position, event id) of the feed-type events folded after ``position``, in order."""
        return self.feed.after(position)

    @property
    def size(self) -> int:
        """Events held (whatever their verdict): what the budget counts."""
        return self.state.event_count()


def decoded(item: StoredEvent) -> AnyEvent | None:
    try:
        return decode(item.raw)
    except CodecError:  # validated at ingest; a decoder change must not stop a load
        return None


def fold_all(partition: Partition, stored: Sequence[StoredEvent]) -> None:
    for item in stored:
        event = decoded(item)
        if event is not None:
            partition.fold(item.position, event)


_pauses = 0
_collecting_before = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a load allocates a partition (entered
    and left on the event loop; loads at once share one pause), then freeze what the
    young generations hold, as the start does after its fold (``gc.freeze``).

    A partition's objects are long-lived and form no cycles (dropped, they are freed by
    their counts): collections during a load only rescan the growing heap (a team's
    snapshot decoded in 0.55-0.63 s with them, 0.37 s without), and each full collection
    after it would scan every partition held again (0.12 s per ten teams, on any request).
    """
    global _pauses, _collecting_before
    if _pauses == 0:
        _collecting_before = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _collecting_before:
            gc.collect(1)  # the young garbage first (cheap): never frozen
            gc.freeze()
            gc.enable()


async def encoded(partition: Partition, position: int) -> list[bytes]:
    """The partition's snapshot at ``position`` (its state must not change meanwhile), in
    pieces; between pieces (a few ms each) the event loop answers requests."""
    fields = persist.Follower(
        position,
        0,
        partition.feed,
        sorted(partition.people),
        sorted(partition.foreign_roots),
    )
    pieces = await snapshotting.encode_yielding(partition.state, fields)
    partition.since_snapshot = 0
    return pieces


def holds(state: ProjectionState, event_id: str) -> bool:
    return event_id in state.events or event_id in state.pending or event_id in state.refused
