"""Paging through a backlog: full pages read with ``head`` together (``head_hint``) and
reveal checks deferred to the page that catches up must deliver exactly what careful
page-by-page checking delivers, both backends."""

from __future__ import annotations

import msgspec
import pytest

from events import Changes, Corrected, Event, ObjectiveCreated, SharingChanged, encode
from events.wire import PullRequest, decode_reply, encode_reply
from server.nats_embedded import events_subject
from server.pull import answer
from server.store.protocol import Incoming, ServerStore
from tests.services import EventMaker


async def put(store: ServerStore, *events: Event) -> None:
    result = await store.append_batch(
        [Incoming(encode(e), e, None, events_subject(e.actor, e.id)) for e in events]
    )
    assert len(result.stored) == len(events)


def _id(raw: bytes) -> str:
    return str(msgspec.json.decode(raw)["id"])


async def page_through(
    store: ServerStore, person: str, after: int, checked: int, *, hint: bool, limit: int = 3
) -> tuple[list[str], int, int, int]:
    """Page until caught up like a device (the hint as the responder keeps it); returns
    ids received, the cursor, ``checked`` and how many pages."""
    ids: list[str] = []
    head = await store.max_position() if hint else 0
    pages = 0
    while True:
        request = PullRequest(device="d", after=after, limit=limit, checked=checked)
        reply = await answer(store, person, request, head_hint=head)
        reply = decode_reply(encode_reply(reply))
        pages += 1
        head = max(head, reply.head) if hint else 0
        ids += [_id(w.raw) for w in reply.events]
        assert reply.next_after >= after or reply.rescan_from is not None
        after, checked = reply.next_after, reply.checked
        if not reply.more:
            return ids, after, checked, pages


@pytest.mark.parametrize("hint", [False, True])
async def test_a_share_made_during_a_backlog_still_delivers_its_history(
    store: ServerStore, make_event: EventMaker, hint: bool
) -> None:
    later = make_event("alice", ObjectiveCreated(title="Shared later", cycle="2026-Q1"))
    hidden = [
        make_event("alice", Corrected(target=later.id, changes=Changes(description="progress")))
        for _ in range(4)
    ]
    ours = make_event(
        "alice",
        ObjectiveCreated(title="Ours", cycle="2026-Q1", visibility="partners", partners=("bob",)),
    )
    seen = [
        make_event("alice", Corrected(target=ours.id, changes=Changes(description="progress")))
        for _ in range(12)
    ]
    await put(store, later, *hidden, ours, *seen)
    # Bob's device is at the start of the backlog, then alice shares the first goal:
    # its history lies before bob's cursor by the time he catches up.
    first = await answer(store, "bob", PullRequest(device="d", after=0, limit=3))
    assert [_id(w.raw) for w in first.events] == [ours.id, seen[0].id, seen[1].id]
    share = make_event(
        "alice", SharingChanged(subject=later.id, visibility="partners", partners=("bob",))
    )
    await put(store, share)
    ids, cursor, checked, _ = await page_through(
        store, "bob", first.next_after, first.checked, hint=hint
    )
    owed = {s.id for s in seen[2:]} | {later.id, *(h.id for h in hidden), share.id}
    everything = owed | {ours.id, seen[0].id, seen[1].id}
    assert owed <= set(ids) <= everything  # a rescan may resend what bob already holds
    assert cursor == checked == await store.max_position()
    again, _, _, _ = await page_through(store, "bob", cursor, checked, hint=hint)
    assert again == []  # the reveal was consumed


@pytest.mark.parametrize("hint", [False, True])
async def test_a_backlog_of_own_events_arrives_whole_and_in_order(
    store: ServerStore, make_event: EventMaker, hint: bool
) -> None:
    goal = make_event("alice", ObjectiveCreated(title="Mine", cycle="2026-Q1"))
    checks = [
        make_event("alice", Corrected(target=goal.id, changes=Changes(description="progress")))
        for _ in range(20)
    ]
    await put(store, goal, *checks)
    first = await answer(store, "alice", PullRequest(device="d", after=0, limit=3))
    ids, cursor, checked, _ = await page_through(
        store, "alice", first.next_after, first.checked, hint=hint
    )
    assert [_id(w.raw) for w in first.events] + ids == [goal.id, *(c.id for c in checks)]
    assert cursor == checked == 21
