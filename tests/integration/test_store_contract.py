"""One contract for every ServerStore backend (run once on SQLite, once on PostgreSQL)."""

from __future__ import annotations

import asyncio

import msgspec

from events import (
    CheckInRecorded,
    Event,
    KeyResultAdded,
    KudosGiven,
    MilestoneCompleted,
    MilestonePlanned,
    MilestoneRelinked,
    ObjectiveCreated,
    ObservationRecorded,
    SharingChanged,
    TaskAdded,
    TeamMemberJoined,
    TeamMemberLeft,
    encode,
    new_event_id,
)
from events.bodies import Visibility
from server.store.protocol import Incoming, ServerStore
from tests.services import EventMaker, StoreFactory


def incoming(*events: Event, subject: str | None = None) -> list[Incoming]:
    return [
        Incoming.from_raw(encode(e), subject or f"milepost.events.{e.actor}.{e.id}") for e in events
    ]


async def append(store: ServerStore, *events: Event) -> list[int]:
    result = await store.append_batch(incoming(*events))
    return [stored.position for stored in result.stored]


async def visible_ids(store: ServerStore, person: str) -> set[str]:
    return {e.id for e in await store.visible_events_after(person, 0, 10_000)}


def objective(
    make: EventMaker, actor: str, visibility: Visibility = "private", *partners: str
) -> Event:
    return make(
        actor,
        ObjectiveCreated(
            title="Ship",
            cycle="2026-Q1",
            visibility=visibility,
            partners=tuple(partners),
        ),
    )


# --- migrations ---------------------------------------------------------------------


async def test_migrations_run_once_and_are_versioned(store_factory: StoreFactory) -> None:
    first = await store_factory()
    assert await first.migrations() == [1, 2, 3, 4]
    await first.close()
    again = await store_factory()
    second = await store_factory()
    assert await again.migrations() == [1, 2, 3, 4]
    assert await second.migrations() == [1, 2, 3, 4]


# --- idempotent append and positions -------------------------------------------------


async def test_positions_are_dense_and_duplicates_are_reported(
    store: ServerStore, make_event: EventMaker
) -> None:
    a, b, c, d = (objective(make_event, "alice") for _ in range(4))
    first = await store.append_batch(incoming(a, b, a, c))
    assert [s.id for s in first.stored] == [a.id, b.id, c.id]
    assert [s.position for s in first.stored] == [1, 2, 3]
    assert first.duplicates == (a.id,)

    second = await store.append_batch(incoming(b, d, c))
    assert [(s.id, s.position) for s in second.stored] == [(d.id, 4)]
    assert sorted(second.duplicates) == sorted([b.id, c.id])
    assert await store.count() == 4
    assert await store.max_position() == 4
    assert [e.id for e in await store.events_after(0, 100)] == [a.id, b.id, c.id, d.id]
    assert [e.id for e in await store.events_after(2, 1)] == [c.id]

    only_duplicates = await store.append_batch(incoming(a, d))
    assert only_duplicates.stored == ()
    assert only_duplicates.last_position is None


async def test_an_event_stays_a_duplicate_after_reopening(
    store_factory: StoreFactory, make_event: EventMaker
) -> None:
    event = objective(make_event, "alice")
    store = await store_factory()
    assert await append(store, event) == [1]
    await store.close()
    reopened = await store_factory()
    result = await reopened.append_batch(incoming(event))
    assert result.stored == () and result.duplicates == (event.id,)
    stored = await reopened.get(event.id)
    assert stored is not None and stored.raw == encode(event) and stored.position == 1
    assert await reopened.get(new_event_id()) is None


async def test_concurrent_appenders_never_let_a_reader_skip(
    store_factory: StoreFactory, make_event: EventMaker
) -> None:
    writers = [await store_factory(), await store_factory()]
    reader = await store_factory()
    batches = [[objective(make_event, "alice") for _ in range(7)] for _ in range(24)]
    done = asyncio.Event()
    seen: list[int] = []

    async def write(store: ServerStore, mine: list[list[Event]]) -> None:
        for batch in mine:
            await store.append_batch(incoming(*batch))
            await asyncio.sleep(0)

    async def read() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            page = await reader.events_after(cursor, 13)
            # Commit order = position order: a page always continues the cursor exactly.
            assert [e.position for e in page] == list(range(cursor + 1, cursor + 1 + len(page)))
            seen.extend(e.position for e in page)
            if page:
                cursor = page[-1].position
            elif finished:
                return
            await asyncio.sleep(0)

    reading = asyncio.create_task(read())
    await asyncio.gather(
        write(writers[0], batches[0::2]),
        write(writers[1], batches[1::2]),
        # The same events again from the other side, concurrently: all duplicates or stored once.
        write(writers[1], batches[0::2]),
    )
    done.set()
    await reading
    total = sum(len(batch) for batch in batches)
    assert seen == list(range(1, total + 1))
    assert await reader.count() == total
    every_id = {e.id for batch in batches for e in batch}
    assert {e.id for e in await reader.events_after(0, 10_000)} == every_id


# --- dead letters and opaque events -------------------------------------------------


async def test_invalid_messages_are_dead_lettered_with_their_bytes_and_reason(
    store: ServerStore, make_event: EventMaker
) -> None:
    good = objective(make_event, "alice")
    broken = b'{"id": "not even an event"'
    too_long = msgspec.json.encode(
        {
            **msgspec.to_builtins(objective(make_event, "alice")),
            "body": {"type": "objective.created", "title": "", "cycle": "2026-Q1"},
        }
    )
    items = [
        Incoming.from_raw(broken, "milepost.events.alice.1"),
        *incoming(good),
        Incoming.from_raw(too_long, "milepost.events.alice.2"),
        Incoming.rejected(
            encode(good),
            "actor 'alice' does not match subject person 'bob'",
            "milepost.events.bob.3",
        ),
    ]
    result = await store.append_batch(items)
    assert [s.id for s in result.stored] == [good.id]
    assert result.dead_lettered == 3
    letters = await store.dead_letters()
    assert [(d.raw, d.subject) for d in letters] == [
        (broken, "milepost.events.alice.1"),
        (too_long, "milepost.events.alice.2"),
        (encode(good), "milepost.events.bob.3"),
    ]
    assert "malformed JSON" in letters[0].reason
    assert letters[1].reason.startswith("body.title")
    assert "does not match" in letters[2].reason
    assert letters[0].received_at.tzinfo is not None

    # Paging by id.
    assert [d.id for d in await store.dead_letters(after_id=letters[0].id, limit=1)] == [
        letters[1].id
    ]
    # A redelivered invalid message is kept once, moved to a new, higher id: the device
    # that sent it learns of the new refusal (``refusals``), the table does not grow.
    again = await store.append_batch(items[:1])
    assert again.dead_lettered == 1
    after = await store.dead_letters()
    assert len(after) == 3
    assert after[-1].raw == broken and after[-1].id > letters[-1].id


async def test_unknown_event_types_are_stored_byte_for_byte(store: ServerStore) -> None:
    event_id = new_event_id()
    raw = (
        b'{ "schema":2, "id":"' + event_id.encode() + b'", "actor":"alice",  "device":"phone",'
        b' "clock":5, "recorded_at":"2026-03-02T09:00:00Z", "occurred_at":"2026-03-02T09:00:00Z",'
        b' "body":{"type":"mood.logged","mood":"\\u263a","extra":[1,2.50,{}]}}'
    )
    result = await store.append_batch([Incoming.from_raw(raw, "milepost.events.alice.x")])
    assert result.dead_lettered == 0 and len(result.stored) == 1
    stored = await store.get(event_id)
    assert stored is not None
    assert stored.raw == raw and stored.type == "mood.logged"
    assert [e.raw for e in await store.events_after(0, 10)] == [raw]
    # Unknown types have no root: only their author sees them.
    assert await visible_ids(store, "alice") == {event_id}
    assert await visible_ids(store, "bob") == set()


# --- indexing: roots, out-of-order arrival ------------------------------------------


def alice_tree(make: EventMaker, visibility: Visibility = "private", *partners: str) -> list[Event]:
    """An objective with a KR, a milestone, a task and two check-ins, in causal order."""
    goal = objective(make, "alice", visibility, *partners)
    kr = make(
        "alice",
        KeyResultAdded(objective=goal.id, title="Latency", start=300, target=100, kind="decrease"),
    )
    milestone = make("alice", MilestonePlanned(title="Cache", key_result=kr.id))
    task = make("alice", TaskAdded(milestone=milestone.id, title="Design"))
    on_milestone = make(
        "alice", CheckInRecorded(subject=milestone.id, confidence="on-track", percent=40)
    )
    on_kr = make("alice", CheckInRecorded(subject=kr.id, confidence="at-risk", value=250))
    return [goal, kr, milestone, task, on_milestone, on_kr]


async def test_events_arriving_before_their_parents_are_rooted_when_the_parents_arrive(
    store: ServerStore, make_event: EventMaker
) -> None:
    tree = alice_tree(make_event, "team")
    goal = tree[0]
    team = [
        make_event("admin", TeamMemberJoined(team="eng", person="alice")),
        make_event("admin", TeamMemberJoined(team="eng", person="carol")),
    ]
    await append(store, *team)
    # Children first, one batch at a time, the objective last.
    for event in reversed(tree[1:]):
        await append(store, event)
        assert await store.item_root(event.id) is None
    assert await visible_ids(store, "carol") == {e.id for e in team}
    await append(store, goal)
    for event in tree:
        assert await store.item_root(event.id) == goal.id, event.type
    assert await visible_ids(store, "carol") == {e.id for e in team + tree}


async def test_a_reversed_batch_is_rooted_within_the_batch(
    store: ServerStore, make_event: EventMaker
) -> None:
    tree = alice_tree(make_event)
    await append(store, *reversed(tree))
    for event in tree:
        assert await store.item_root(event.id) == tree[0].id


async def test_a_milestone_moves_with_its_subtree_last_writer_wins(
    store: ServerStore, make_event: EventMaker
) -> None:
    private_goal = objective(make_event, "alice")
    shared = make_event(
        "alice",
        MilestonePlanned(
            title="Talk", objective=private_goal.id, visibility="partners", partners=("bob",)
        ),
    )
    checkin = make_event(
        "alice", CheckInRecorded(subject=shared.id, confidence="on-track", percent=10)
    )
    await append(store, private_goal, shared, checkin)
    assert await visible_ids(store, "bob") == set()

    unlink = make_event("alice", MilestoneRelinked(milestone=shared.id))
    stale_relink = make_event(
        "alice", MilestoneRelinked(milestone=shared.id, objective=private_goal.id), clock=1
    )
    await append(store, unlink)
    await append(store, stale_relink)  # older clock: must not win
    assert await store.item_root(checkin.id) == shared.id
    assert await visible_ids(store, "bob") == {shared.id, checkin.id, unlink.id, stale_relink.id}

    relink = make_event("alice", MilestoneRelinked(milestone=shared.id, objective=private_goal.id))
    await append(store, relink)
    assert await store.item_root(checkin.id) == private_goal.id
    assert await visible_ids(store, "bob") == set()


async def test_a_relink_arriving_before_its_milestone_still_wins(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = objective(make_event, "alice", "team")
    milestone = make_event("alice", MilestonePlanned(title="Solo", visibility="private"))
    relink = make_event("alice", MilestoneRelinked(milestone=milestone.id, objective=goal.id))
    await append(store, relink)
    await append(store, goal)
    await append(store, milestone)
    assert await store.item_root(milestone.id) == goal.id
    assert await store.item_root(relink.id) == goal.id


# --- visibility ---------------------------------------------------------------------


async def test_visibility_matrix(store: ServerStore, make_event: EventMaker) -> None:
    """owner / partner / teammate / outsider × private / partners / team."""
    teams = [
        make_event("admin", TeamMemberJoined(team="eng", person="alice")),
        make_event("admin", TeamMemberJoined(team="eng", person="carol")),
        make_event("admin", TeamMemberJoined(team="ops", person="dave")),
    ]
    trees = {
        "private": alice_tree(make_event, "private"),
        "partners": alice_tree(make_event, "partners", "bob"),
        "team": alice_tree(make_event, "team"),
    }
    journal = make_event("alice", ObservationRecorded(text="Helped a customer", visibility="team"))
    daves = objective(make_event, "dave", "team")
    await append(
        store, *teams, *trees["private"], *trees["partners"], *trees["team"], journal, daves
    )

    def ids(*events: Event) -> set[str]:
        return {e.id for e in events}

    eng, ops = ids(*teams[:2]), ids(teams[2])
    expected = {
        "alice": ids(*trees["private"], *trees["partners"], *trees["team"], journal) | eng,
        "bob": ids(*trees["partners"]),
        "carol": ids(*trees["team"], journal) | eng,
        "dave": ids(daves) | ops,
    }
    for person, want in expected.items():
        assert await visible_ids(store, person) == want, person
    # Paging applies after the filter.
    page = await store.visible_events_after("bob", 0, 2)
    assert [e.id for e in page] == [e.id for e in trees["partners"][:2]]
    assert (
        await store.visible_events_after("bob", page[-1].position, 100)
        == (await store.visible_events_after("bob", 0, 100))[2:]
    )

    assert await store.audience([trees["team"][0].id], []) == {"alice", "carol"}
    assert await store.audience([trees["partners"][0].id], []) == {"alice", "bob"}
    assert await store.audience([trees["private"][0].id], ["ops"]) == {"alice", "dave"}


async def test_visibility_follows_membership_and_sharing_now(
    store: ServerStore, make_event: EventMaker
) -> None:
    tree = alice_tree(make_event, "team")
    await append(store, make_event("admin", TeamMemberJoined(team="eng", person="alice")), *tree)
    assert not (await visible_ids(store, "carol")) & {e.id for e in tree}

    joined = make_event("admin", TeamMemberJoined(team="eng", person="carol"))
    await append(store, joined)
    # A new teammate receives the history, not only what follows.
    assert {e.id for e in tree} <= await visible_ids(store, "carol")

    left = make_event("admin", TeamMemberLeft(team="eng", person="carol"))
    await append(store, left)
    # The membership events are admin's: after leaving, nothing of eng is hers to see.
    assert await visible_ids(store, "carol") == set()


async def test_sharing_is_last_writer_wins_by_clock_then_event_id(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = make_event("alice", ObjectiveCreated(title="Ship", cycle="2026-Q1"), clock=10)
    newest = make_event(
        "alice", SharingChanged(subject=goal.id, visibility="partners", partners=("bob",)), clock=30
    )
    older = make_event(
        "alice",
        SharingChanged(subject=goal.id, visibility="partners", partners=("carol",)),
        clock=20,
    )
    await append(store, newest)
    await append(store, goal)
    await append(store, older)
    assert goal.id in await visible_ids(store, "bob")
    assert goal.id not in await visible_ids(store, "carol")

    # Same clock: the larger event id wins, whatever the arrival order.
    low, high = sorted([new_event_id(), new_event_id()])
    to_dave = make_event(
        "alice",
        SharingChanged(subject=goal.id, visibility="partners", partners=("dave",)),
        clock=40,
        event_id=high,
    )
    to_carol = make_event(
        "alice",
        SharingChanged(subject=goal.id, visibility="partners", partners=("carol",)),
        clock=40,
        event_id=low,
    )
    await append(store, to_dave)
    await append(store, to_carol)
    assert goal.id in await visible_ids(store, "dave")
    assert goal.id not in await visible_ids(store, "carol")
    assert goal.id not in await visible_ids(store, "bob")


async def test_last_writer_wins_inside_one_batch_whatever_the_order(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = make_event("alice", ObjectiveCreated(title="Ship", cycle="2026-Q1"), clock=10)
    to_bob = make_event(
        "alice", SharingChanged(subject=goal.id, visibility="partners", partners=("bob",)), clock=30
    )
    to_carol = make_event(
        "alice",
        SharingChanged(subject=goal.id, visibility="partners", partners=("carol",)),
        clock=20,
    )
    await append(store, goal, to_bob, to_carol)  # the newer one first in the batch
    assert goal.id in await visible_ids(store, "bob")
    assert goal.id not in await visible_ids(store, "carol")

    other = objective(make_event, "alice")
    milestone = make_event(
        "alice",
        MilestonePlanned(title="Talk", objective=goal.id, visibility="private", partners=()),
        clock=40,
    )
    checkin = make_event(
        "alice", CheckInRecorded(subject=milestone.id, confidence="on-track", percent=10)
    )
    older = make_event(
        "alice", MilestoneRelinked(milestone=milestone.id, objective=goal.id), clock=50
    )
    newer = make_event(
        "alice", MilestoneRelinked(milestone=milestone.id, objective=other.id), clock=60
    )
    await append(store, other, milestone, checkin, newer, older)
    assert await store.item_root(checkin.id) == other.id
    assert goal.id in await visible_ids(store, "bob")
    assert checkin.id not in await visible_ids(store, "bob")


async def test_nobody_but_the_owner_can_share_an_item(
    store: ServerStore, make_event: EventMaker
) -> None:
    goal = objective(make_event, "alice", "private")
    forged = make_event(
        "mallory",
        SharingChanged(subject=goal.id, visibility="partners", partners=("mallory",)),
        clock=1 << 50,
    )
    await append(store, goal, forged)
    assert goal.id not in await visible_ids(store, "mallory")
    # Refused by the ownership rule: a dead letter her device learns of, nothing stored.
    assert await visible_ids(store, "mallory") == set()
    refusals = await store.refusals("mallory", 0, 10)
    assert [r.event_id for r in refusals] == [forged.id]
    assert "belongs to alice" in refusals[0].reason


# --- referents: what a pull vouches for of events the person may not see ------------------


async def test_a_pull_vouches_exactly_for_named_events_the_person_may_not_see(
    store: ServerStore, make_event: EventMaker
) -> None:
    """A milestone planned under alice's private objective (and a private key result), moved
    through another private objective to one shared with bob: bob's pull carries the moved
    milestone with a referent (actor, type) for each private event it names, and nothing
    else of them. Bob's own kudos on a completion he may not see carries one too. Never for
    what bob sees, for a held event, or for one that was refused."""
    from events.wire import PullRequest, decode_reply, encode_reply
    from server.pull import answer

    private = make_event(
        "alice", ObjectiveCreated(title="Private plan", cycle="2026-Q1", visibility="private")
    )
    key_result = make_event("alice", KeyResultAdded(objective=private.id, title="Secret KR"))
    other = make_event("alice", ObjectiveCreated(title="Other secret", cycle="2026-Q1"))
    shared = objective(make_event, "alice", "partners", "bob")
    milestone = make_event(
        "alice", MilestonePlanned(title="Moved", key_result=key_result.id, objective=private.id)
    )
    first = make_event("alice", MilestoneRelinked(milestone=milestone.id, objective=other.id))
    second = make_event("alice", MilestoneRelinked(milestone=milestone.id, objective=shared.id))
    hidden = make_event("alice", MilestonePlanned(title="Hidden", objective=private.id))
    done = make_event("alice", MilestoneCompleted(milestone=hidden.id, did="Secret work"))
    kudos = make_event("bob", KudosGiven(completion=done.id))
    # held: a completion of a milestone not stored yet, and bob's kudos on it (held too)
    unknown = new_event_id()
    held = make_event("alice", MilestoneCompleted(milestone=unknown))
    kudos_on_held = make_event("bob", KudosGiven(completion=held.id))
    # refused: mallory's completion of alice's milestone is a dead letter
    forged = make_event("mallory", MilestoneCompleted(milestone=hidden.id))
    kudos_on_forged = make_event("bob", KudosGiven(completion=forged.id))
    await append(store, private, key_result, other, shared, milestone, first, second)
    await append(store, hidden, done, kudos, held, kudos_on_held, forged, kudos_on_forged)
    assert await store.get(forged.id) is None

    reply = await answer(store, "bob", PullRequest(device="phone"))
    got = {event.raw for event in reply.events}
    assert encode(milestone) in got and encode(kudos) in got and encode(kudos_on_held) in got
    vouched = {(r.id, r.actor, r.type) for r in reply.referents}
    assert vouched == {
        (private.id, "alice", "objective.created"),
        (key_result.id, "alice", "key_result.added"),
        (other.id, "alice", "objective.created"),
        (done.id, "alice", "milestone.completed"),
    }
    # nothing of their content travels
    wire = encode_reply(reply)
    for secret in (b"Private plan", b"Secret KR", b"Other secret", b"Secret work"):
        assert secret not in wire
    assert decode_reply(wire).referents == reply.referents

    # what bob may see is never vouched for; nor is anything for alice (she sees it all)
    assert {r.id for r in reply.referents}.isdisjoint(
        e.id for e in await store.visible_events_after("bob", 0, 1000)
    )
    assert (await answer(store, "alice", PullRequest(device="laptop"))).referents == []

    # the store's side directly: accepted and invisible only
    ids = [private.id, shared.id, milestone.id, held.id, forged.id, unknown, done.id]
    assert await store.vouched("bob", ids) == {
        private.id: ("alice", "objective.created"),
        done.id: ("alice", "milestone.completed"),
    }
    assert await store.vouched("bob", []) == {}

    # shared later: the objective itself comes, and is no longer vouched for
    share = make_event(
        "alice", SharingChanged(subject=private.id, visibility="partners", partners=("bob",))
    )
    await append(store, share)
    assert private.id not in await store.vouched("bob", [private.id])


async def test_a_page_cut_by_its_byte_budget_carries_the_referents_of_its_events_only(
    store: ServerStore, make_event: EventMaker
) -> None:
    from events.wire import PullRequest
    from server.pull import answer

    shared = objective(make_event, "alice", "partners", "bob")
    privates = [objective(make_event, "alice") for _ in range(6)]
    planned = [
        make_event("alice", MilestonePlanned(title=f"M{i}", objective=p.id))
        for i, p in enumerate(privates)
    ]
    moves = [
        make_event("alice", MilestoneRelinked(milestone=m.id, objective=shared.id)) for m in planned
    ]
    await append(store, shared, *privates, *planned, *moves)
    budget = 256 + sum(len(encode(e)) + 16 for e in (shared, planned[0], planned[1])) + 150
    first = await answer(store, "bob", PullRequest(device="phone"), max_bytes=budget)
    assert first.more
    delivered = {e.raw for e in first.events}
    want = {p.id for p, m in zip(privates, planned, strict=True) if encode(m) in delivered}
    assert {r.id for r in first.referents} == want
    assert 0 < len(want) < len(privates)
