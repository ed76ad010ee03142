"""Pull pages and reveals (visibility that widens after a device's cursor), both backends."""

from __future__ import annotations

from events import (
    Changes,
    CheckInRecorded,
    Corrected,
    Event,
    MilestonePlanned,
    ObjectiveCreated,
    SharingChanged,
    TeamMemberJoined,
    encode,
)
from events.wire import PullReply, PullRequest, decode_reply, encode_reply
from server.nats_embedded import events_subject
from server.pull import answer, pull_person
from server.store.protocol import Incoming, ServerStore
from tests.services import EventMaker


async def put(store: ServerStore, *events: Event) -> None:
    result = await store.append_batch(
        [Incoming(encode(e), e, None, events_subject(e.actor, e.id)) for e in events]
    )
    assert len(result.stored) == len(events)


def join(make: EventMaker, team: str, person: str) -> Event:
    return make("admin", TeamMemberJoined(team=team, person=person))


async def pull_all(
    store: ServerStore, person: str, after: int = 0, checked: int = 0
) -> tuple[list[str], int, int]:
    """Page until done like a device; returns ids received, the cursor and ``checked``."""
    ids: list[str] = []
    while True:
        reply = await answer(
            store, person, PullRequest(device="d", after=after, limit=3, checked=checked)
        )
        reply = decode_reply(encode_reply(reply))  # through the wire format
        ids += [_id(w.raw) for w in reply.events]
        after, checked = reply.next_after, reply.checked
        if not reply.more:
            return ids, after, checked


def _id(raw: bytes) -> str:
    import msgspec

    return str(msgspec.json.decode(raw)["id"])


def test_pull_person() -> None:
    assert pull_person("milepost.pull.alice") == "alice"
    assert pull_person("milepost.pull.alice.x") is None
    assert pull_person("milepost.events.alice") is None


async def test_pages_skip_what_the_person_may_not_see(
    store: ServerStore, make_event: EventMaker
) -> None:
    private = make_event("alice", ObjectiveCreated(title="Mine", cycle="2026-Q1"))
    shared = make_event(
        "alice",
        ObjectiveCreated(title="Ours", cycle="2026-Q1", visibility="partners", partners=("bob",)),
    )
    checks = [
        make_event("alice", Corrected(target=shared.id, changes=Changes(description="progress")))
        for _ in range(5)
    ]
    await put(store, private, shared, *checks)
    ids, cursor, _ = await pull_all(store, "bob")
    assert ids == [shared.id, *(c.id for c in checks)]
    assert cursor == await store.max_position()
    own, _, _ = await pull_all(store, "alice")
    assert len(own) == 7
    nothing, cursor, _ = await pull_all(store, "carol")
    assert nothing == [] and cursor == 7


async def test_a_page_stays_under_the_byte_budget(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = make_event("alice", ObjectiveCreated(title="x" * 200, cycle="2026-Q1"))
    note = "n" * 3000
    checks = [
        make_event("alice", Corrected(target=goal.id, changes=Changes(description=note)))
        for _ in range(10)
    ]
    await put(store, goal, *checks)
    reply = await answer(store, "alice", PullRequest(device="d", limit=100), max_bytes=10_000)
    assert 1 <= len(reply.events) < 11 and reply.more
    assert len(encode_reply(reply)) <= 10_000
    assert reply.next_after == reply.events[-1].position


async def test_sharing_after_the_cursor_delivers_the_history(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = make_event("alice", ObjectiveCreated(title="Later", cycle="2026-Q1"))
    check = make_event("alice", Corrected(target=goal.id, changes=Changes(description="progress")))
    await put(store, goal, check)
    ids, cursor, checked = await pull_all(store, "bob")
    assert ids == [] and cursor == 2
    share = make_event(
        "alice", SharingChanged(subject=goal.id, visibility="partners", partners=("bob",))
    )
    await put(store, share)
    ids, cursor, checked = await pull_all(store, "bob", cursor, checked)
    assert ids == [goal.id, check.id, share.id]
    # Nothing more the next time: the reveal was consumed.
    again, _, _ = await pull_all(store, "bob", cursor, checked)
    assert again == []


async def test_a_team_join_delivers_the_teams_history(
    store: ServerStore, make_event: EventMaker
) -> None:
    await put(store, join(make_event, "web", "alice"))
    goal = make_event("alice", ObjectiveCreated(title="Team", cycle="2026-Q1", visibility="team"))
    hidden = make_event("alice", ObjectiveCreated(title="Mine", cycle="2026-Q1"))
    await put(store, goal, hidden)
    ids, cursor, checked = await pull_all(store, "dave")
    assert ids == []
    joined = join(make_event, "web", "dave")
    await put(store, joined)
    ids, cursor, checked = await pull_all(store, "dave", cursor, checked)
    assert goal.id in ids and joined.id in ids and hidden.id not in ids


async def test_a_parent_arriving_after_its_children_reveals_them(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = make_event("alice", ObjectiveCreated(title="Team", cycle="2026-Q1", visibility="team"))
    milestone = make_event("alice", MilestonePlanned(title="M", objective=goal.id))
    check = make_event("alice", CheckInRecorded(subject=milestone.id, confidence="at-risk"))
    await put(store, join(make_event, "web", "alice"), join(make_event, "web", "bob"))
    await put(store, check)  # children first: their root is unknown, only alice sees them
    await put(store, milestone)
    ids, cursor, checked = await pull_all(store, "bob")
    assert check.id not in ids
    await put(store, goal)
    ids, _, _ = await pull_all(store, "bob", cursor, checked)
    assert set(ids) >= {goal.id, milestone.id, check.id}


async def test_a_fresh_device_needs_no_rescan(store: ServerStore, make_event: EventMaker) -> None:
    await put(store, make_event("alice", ObjectiveCreated(title="A", cycle="2026-Q1")))
    reply = await answer(store, "alice", PullRequest(device="d"))
    assert reply.rescan_from is None and reply.checked == 1
    assert isinstance(reply, PullReply)
