"""Team changes shared between states: one copy of the directory's objects in a process.

Every working-set partition folds every team change (who is in which team decides what a
member may see), so each held the same ~1,100 events of 1,000 people, their membership
keys and a set of teams per person: ~1 MB a partition, each its own copy. All of them are
immutable (a frozen ``Event``, a tuple, a frozenset), so a state may hold the directory's
own objects wherever they are equal to its own. What each state writes stays its own:
its registers (``Register`` is written by its fold) and its dictionaries.

Pure: no I/O. The server shares a partition's after its load (``server.working_set``).
"""

from __future__ import annotations

from projections.state import ProjectionState, Register


def share_team_changes(state: ProjectionState, directory: ProjectionState) -> int:
    """Make ``state`` hold ``directory``'s own team-change events, membership keys and sets
    of teams where they equal its own; return how many events it now shares.

    Only memory changes: an equal immutable object stands for another. The events are
    found by id among those held as objects (a team change is never a row).
    """
    objects = state.events
    held = dict.get  # the dictionary's own: HeldEvents.get would search the rows too
    shared = 0
    for event_id, theirs in directory.events.items():
        ours = held(objects, event_id)
        if ours is not None and ours is not theirs and ours == theirs:
            dict.__setitem__(objects, event_id, theirs)
            shared += 1
    keys = {key: key for key in directory.memberships}
    memberships: dict[tuple[str, str], Register] = {}
    for key, register in state.memberships.items():
        writer = register.writer
        if writer is not None:
            register.writer = held(objects, writer.id, writer)  # the one shared, if it is
        memberships[keys.get(key, key)] = register
    state.memberships = memberships
    theirs_by_person = directory.teams_by_person
    people = {person: person for person in theirs_by_person}
    teams_by_person: dict[str, frozenset[str]] = {}
    for person, teams in state.teams_by_person.items():
        theirs_teams = theirs_by_person.get(person)
        if theirs_teams is not None and theirs_teams == teams:
            teams = theirs_teams
        teams_by_person[people.get(person, person)] = teams
    state.teams_by_person = teams_by_person
    return shared
