"""Team views: the feed (order, cursor paging, visibility), the board, the team's drift."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events import bodies as b
from projections.state import ProjectionState, apply, as_of, rebuild
from projections.team import (
    FeedItem,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    team_board,
    team_drift,
    team_feed,
    viewer_feed,
)
from tests.builders import History, at

NOW = at("2026-03-01")


def team(*people: str, name: str = "roads", when: str = "2026-01-01") -> History:
    """A history whose first events put ``people`` in one team."""
    h = History(start="2026-01-01")
    for person in people:
        h.join(name, person, when=when)
    return h


def all_pages(state: ProjectionState, viewer: str, limit: int) -> list[FeedItem]:
    items: list[FeedItem] = []
    cursor = None
    while True:
        page = team_feed(state, "roads", viewer, cursor=cursor, limit=limit)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def ids(items: list[FeedItem]) -> list[str]:
    return [item.id for item in items]


def test_feed_is_newest_first_by_occurred_time_not_arrival() -> None:
    h = team("alice", "bob")
    objective = h.objective("Grow the community", visibility="team", when="2026-01-02")
    first = h.milestone("Create social media profiles", objective=objective, when="2026-01-05")
    done = h.make(
        b.MilestoneCompleted(milestone=first, did="Set up three profiles"), when="2026-01-20"
    )
    # Logged later but about an earlier day: it sorts by when it happened.
    late = h.checkin(first, "at-risk", percent=40, when="2026-01-10", recorded="2026-01-21")
    bobs = h.milestone("Write the newsletter", actor="bob", visibility="team", when="2026-01-15")
    state = rebuild(h.events)
    page = team_feed(state, "roads", "bob")
    assert ids(page.items) == [done.id, bobs, late, first]
    assert page.next_cursor is None
    completed = page.items[0]
    assert completed.kind == "milestone.completed"
    assert completed.summary == "alice completed 'Create social media profiles'"
    assert completed.subject == first
    assert completed.objective_title == "Grow the community"
    assert completed.did == "Set up three profiles"
    assert completed.visibility == "team"
    checkin = page.items[2]
    assert (checkin.kind, checkin.percent, checkin.confidence) == (
        "checkin.recorded",
        40,
        "at-risk",
    )
    assert checkin.summary == "alice checked in on 'Create social media profiles': 40%, at-risk"


def test_cursor_paging_has_no_gaps_or_duplicates_while_events_arrive() -> None:
    h = team("alice", "bob")
    objective = h.objective("Grow the community", visibility="team", when="2026-01-02")
    milestone = h.milestone("Profiles", objective=objective, when="2026-01-03")
    for day in range(4, 28):
        when = f"2026-01-{day:02d}"
        if day % 2:
            h.checkin(milestone, percent=day, when=when)
        else:
            h.milestone(f"Bob's step {day}", actor="bob", visibility="team", when=when)
    state = rebuild(h.events)
    before = ids(all_pages(state, "bob", limit=100))
    assert len(before) == 25

    seen: list[str] = []
    page = team_feed(state, "roads", "bob", limit=5)
    seen += ids(page.items)
    inserted_below: list[str] = []
    rounds = 0
    while page.next_cursor is not None:
        rounds += 1
        cursor_key = decode_cursor(page.next_cursor)
        # Between pages: a fresh event (above the cursor, for the next refresh), a
        # backdated one far below it, and one with the very same instant as the cursor.
        apply(
            state,
            h.make(
                b.CheckInRecorded(subject=milestone, confidence="on-track"),
                when=f"2026-02-{rounds:02d}",
            ),
        )
        old = h.make(
            b.CheckInRecorded(subject=milestone, confidence="at-risk"),
            when=f"2025-12-{rounds:02d}",
            recorded="2026-02-01",
        )
        apply(state, old)
        same = h.make(
            b.CheckInRecorded(subject=milestone, confidence="at-risk"),
            when=cursor_key[0],
            recorded="2026-02-01",
        )
        apply(state, same)
        inserted_below.append(old.id)
        if same.id < cursor_key[1]:
            inserted_below.append(same.id)
        page = team_feed(state, "roads", "bob", cursor=page.next_cursor, limit=5)
        seen += ids(page.items)
    assert rounds >= 5
    assert len(seen) == len(set(seen)), "a page repeated an item"
    assert set(before) | set(inserted_below) == set(seen), "a page skipped an item"
    keys = [(state.events[i].occurred_at, i) for i in seen]
    assert keys == sorted(keys, reverse=True)


def test_cursor_is_opaque_and_checked() -> None:
    key = (at("2026-01-05"), "01a2099d-b301-7027-8e1a-b8ad68ca2fc1")
    assert decode_cursor(encode_cursor(key)) == key
    state = rebuild(team("alice").events)
    with pytest.raises(InvalidCursor):
        team_feed(state, "roads", "alice", cursor="not-a-cursor")
    with pytest.raises(ValueError):
        team_feed(state, "roads", "alice", limit=0)


def test_private_items_never_reach_another_viewer() -> None:
    h = team("alice", "bob")
    secret = h.objective("Find a new job", when="2026-01-02")  # private by default
    hidden = h.milestone(
        "Update my resume", objective=secret, due_on="2026-01-10", when="2026-01-03"
    )
    h.checkin(hidden, "off-track", percent=10, note="quietly", when="2026-01-04")
    h.make(b.ObservationRecorded(text="Interview went well"), when="2026-01-05")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    open_ = h.milestone("Create social media profiles", objective=shared, when="2026-01-06")
    state = rebuild(h.events)

    bob_feed = viewer_feed(state, "bob")
    assert ids(bob_feed.items) == [open_]
    assert ids(team_feed(state, "roads", "bob").items) == [open_]
    board = team_board(state, "roads", "bob", NOW)
    alice = next(m for m in board.members if m.person == "alice")
    assert [o.title for o in alice.objectives] == ["Grow the community"]
    assert (alice.open_milestones, alice.overdue_milestones) == (1, 0)
    drift = team_drift(state, "roads", "bob", NOW)
    seen_by_bob = msgspec.json.encode([bob_feed, board, drift]).decode()
    for word in ("Find a new job", "Update my resume", "quietly", "Interview", hidden, secret):
        assert word not in seen_by_bob

    # The owner sees everything, in the feed and on the board.
    own = viewer_feed(state, "alice")
    assert len(own.items) == 4
    mine = next(m for m in team_board(state, "roads", "alice", NOW).members if m.person == "alice")
    assert (mine.open_milestones, mine.overdue_milestones) == (2, 1)
    assert any(s.subject == hidden for s in team_drift(state, "roads", "alice", NOW))


def test_partners_item_is_seen_only_by_the_named_partners() -> None:
    h = team("alice", "bob")
    mentored = h.milestone(
        "Give a conference talk", visibility="partners", partners=("mentor",), when="2026-01-03"
    )
    checkin = h.checkin(mentored, percent=30, when="2026-01-04")
    state = rebuild(h.events)
    assert set(ids(viewer_feed(state, "mentor").items)) == {mentored, checkin}
    assert viewer_feed(state, "bob").items == []  # a teammate, but not a partner
    assert team_feed(state, "roads", "bob").items == []
    assert viewer_feed(state, "carol").items == []
    assert team_feed(state, "roads", "mentor").items == []  # not a member: empty page

    # Shared with the team later: the teammate now sees its history too.
    apply(state, h.make(b.SharingChanged(subject=mentored, visibility="team"), when="2026-01-05"))
    assert len(team_feed(state, "roads", "bob").items) == 2
    assert viewer_feed(state, "mentor").items == []


def test_member_who_left_no_longer_sees_the_team() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    before = h.milestone("Profiles", objective=shared, when="2026-01-03")
    bobs = h.milestone("Bob's draft", actor="bob", visibility="team", when="2026-01-04")
    h.make(b.TeamMemberLeft(team="roads", person="bob"), actor="admin", when="2026-01-05")
    after = h.milestone("Newsletter", objective=shared, when="2026-01-06")
    state = rebuild(h.events)
    assert team_feed(state, "roads", "bob").items == []
    assert after not in ids(viewer_feed(state, "bob").items)
    assert ids(viewer_feed(state, "bob").items) == [bobs]  # only his own
    assert team_board(state, "roads", "bob", NOW).members == []
    assert team_drift(state, "roads", "bob", NOW) == []
    # And the team no longer shows the former member's items.
    assert ids(team_feed(state, "roads", "alice").items) == [after, before]
    # As of before he left, he was in the team and saw it.
    then = as_of(state, at("2026-01-04", 12))
    assert ids(team_feed(then, "roads", "bob").items) == [bobs, before]


def test_retracted_events_and_items_are_gone() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    kept = h.milestone("Profiles", objective=shared, when="2026-01-03")
    wrong_checkin = h.checkin(kept, percent=90, when="2026-01-04")
    h.make(b.Retracted(target=wrong_checkin), when="2026-01-05")
    withdrawn = h.milestone("Duplicate", objective=shared, when="2026-01-06")
    h.checkin(withdrawn, percent=10, when="2026-01-07")
    h.make(b.Retracted(target=withdrawn), when="2026-01-08")
    gone = h.objective("Abandoned", visibility="team", when="2026-01-02")
    h.milestone("Under the abandoned one", objective=gone, when="2026-01-09")
    h.make(b.Retracted(target=gone), when="2026-01-10")
    # Someone else's retraction changes nothing.
    h.make(b.Retracted(target=kept), actor="bob", when="2026-01-11")
    state = rebuild(h.events)
    assert ids(team_feed(state, "roads", "bob").items) == [kept]
    assert ids(viewer_feed(state, "alice").items) == [kept]


def test_corrections_are_reflected() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    milestone = h.milestone("Create social profiles", objective=shared, when="2026-01-03")
    checkin = h.checkin(milestone, percent=20, when="2026-01-04")
    h.make(
        b.Corrected(target=milestone, changes=b.Changes(title="Create social media profiles")),
        when="2026-01-05",
    )
    h.make(b.Corrected(target=checkin, changes=b.Changes(percent=25)), when="2026-01-05")
    state = rebuild(h.events)
    latest = team_feed(state, "roads", "bob").items[0]
    assert latest.percent == 25
    assert latest.subject_title == "Create social media profiles"
    assert latest.summary == "alice checked in on 'Create social media profiles': 25%, on-track"


def test_observations_and_key_result_checkins_carry_their_names() -> None:
    h = team("alice", "bob")
    shared = h.objective("Know our users", visibility="team", when="2026-01-02")
    kr = h.key_result(shared, "Reach 3,000 visitors", unit="visitors", when="2026-01-02")
    indicator = h.make(
        b.IndicatorDefined(
            title="Customer empathy",
            objective=shared,
            stages=("Team solicits feedback", "Team anticipates needs unprompted"),
        ),
        when="2026-01-02",
    ).id
    h.make(
        b.ObservationRecorded(
            text="Shipped a fix before anyone asked", indicator=indicator, stage=1
        ),
        when="2026-01-03",
    )
    h.checkin(kr, value=750, when="2026-01-04")
    h.make(
        b.ObservationRecorded(
            text="Missed the weekly sync", polarity="negative", visibility="team"
        ),
        when="2026-01-05",
    )
    state = rebuild(h.events)
    journal, checkin, observed = team_feed(state, "roads", "bob").items
    assert observed.stage_name == "Team anticipates needs unprompted"
    assert observed.subject == indicator and observed.subject_title == "Customer empathy"
    assert observed.objective_title == "Know our users"
    assert checkin.summary == "alice checked in on 'Reach 3,000 visitors': 750 visitors, on-track"
    assert (journal.polarity, journal.subject_title) == ("negative", None)
    assert journal.summary == "alice noted a lesson: Missed the weekly sync"


def test_board_counts_visible_milestones_per_member() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    kr = h.key_result(shared, when="2026-01-02")
    done = h.milestone("Profiles", key_result=kr, due_on="2026-01-20", when="2026-01-03")
    h.milestone("Newsletter", key_result=kr, due_on="2026-02-10", when="2026-01-03")
    h.milestone("Meetup", objective=shared, due_on="2026-04-10", when="2026-01-03")
    h.make(b.MilestoneCompleted(milestone=done), when="2026-01-19")
    h.milestone("Bob's own", actor="bob", visibility="team", when="2026-01-04")
    state = rebuild(h.events)
    board = team_board(state, "roads", "bob", NOW)
    assert [m.person for m in board.members] == ["alice", "bob"]
    alice, bob = board.members
    assert (alice.open_milestones, alice.completed_milestones, alice.overdue_milestones) == (
        2,
        1,
        1,
    )
    assert [m.title for m in bob.standalone_milestones] == ["Bob's own"]
    # As of before the completion, the board shows it open.
    then = team_board(as_of(state, at("2026-01-10")), "roads", "bob", at("2026-01-10"))
    assert (then.members[0].open_milestones, then.members[0].completed_milestones) == (3, 0)


def test_feed_as_of_a_past_date_shows_what_was_known_then() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    early = h.milestone("Profiles", objective=shared, when="2026-01-03")
    h.milestone("Newsletter", objective=shared, when="2026-01-10")
    backdated = h.checkin(early, percent=50, when="2026-01-04", recorded="2026-01-12")
    state = rebuild(h.events)
    assert ids(team_feed(as_of(state, at("2026-01-05")), "roads", "bob").items) == [early]
    assert backdated in ids(team_feed(as_of(state, at("2026-01-12")), "roads", "bob").items)


def test_team_drift_shows_only_signals_about_visible_items() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    late = h.milestone("Profiles", objective=shared, due_on="2026-01-20", when="2026-01-03")
    secret = h.milestone("Resume", due_on="2026-01-20", when="2026-01-03")
    state = rebuild(h.events)
    now = datetime(2026, 2, 1, 12, tzinfo=UTC)
    bob_sees = team_drift(state, "roads", "bob", now)
    alice_sees = team_drift(state, "roads", "alice", now)
    assert any(s.kind == "overdue" and s.subject == late for s in bob_sees)
    assert not any(s.subject == secret for s in bob_sees)
    assert any(s.kind == "overdue" and s.subject == secret for s in alice_sees)
    assert "Resume" not in msgspec.json.encode(bob_sees).decode()
    for signal in bob_sees:
        assert secret not in signal.events


def test_events_by_someone_else_about_an_item_are_ignored() -> None:
    h = team("alice", "bob")
    shared = h.objective("Grow the community", visibility="team", when="2026-01-02")
    milestone = h.milestone("Profiles", objective=shared, when="2026-01-03")
    secret = h.milestone("Update my resume", when="2026-01-03")
    # Bob checks in on and completes alice's items: not his to report.
    h.checkin(milestone, percent=90, actor="bob", when="2026-01-04")
    h.make(b.MilestoneCompleted(milestone=milestone), actor="bob", when="2026-01-05")
    h.checkin(secret, percent=10, actor="bob", when="2026-01-06")
    state = rebuild(h.events)
    assert ids(team_feed(state, "roads", "bob").items) == [milestone]
    assert ids(viewer_feed(state, "bob").items) == [milestone]
    assert "resume" not in msgspec.json.encode(viewer_feed(state, "bob")).decode()
    assert ids(viewer_feed(state, "alice").items) == [secret, milestone]
