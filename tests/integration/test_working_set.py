"""The working set, on both backends: every view of a team or a person answered from its
partition (folded on demand from the store's indexes) equals the same view on the fold of
everything, at load, while following new events (team moves, kudos from other teams, events
that arrive before what they name), and after partitions are dropped under a small budget."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import msgspec
import pytest_asyncio

from events import Event, new_event_id
from events.bodies import KudosGiven, MilestoneCompleted
from milepost_testkit.history import generate_history
from projections.goals import goal_tree
from projections.state import ProjectionState
from server.projection import ProjectionFollower
from server.rebuild import people_and_teams, person_views, rebuilt_state, team_views
from server.store import ServerStore, open_store
from server.working_set import BYTES_PER_EVENT, WorkingSet
from tests.http_world import backend, incoming, location

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
    store: ServerStore,
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

    # The rest arrives while the partitions are loaded: routed as it is folded.
    await append(store, shuffled_batches(history[cut:], seed=2))
    await follower.catch_up()
    full = await rebuilt_state(store)
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
