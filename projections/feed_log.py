"""The store positions of the feed-type events a state folded, in order, and their ids:
what a live feed catches up from after a reconnect (``feed_events_after``).

One entry per feed-type event for the whole history a state holds (half of all events):
kept as a column of 8-byte positions and one of 16-byte ids rather than a list of int
objects and one of strings (~150 B an entry). Every folded event's id is a lowercase
UUID (``events.bodies.EventId``), so 16 bytes give it back exactly.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterator

from events.ids import id_text

_ID_BYTES = 16


def _packed(event_id: str) -> bytes:
    packed = bytes.fromhex(event_id.replace("-", ""))
    if len(packed) != _ID_BYTES or id_text(packed) != event_id:
        raise ValueError(f"not an event id: {event_id!r}")
    return packed


class FeedLog:
    """(store position, event id) of each feed-type event folded, sorted by position."""

    __slots__ = ("_ids", "_positions")

    def __init__(self) -> None:
        self._positions: array[int] = array("q")
        self._ids = bytearray()

    def __len__(self) -> int:
        return len(self._positions)

    def add(self, position: int, event_id: str) -> None:
        """Note a feed-type event folded from ``position`` (mostly the greatest yet; a
        foreign root's can come late and is put in its place)."""
        packed = _packed(event_id)
        positions = self._positions
        if not positions or position >= positions[-1]:
            positions.append(position)
            self._ids += packed
            return
        index = bisect.bisect(positions, position)
        positions.insert(index, position)
        self._ids[index * _ID_BYTES : index * _ID_BYTES] = packed

    def after(self, position: int) -> Iterator[tuple[int, str]]:
        """(position, event id) of the feed-type events folded after ``position``, in order."""
        positions, ids = self._positions, self._ids
        start = bisect.bisect_right(positions, position)
        for index in range(start, len(positions)):
            at = index * _ID_BYTES
            yield positions[index], id_text(bytes(ids[at : at + _ID_BYTES]))

    def entries(self) -> list[tuple[int, str]]:
        """Every entry, in order."""
        return list(self.after(-1))

    def to_bytes(self) -> tuple[str, bytes, bytes]:
        """This machine's byte order, the positions' bytes and the ids' (``from_bytes``)."""
        return sys.byteorder, self._positions.tobytes(), bytes(self._ids)

    @classmethod
    def from_bytes(cls, byteorder: str, positions: bytes, ids: bytes) -> FeedLog:
        """The log ``to_bytes`` gave; ``ValueError`` if they do not hold together."""
        log = cls()
        log._positions.frombytes(positions)
        if byteorder != sys.byteorder:
            log._positions.byteswap()
        if len(ids) != _ID_BYTES * len(log._positions):
            raise ValueError("feed positions and ids differ in length")
        if log._positions.tolist() != sorted(log._positions):
            raise ValueError("feed positions are not in order")
        log._ids = bytearray(ids)
        return log
