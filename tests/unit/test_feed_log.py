"""The feed log (``projections.feed_log``): positions and ids of feed-type events, packed,
given back exactly and in position order, through bytes too."""

from __future__ import annotations

import sys

import pytest

from projections.feed_log import FeedLog


def _id(number: int) -> str:
    return f"0190a000-0000-7000-8000-{number:012x}"


def test_entries_come_back_in_position_order_with_their_ids() -> None:
    log = FeedLog()
    for position in (3, 5, 9):
        log.add(position, _id(position))
    log.add(4, _id(4))  # a foreign root's event, folded late: put in its place
    log.add(9, _id(10))  # the same position twice keeps both, in the order added
    assert log.entries() == [(3, _id(3)), (4, _id(4)), (5, _id(5)), (9, _id(9)), (9, _id(10))]
    assert list(log.after(4)) == [(5, _id(5)), (9, _id(9)), (9, _id(10))]
    assert list(log.after(9)) == []
    assert len(log) == 5


def test_the_log_loads_from_its_bytes_in_either_byte_order() -> None:
    log = FeedLog()
    for position in range(1, 300, 7):
        log.add(position, _id(position * 31))
    order, positions, ids = log.to_bytes()
    assert FeedLog.from_bytes(order, positions, ids).entries() == log.entries()
    other = "big" if sys.byteorder == "little" else "little"
    swapped = bytearray()
    for index in range(0, len(positions), 8):
        swapped += positions[index : index + 8][::-1]
    assert FeedLog.from_bytes(other, bytes(swapped), ids).entries() == log.entries()


@pytest.mark.parametrize(
    ("positions", "ids", "reason"),
    [
        ((1, 2), 1, "differ in length"),
        ((2, 1), 2, "not in order"),
    ],
)
def test_bytes_that_do_not_hold_together_are_refused(
    positions: tuple[int, ...], ids: int, reason: str
) -> None:
    log = FeedLog()
    for number in range(ids):
        log.add(number, _id(number))
    order, _, packed = log.to_bytes()
    raw = b"".join(position.to_bytes(8, sys.byteorder, signed=True) for position in positions)
    with pytest.raises(ValueError, match=reason):
        FeedLog.from_bytes(order, raw, packed)
    with pytest.raises(ValueError):
        FeedLog.from_bytes(order, raw[:-1], packed)  # not whole positions


@pytest.mark.parametrize("event_id", ["", "not-an-id", _id(1).upper(), _id(1)[:-1] + "g"])
def test_only_event_ids_are_taken(event_id: str) -> None:
    with pytest.raises(ValueError):
        FeedLog().add(1, event_id)
