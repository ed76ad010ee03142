"""The working set, on both backends: every view of a team or a person answered from its
partition (folded on demand from the store's indexes) equals the same view on the fold of
everything, at load, while following new events (team moves, kudos from other teams, events
that arrive before what they name), and after partitions are dropped under a small budget."""

from __future__ import annotations

import asyncio
import gc
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import msgspec
import pytest
import pytest_asyncio

from events import Event, new_event_id
from events.bodies import KudosGiven, MilestoneCompleted, TeamMemberJoined, TeamMemberLeft
from milepost_testkit.history import generate_history
from projections.compact import Compaction, compactable, folded, held_as_rows, prepare
from projections.goals import goal_tree
from projections.state import ProjectionState, apply
from server import compaction as compaction_module
from server.cli import main
from server.partition import collection_paused
from server.projection import ProjectionFollower
from server.rebuild import people_and_teams, person_views, rebuilt_state, team_views
from server.snapshots import SnapshotStore, open_snapshots
from server.store import ServerStore, open_store
from server.working_set import BYTES_PER_EVENT, WorkingSet
from tests.http_world import backend, incoming, location
from tests.integration.test_snapshots import flip_stored_byte

__all__ = ["backend", "location"]

NOW = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)


def history_with_kudos(seed: int) -> list[Event]:
    """A generated history (team moves, partner sharing, relinks, retractions) plus kudos
    on completions from people of every team, some of whom may not see them."""
    history = list(generate_history(people=8, teams=3, target_events=2500, seed=seed))
    rng = random.Random(seed)
    people = sorted({e.actor for e in history if e.actor != "admin"})
    kudos: list[Event] = []
    for event in history:
        if isinstance(event.body, MilestoneCompleted) and rng.random() < 0.5:
            for giver in rng.sample([p for p in people if p != event.actor], 2):
                kudos.append(
                    msgspec.structs.replace(
                        event,
                        id=new_event_id(),
                        actor=giver,
                        clock=event.clock + 1,
                        body=KudosGiven(completion=event.id),
                    )
                )
    merged = history + kudos
    merged.sort(key=lambda e: (e.recorded_at, e.clock))
    return merged


def shuffled_batches(history: Sequence[Event], seed: int, size: int = 60) -> list[list[Event]]:
    """Batches in a shuffled order: many events arrive before the ones they name."""
    batches = [list(history[i : i + size]) for i in range(0, len(history), size)]
    random.Random(seed).shuffle(batches)
    return batches


@pytest_asyncio.fixture
async def store(location: str) -> AsyncIterator[ServerStore]:
    opened = open_store(location)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def append(store: ServerStore, batches: Sequence[Sequence[Event]]) -> None:
    for batch in batches:
        await store.append_batch(incoming(batch))


async def differences(follower: ProjectionFollower, full: ProjectionState) -> list[str]:
    """Names of the views that differ between the partitions and the fold of everything:
    each person's (as themselves and as every other person sees their goals) from the
    partition that answers for them, each team's as each member sees it from the team's."""
    people, teams = people_and_teams(full)
    differ: list[str] = []
    for person in people:
        state = (await follower.person_view(person)).state
        mine = dict(person_views(state, person, NOW))
        theirs = dict(person_views(full, person, NOW))
        assert mine.keys() == theirs.keys()
        differ += [name for name in mine if mine[name] != theirs[name]]
        for viewer in people:
            seen = goal_tree(state, person, NOW, viewer=viewer)
            if seen != goal_tree(full, person, NOW, viewer=viewer):
                differ.append(f"goals/{person} as {viewer}")
    for team in teams:
        state = (await follower.team_view(team)).state
        mine = dict(team_views(state, team, NOW))
        theirs = dict(team_views(full, team, NOW))
        differ += sorted(
            name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name)
        )
    return differ


async def test_every_view_from_a_partition_equals_the_fold_of_everything(
    store: ServerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = history_with_kudos(seed=21)
    kudos = sum(isinstance(e.body, KudosGiven) for e in history)
    assert kudos > 50
    cut = len(history) * 2 // 3
    await append(store, shuffled_batches(history[:cut], seed=1))

    working_set = WorkingSet(store, budget_bytes=10**9)
    follower = ProjectionFollower(store, working_set=working_set)
    await follower.start_working_set()
    assert working_set.loaded == 0  # nothing folded at start but the directory
    assert follower.position == await store.max_position()

    full = await rebuilt_state(store)
    accepted_kudos = sum(isinstance(e.body, KudosGiven) for e in full.events.values())
    assert accepted_kudos > 10  # some kudos are folded (others refused: not visible)
    assert await differences(follower, full) == []
    loaded = working_set.loaded
    assert loaded >= 3
    # A partition holds its people's events, not everyone's.
    sizes = [p.size for p in working_set._partitions.values()]
    assert max(sizes) < full.event_count()
    # Each load is compacted after it answered (projections.compact): the same views.
    await working_set.settle()
    assert working_set.held_rows > 0
    assert working_set.compactions >= loaded
    assert await differences(follower, full) == []

    # The rest arrives while the partitions are loaded: routed as it is folded, into
    # compacted partitions, which are compacted again once they folded enough.
    monkeypatch.setattr(compaction_module, "COMPACT_AFTER", 20)
    await append(store, shuffled_batches(history[cut:], seed=2))
    await follower.catch_up()
    full = await rebuilt_state(store)
    assert await differences(follower, full) == []
    await working_set.settle()
    for partition in working_set._partitions.values():
        state = partition.state
        assert held_as_rows(state) == sum(map(compactable, state.events.values()))
    assert await differences(follower, full) == []


async def test_a_small_budget_drops_partitions_and_folds_them_again_the_same(
    store: ServerStore,
) -> None:
    history = history_with_kudos(seed=5)
    await append(store, shuffled_batches(history, seed=3))
    full = await rebuilt_state(store)
    _, teams = people_and_teams(full)
    budget_events = full.event_count() // 3  # about one team's events
    working_set = WorkingSet(store, budget_bytes=budget_events * BYTES_PER_EVENT)
    follower = ProjectionFollower(store, working_set=working_set)
    await follower.start_working_set()
    for _ in range(2):
        for team in teams:
            state = (await follower.team_view(team)).state
            assert dict(team_views(state, team, NOW)) == dict(team_views(full, team, NOW))
            # Over budget only by the partition just loaded.
            biggest = max(p.size for p in working_set._partitions.values())
            assert working_set.held_events <= max(budget_events, biggest) + biggest
    assert working_set.evictions > 0
    assert working_set.loads > len(teams)  # the dropped ones were folded again


async def test_a_rebuild_drops_every_partition_and_answers_the_same(store: ServerStore) -> None:
    history = history_with_kudos(seed=8)
    await append(store, shuffled_batches(history, seed=4))
    full = await rebuilt_state(store)
    _, teams = people_and_teams(full)
    working_set = WorkingSet(store, budget_bytes=10**9)
    follower = ProjectionFollower(store, working_set=working_set)
    await follower.start_working_set()
    for team in teams:
        await follower.team_view(team)
    assert working_set.loaded == len(teams)
    await follower.rebuild()  # SIGUSR1
    assert working_set.loaded == 0
    assert follower.state is working_set.directory
    assert sorted(follower.state.memberships) == sorted(full.memberships)
    assert await differences(follower, full) == []


@pytest_asyncio.fixture
async def snapshots(location: str) -> AsyncIterator[SnapshotStore]:
    opened = open_snapshots(location)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def stored_with_kudos(
    store: ServerStore, seed: int, order: int
) -> tuple[ProjectionState, list[str]]:
    """A history with kudos stored in shuffled batches: the fold of it, and its teams."""
    await append(store, shuffled_batches(history_with_kudos(seed=seed), seed=order))
    full = await rebuilt_state(store)
    return full, people_and_teams(full)[1]


async def snapshotting_follower(
    store: ServerStore, snapshots: SnapshotStore, budget_bytes: int = 10**9
) -> tuple[ProjectionFollower, WorkingSet]:
    """A started follower whose partitions keep snapshots (after every event folded)."""
    working_set = WorkingSet(store, budget_bytes, snapshot_after=1)
    working_set.snapshots = snapshots
    follower = ProjectionFollower(store, working_set=working_set)
    await follower.start_working_set()
    return follower, working_set


def joined_by_newcomer(history: Sequence[Event], full: ProjectionState) -> tuple[Event, str]:
    """A membership event putting someone into a team they were never in, and that team."""
    joins = [e for e in history if isinstance(e.body, TeamMemberJoined)]
    people = sorted({e.body.person for e in joins if isinstance(e.body, TeamMemberJoined)})
    for join in joins:
        assert isinstance(join.body, TeamMemberJoined)
        team = join.body.team
        outsiders = [p for p in people if (team, p) not in full.memberships]
        if outsiders:
            body = TeamMemberJoined(team=team, person=outsiders[0])
            clock = max(e.clock for e in history) + 1
            return msgspec.structs.replace(join, id=new_event_id(), clock=clock, body=body), team
    raise AssertionError("every person was in every team")


async def test_partitions_start_from_their_own_snapshots_and_answer_the_same(
    store: ServerStore, snapshots: SnapshotStore
) -> None:
    history = history_with_kudos(seed=13)
    cut = len(history) * 2 // 3
    await append(store, shuffled_batches(history[:cut], seed=5))
    first, first_set = await snapshotting_follower(store, snapshots)
    assert await differences(first, await rebuilt_state(store)) == []
    await first_set.settle()  # the snapshots it began are written
    assert first_set.snapshot_loads == 0
    assert first_set.snapshots_taken == first_set.loaded >= 5
    assert await snapshots.partition_count() == first_set.loaded
    assert await snapshots.listing() == []  # none of all history: nothing holds it

    # The rest arrives, and a newcomer joins a team: its snapshot is of other people.
    full = await rebuilt_state(store)
    join, team = joined_by_newcomer(history, full)
    await append(store, [*shuffled_batches(history[cut:], seed=6), [join]])
    second, second_set = await snapshotting_follower(store, snapshots)
    # The team with the newcomer is folded from the store: its snapshot is of others.
    key, people = second_set.team_key(team)
    assert (await second_set._restored(key, people, second.position))[1] == 0
    other = next(t for t in people_and_teams(full)[1] if t != team)
    key, people = second_set.team_key(other)
    assert (await second_set._restored(key, people, second.position))[1] > 0
    before = second_set.snapshot_loads
    full = await rebuilt_state(store)
    assert await differences(second, full) == []
    assert 0 < second_set.snapshot_loads - before < second_set.loads
    await second_set.settle()


async def test_a_corrupt_partition_snapshot_means_a_fold_from_the_store(
    store: ServerStore, snapshots: SnapshotStore, location: str
) -> None:
    full, teams = await stored_with_kudos(store, seed=17, order=7)
    first, first_set = await snapshotting_follower(store, snapshots)
    await first.team_view(teams[0])
    await first_set.settle()
    assert await snapshots.partition_count() == 1
    [corrupt] = await snapshots.listing(f"team:{teams[0]}")
    await flip_stored_byte(location, offset=200)
    second, second_set = await snapshotting_follower(store, snapshots)
    state = (await second.team_view(teams[0])).state
    assert dict(team_views(state, teams[0], NOW)) == dict(team_views(full, teams[0], NOW))
    assert second_set.snapshot_loads == 0 and second_set.loads == 1
    await second_set.settle()
    # The corrupt one is deleted (never read again); the load took a good one instead.
    [taken] = await snapshots.listing(f"team:{teams[0]}")
    assert taken.id != corrupt.id and taken.position == corrupt.position


async def test_a_partition_is_snapshotted_compacted_and_loads_compacted(
    store: ServerStore, snapshots: SnapshotStore
) -> None:
    full, teams = await stored_with_kudos(store, seed=17, order=3)
    first, first_set = await snapshotting_follower(store, snapshots)
    await first.team_view(teams[0])
    await first_set.settle()
    # Folded from the store: compacted, then snapshotted (its rows kept as columns).
    assert first_set.compactions == 1 and first_set.snapshots_taken == 1
    second, second_set = await snapshotting_follower(store, snapshots)
    state = (await second.team_view(teams[0])).state
    await second_set.settle()
    # Loaded compacted, with no tail: held as rows at once, never compacted again.
    assert second_set.snapshot_loads == 1 and second_set.compactions == 0
    assert second_set.held_rows == first_set.held_rows > 0
    assert dict(team_views(state, teams[0], NOW)) == dict(team_views(full, teams[0], NOW))
    # Folded or loaded, a partition holds the directory's own team changes (one copy).
    for working_set in (first_set, second_set):
        [partition] = working_set._partitions.values()
        directory = working_set.directory
        changes = sum(isinstance(e.body, TEAM_CHANGES) for e in directory.events.values())
        assert shares_the_directory(partition.state, directory) == changes > 0


TEAM_CHANGES = (TeamMemberJoined, TeamMemberLeft)


def shares_the_directory(state: ProjectionState, directory: ProjectionState) -> int:
    """How many team changes ``state`` holds as the directory's own objects; asserting that
    it holds no other copy of one, of a membership key or of a person's teams."""
    changes = [e for e in directory.events.values() if isinstance(e.body, TEAM_CHANGES)]
    ours = [dict.get(state.events, e.id) for e in changes]
    assert all(event is None or event is e for event, e in zip(ours, changes, strict=True))
    keys = {id(key) for key in directory.memberships}
    assert all(id(key) in keys for key in state.memberships)
    theirs = directory.teams_by_person
    assert all(teams is theirs[p] for p, teams in state.teams_by_person.items())
    return sum(event is not None for event in ours)


async def test_a_stop_lets_compactions_go_and_takes_the_snapshots_due(
    store: ServerStore, snapshots: SnapshotStore
) -> None:
    _, teams = await stored_with_kudos(store, seed=17, order=3)
    follower, working_set = await snapshotting_follower(store, snapshots)
    for team in teams:
        await follower.team_view(team)
    # Each load queued its compaction, which waits a quiet second: none has begun.
    assert working_set.compactor.queued() and working_set.compactions == 0
    assert working_set.compactor.pending() == len(working_set.compactor.queued())
    await working_set.close()
    assert working_set.compactor.queued() == [] and working_set.compactions == 0
    assert working_set.compactor.pending() == 0
    # Every partition loaded was snapshotted as it was (objects), none is left to write.
    assert working_set.snapshots_taken == working_set.loaded >= len(teams)
    assert await snapshots.partition_count() == working_set.loaded
    assert all(task.done() for task in working_set._snapshotting.values())


async def test_partitions_dropped_over_the_budget_come_back_from_their_snapshots(
    store: ServerStore, snapshots: SnapshotStore
) -> None:
    history = history_with_kudos(seed=9)
    await append(store, shuffled_batches(history, seed=8))
    full = await rebuilt_state(store)
    _, teams = people_and_teams(full)
    budget = full.event_count() // 3 * BYTES_PER_EVENT  # about one team's events
    follower, working_set = await snapshotting_follower(store, snapshots, budget)
    for team in teams:
        await follower.team_view(team)
    await working_set.settle()
    taken = working_set.snapshots_taken
    assert working_set.evictions > 0 and taken >= len(teams)
    # New events after the snapshots: a reload folds them after its snapshot's.
    extra = history_with_kudos(seed=10)[-300:]
    await append(store, [extra])
    await follower.catch_up()
    for team in teams:
        state = (await follower.team_view(team)).state
        full = await rebuilt_state(store)
        assert dict(team_views(state, team, NOW)) == dict(team_views(full, team, NOW))
    assert working_set.snapshot_loads > 0
    await working_set.settle()


async def test_a_partition_dropped_is_snapshotted_at_the_position_it_was_dropped_at(
    store: ServerStore, snapshots: SnapshotStore
) -> None:
    history = history_with_kudos(seed=11)
    cut = len(history) * 3 // 4
    await append(store, shuffled_batches(history[:cut], seed=9))
    full = await rebuilt_state(store)
    _, teams = people_and_teams(full)
    follower, working_set = await snapshotting_follower(store, snapshots, budget_bytes=1)
    # Its snapshot waits until events arrived after it was dropped (the budget holds one).
    async with working_set._one_snapshot_at_a_time:
        await follower.team_view(teams[0])
        await follower.team_view(teams[1])  # drops the first
        assert working_set.evictions == 1
        await append(store, shuffled_batches(history[cut:], seed=10))
        await follower.catch_up()
    await working_set.settle()
    working_set.drop(f"team:{teams[1]}")
    loads = working_set.snapshot_loads
    state = (await follower.team_view(teams[0])).state
    assert working_set.snapshot_loads == loads + 1
    full = await rebuilt_state(store)
    assert dict(team_views(state, teams[0], NOW)) == dict(team_views(full, teams[0], NOW))
    await working_set.settle()


async def test_warming_loads_the_partitions_named_until_the_budget_is_full(
    store: ServerStore,
) -> None:
    history = history_with_kudos(seed=12)
    await append(store, shuffled_batches(history, seed=11))
    full = await rebuilt_state(store)
    people, teams = people_and_teams(full)
    keys = ["nonsense", f"team:{teams[0]}", "team:no-such-team", f"person:{people[0]}", "person:"]
    follower = ProjectionFollower(store, working_set=WorkingSet(store, budget_bytes=10**9))
    await follower.start_working_set()
    assert await follower.warm(keys) == 2
    assert follower.working_set is not None
    assert follower.working_set.held_keys() == [f"person:{people[0]}", f"team:{teams[0]}"]
    for partition in follower.working_set._partitions.values():  # each, before the next
        assert held_as_rows(partition.state) == sum(
            map(compactable, partition.state.events.values())
        )
    state = (await follower.team_view(teams[0])).state
    assert dict(team_views(state, teams[0], NOW)) == dict(team_views(full, teams[0], NOW))
    assert follower.working_set.loads == 2  # that one was warm

    small = ProjectionFollower(store, working_set=WorkingSet(store, budget_bytes=1))
    await small.start_working_set()
    assert await small.warm([f"team:{team}" for team in teams]) == 1  # then it was full


def test_loads_pause_the_collector_together_and_leave_it_as_they_found_it() -> None:
    assert gc.isenabled()
    gc.unfreeze()
    try:
        with collection_paused():
            assert not gc.isenabled()
            with collection_paused():  # a second load at once
                assert not gc.isenabled()
            assert not gc.isenabled()  # the first still runs
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # what the load made is out of the collector's way
        gc.disable()  # as during a start's fold
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


async def test_foreign_roots_leave_out_the_events_of_roots_already_folded(
    store: ServerStore,
) -> None:
    await append(store, [history_with_kudos(seed=21)])
    full = await rebuilt_state(store)
    upto = await store.max_position()
    kudos = next(e for e in full.events.values() if isinstance(e.body, KudosGiven))
    assert isinstance(kudos.body, KudosGiven)
    named, giver = [kudos.body.completion], [kudos.actor]
    roots, stored = await store.foreign_roots(named, giver, upto)
    assert len(roots) == 1 and stored
    assert {item.root_id for item in stored} == set(roots)  # no team changes among them
    assert all(item.actor != kudos.actor for item in stored)
    again, none = await store.foreign_roots(named, giver, upto, known=roots)
    assert again == roots and none == []


async def test_snapshot_list_and_check_take_a_partition(
    store: ServerStore, snapshots: SnapshotStore, location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await append(store, shuffled_batches(history_with_kudos(seed=19), seed=12))
    _, teams = people_and_teams(await rebuilt_state(store))
    follower, working_set = await snapshotting_follower(store, snapshots)
    await follower.team_view(teams[0])
    await working_set.settle()
    key = f"team:{teams[0]}"

    def run(*args: str) -> tuple[int, str]:
        code = main([*args, "--database", location])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, out = await asyncio.to_thread(run, "snapshot", "list", "--partition", key, "--json")
    assert code == 0 and [item["loadable"] for item in json.loads(out)] == [True]
    code, out = await asyncio.to_thread(run, "snapshot", "check", "--partition", key)
    assert code == 0 and "views equal a fold of the same events" in out, out
    assert int(out.split(": ")[1].split(" views")[0]) > 3  # board, drift, feed per member
    code, out = await asyncio.to_thread(run, "snapshot", "check", "--partition", "team:nobody")
    assert (code, out) == (1, "milepost-server: error: no snapshots of team:nobody yet\n")
    code, out = await asyncio.to_thread(run, "snapshot", "check", "--partition", "teams")
    assert code == 2 and out.count("\n") == 1 and "team:NAME or person:NAME" in out
    await flip_stored_byte(location, offset=200)
    code, out = await asyncio.to_thread(run, "snapshot", "check", "--partition", key)
    assert code == 1 and "cannot be loaded" in out and "Traceback" not in out


async def test_snapshot_take_partitions_snapshots_each_stale_partition_and_loads_use_them(
    store: ServerStore, snapshots: SnapshotStore, location: str, capsys: pytest.CaptureFixture[str]
) -> None:
    history = history_with_kudos(seed=23)
    cut = len(history) * 2 // 3
    await append(store, shuffled_batches(history[:cut], seed=7))
    people, teams = people_and_teams(await rebuilt_state(store))

    def take(*args: str) -> tuple[int, str]:
        code = main(["snapshot", "take", *args, "--database", location])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    code, out = await asyncio.to_thread(take, "--partitions", "--json")
    taken = {item["partition"] for item in json.loads(out)["taken"]}
    assert code == 0 and json.loads(out)["fresh"] == 0
    # Every team, and every person who was ever in one (the generator's people all were).
    assert taken == {f"team:{t}" for t in teams} | {f"person:{p}" for p in people}
    code, out = await asyncio.to_thread(take, "--partitions", "--json")
    again = json.loads(out)
    assert code == 0 and again["taken"] == [] and again["fresh"] == len(taken)
    assert again["most_behind"] == 0

    # The rest arrives, and a newcomer joins a team: with a threshold above any tail, only
    # that team's snapshot (now of other people) is taken again.
    full = await rebuilt_state(store)
    join, joined_team = joined_by_newcomer(history, full)
    await append(store, [*shuffled_batches(history[cut:], seed=8), [join]])
    code, out = await asyncio.to_thread(take, "--partitions", "--snapshot-every", "100000")
    assert code == 0 and out.splitlines()[0].startswith(f"team:{joined_team}: snapshot "), out
    assert out.splitlines()[-1].startswith("1 partition snapshots taken"), out
    behind = int(out.splitlines()[-1].split("the most behind by ")[1].split(" events")[0])
    assert 0 < behind <= len(history) - cut + 1  # the others' tails, which were left
    code, out = await asyncio.to_thread(take, "--partitions", "--snapshot-every", "1", "--json")
    retaken = {item["partition"] for item in json.loads(out)["taken"]}
    assert code == 0 and retaken == taken - {f"team:{joined_team}"}  # it has no tail now
    assert json.loads(out)["most_behind"] == 0

    # A server's working set then loads every partition from its snapshot, with no tail
    # to fold, and answers every view as the fold of everything does.
    working_set = WorkingSet(store, 10**9)
    working_set.snapshots = snapshots
    follower = ProjectionFollower(store, working_set=working_set)
    await follower.start_working_set()
    assert await differences(follower, await rebuilt_state(store)) == []
    assert working_set.snapshot_loads == working_set.loads == len(taken)
    assert all(p.since_snapshot == 0 for p in working_set._partitions.values())

    # Bad input: one line, a non-zero exit, nothing taken.
    before = await snapshots.partition_count()
    for args, expected_code, words in [
        (("--partition", "team:nobody"), 1, "no team 'nobody'"),
        (("--partition", "person:nobody"), 1, "no person 'nobody'"),
        (("--partition", "teams"), 2, "team:NAME or person:NAME"),
        (("--partition", f"team:{teams[0]}", "--partitions"), 2, "not both"),
        (("--partitions", "--snapshot-every", "0"), 2, "at least 1"),
    ]:
        code, out = await asyncio.to_thread(take, *args)
        assert code == expected_code and out.count("\n") == 1 and words in out, (args, out)
    assert await snapshots.partition_count() == before
    code, out = await asyncio.to_thread(take, "--partition", f"team:{teams[0]}")  # forced
    assert code == 0 and out.startswith(f"team:{teams[0]}: snapshot "), out
    code, out = await asyncio.to_thread(take, "--partition", f"person:{people[0]}")
    assert code == 0 and out.startswith(f"person:{people[0]}: snapshot "), out


async def test_a_compaction_built_while_events_folded_is_built_again(
    store: ServerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = history_with_kudos(seed=5)
    stored, held_back = history[:-200], history[-200:]
    await append(store, shuffled_batches(stored, seed=3))
    working_set = WorkingSet(store, budget_bytes=10**9)
    follower = ProjectionFollower(store, working_set=working_set)
    await follower.start_working_set()
    monkeypatch.setattr(compaction_module, "COMPACT_QUIET", 0.0)
    prepared: list[int] = []

    def prepare_while_one_folds(
        state: ProjectionState, stop: Callable[[], bool]
    ) -> Compaction | None:
        compaction = prepare(state, stop)
        prepared.append(folded(state))
        if len(prepared) == 1:  # as if the follower folded one meanwhile
            before = folded(state)
            for event in held_back:
                apply(state, event)
                if folded(state) != before:
                    break
        return compaction

    monkeypatch.setattr(compaction_module, "prepare", prepare_while_one_folds)
    full = await rebuilt_state(store)
    team = people_and_teams(full)[1][0]
    state = (await follower.team_view(team)).state
    await working_set.settle()
    assert len(prepared) == 2 and prepared[1] > prepared[0]  # the first was not swapped in
    assert working_set.compactions == 1
    assert held_as_rows(state) == sum(map(compactable, state.events.values())) > 0
    assert folded(state) == prepared[1]  # the event folded meanwhile is still there
