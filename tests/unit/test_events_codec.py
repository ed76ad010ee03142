"""The event model: limits on every body, one codec error, upcasting, opaque events."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest

import events
from events import bodies as b
from events.codec import MAX_EVENT_BYTES, CodecError, decode, decode_event, encode
from events.envelope import CURRENT_SCHEMA, Event, OpaqueEvent

ID = "01a2099d-b301-7027-8e1a-b8ad68ca2fc1"
OTHER = "01a2099d-b302-7511-89d4-40abe2a26844"
WHEN = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def envelope(body: dict[str, Any], /, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": ID,
        "actor": "alice",
        "device": "laptop",
        "clock": 1 << 40,
        "recorded_at": "2026-03-02T09:30:00Z",
        "occurred_at": "2026-03-02T09:30:00Z",
        "body": body,
        "schema": CURRENT_SCHEMA,
    }
    raw.update(overrides)
    return raw


def as_bytes(raw: dict[str, Any]) -> bytes:
    return msgspec.json.encode(raw)


def error_of(raw: dict[str, Any] | bytes) -> CodecError:
    data = raw if isinstance(raw, bytes) else as_bytes(raw)
    with pytest.raises(CodecError) as caught:
        decode(data)
    return caught.value


VALID_BODIES: list[dict[str, Any]] = [
    {"type": "objective.created", "title": "Show people how Roads works", "cycle": "2026-Q1"},
    {"type": "key_result.added", "objective": ID, "title": "Visitors", "start": 0, "target": 3000},
    {
        "type": "key_result.added",
        "objective": ID,
        "title": "Churn",
        "kind": "decrease",
        "start": 10,
        "target": 4,
    },
    {
        "type": "key_result.added",
        "objective": ID,
        "title": "NPS",
        "kind": "stay-above",
        "target": 40,
    },
    {"type": "key_result.added", "objective": ID, "title": "By milestones"},
    {
        "type": "milestone.planned",
        "title": "Create profiles",
        "due_on": "2026-02-28",
        "key_result": ID,
    },
    {"type": "milestone.rescheduled", "milestone": ID, "due_on": "2026-03-15"},
    {"type": "milestone.completed", "milestone": ID, "did": "a", "why": "b", "outcome": "c"},
    {"type": "milestone.reopened", "milestone": ID},
    {"type": "milestone.dropped", "milestone": ID},
    {"type": "milestone.restored", "milestone": ID},
    {"type": "milestone.relinked", "milestone": ID, "objective": OTHER},
    {"type": "task.added", "milestone": ID, "title": "Create a LinkedIn profile"},
    {"type": "task.completed", "task": ID},
    {"type": "task.reopened", "task": ID},
    {"type": "checkin.recorded", "subject": ID, "confidence": "at-risk", "value": 1200},
    {"type": "checkin.recorded", "subject": ID, "confidence": "on-track", "percent": 100},
    {
        "type": "indicator.defined",
        "title": "Customer empathy",
        "stages": ["team solicits feedback", "team anticipates needs unprompted"],
    },
    {
        "type": "observation.recorded",
        "text": "Asked users first",
        "indicator": ID,
        "stage": 1,
        "polarity": "negative",
    },
    {"type": "observation.recorded", "text": "A weekly win", "visibility": "team"},
    {"type": "sharing.changed", "subject": ID, "visibility": "partners", "partners": ["bob"]},
    {"type": "correction", "target": ID, "changes": {"value": 1300}},
    {"type": "retraction", "target": ID, "reason": "logged twice"},
    {"type": "pause.declared", "starts_on": "2026-07-01", "ends_on": "2026-07-14"},
    {"type": "team.member_joined", "team": "growth", "person": "alice"},
    {"type": "team.member_left", "team": "growth", "person": "alice"},
    {"type": "kudos.given", "completion": ID, "note": "Great launch!"},
]


@pytest.mark.parametrize("body", VALID_BODIES, ids=lambda body: body["type"])
def test_every_body_type_round_trips(body: dict[str, Any]) -> None:
    event = decode(as_bytes(envelope(body)))
    assert isinstance(event, Event)
    assert event.type == body["type"]
    again = decode(encode(event))
    assert again == event
    assert encode(again) == encode(event)


def test_every_known_type_is_covered_by_the_examples() -> None:
    assert {body["type"] for body in VALID_BODIES} == set(events.BODY_TYPES)


INVALID_BODIES: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "objective.created", "title": "", "cycle": "2026-Q1"}, "body.title", "length >= 1"),
    (
        {"type": "objective.created", "title": "x" * 201, "cycle": "2026"},
        "body.title",
        "length <= 200",
    ),
    ({"type": "objective.created", "title": "ok", "cycle": "2026-Q5"}, "body.cycle", "regex"),
    (
        {"type": "objective.created", "title": "ok", "cycle": "2026", "visibility": "public"},
        "body.visibility",
        "Invalid enum value",
    ),
    (
        {"type": "objective.created", "title": "ok", "cycle": "2026", "partners": ["bob"]},
        "body",
        "partners may only be named",
    ),
    (
        {"type": "objective.created", "title": "ok", "cycle": "2026", "description": "x" * 4001},
        "body.description",
        "length <= 4000",
    ),
    (
        {"type": "key_result.added", "objective": ID, "title": "k", "start": 5, "target": 5},
        "body",
        "target must differ from start",
    ),
    (
        {"type": "key_result.added", "objective": ID, "title": "k", "start": 5, "target": 1},
        "body",
        "needs target above start",
    ),
    (
        {
            "type": "key_result.added",
            "objective": ID,
            "title": "k",
            "kind": "decrease",
            "start": 1,
            "target": 5,
        },
        "body",
        "needs target below start",
    ),
    (
        {"type": "key_result.added", "objective": ID, "title": "k", "start": 5},
        "body",
        "given together",
    ),
    (
        {"type": "key_result.added", "objective": ID, "title": "k", "kind": "stay-below"},
        "body",
        "needs a target",
    ),
    (
        {"type": "key_result.added", "objective": ID, "title": "k", "weight": 0},
        "body.weight",
        "> 0",
    ),
    (
        {"type": "key_result.added", "objective": "not-a-uuid", "title": "k"},
        "body.objective",
        "length >= 36",  # references are checked by length only (see EventRef)
    ),
    ({"type": "milestone.planned", "title": "m", "due_on": "2026-02-30"}, "body.due_on", "Invalid"),
    (
        {"type": "checkin.recorded", "subject": ID, "confidence": "on-track", "percent": 140},
        "body.percent",
        "<= 100",
    ),
    (
        {"type": "checkin.recorded", "subject": ID, "confidence": "on-track", "percent": -1},
        "body.percent",
        ">= 0",
    ),
    (
        {"type": "checkin.recorded", "subject": ID, "confidence": "fine"},
        "body.confidence",
        "Invalid enum value",
    ),
    (
        {
            "type": "checkin.recorded",
            "subject": ID,
            "confidence": "on-track",
            "percent": 5,
            "value": 3,
        },
        "body",
        "not both",
    ),
    (
        {"type": "checkin.recorded", "subject": ID, "confidence": "on-track", "note": "n" * 4001},
        "body.note",
        "length <= 4000",
    ),
    ({"type": "checkin.recorded", "confidence": "on-track"}, "body.subject", "missing"),
    ({"type": "indicator.defined", "title": "i", "stages": []}, "body.stages", "length >= 1"),
    (
        {"type": "indicator.defined", "title": "i", "stages": ["a", "A"]},
        "body",
        "stages must be distinct",
    ),
    ({"type": "observation.recorded", "text": ""}, "body.text", "length >= 1"),
    ({"type": "observation.recorded", "text": "t", "stage": 1}, "body", "needs an indicator"),
    (
        {"type": "observation.recorded", "text": "t", "indicator": ID, "stage": 50},
        "body.stage",
        "<= 49",
    ),
    (
        {
            "type": "sharing.changed",
            "subject": ID,
            "visibility": "partners",
            "partners": ["bob", "bob"],
        },
        "body",
        "must not repeat",
    ),
    ({"type": "correction", "target": ID, "changes": {}}, "body", "at least one field"),
    (
        {"type": "correction", "target": ID, "changes": {"colour": "red"}},
        "body.changes",
        "unknown field",
    ),
    (
        {"type": "correction", "target": ID, "changes": {"percent": 101}},
        "body.changes.percent",
        "<= 100",
    ),
    (
        {"type": "pause.declared", "starts_on": "2026-07-14", "ends_on": "2026-07-01"},
        "body",
        "end on or after",
    ),
    (
        {"type": "team.member_joined", "team": "Growth Team", "person": "alice"},
        "body.team",
        "regex",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    INVALID_BODIES,
    ids=[f"{b['type']}-{f}" for b, f, _ in INVALID_BODIES],
)
def test_invalid_bodies_name_the_field_and_the_reason(
    body: dict[str, Any], field: str, reason: str
) -> None:
    error = error_of(envelope(body))
    assert error.field == field
    assert reason.lower() in error.reason.lower()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": "nope"}, "id"),
        ({"actor": "Alice Smith"}, "actor"),
        ({"device": ""}, "device"),
        ({"clock": -1}, "clock"),
        ({"clock": "soon"}, "clock"),
        ({"recorded_at": "2026-02-30T00:00:00Z"}, "recorded_at"),
        ({"occurred_at": "2026-03-02T09:30:00"}, "occurred_at"),  # naive: no offset
        ({"body": "checkin"}, "body"),
        ({"body": {"title": "no type"}}, "body.type"),
        ({"schema": 0}, "schema"),
    ],
)
def test_invalid_envelopes_name_the_field(overrides: dict[str, Any], field: str) -> None:
    body = {"type": "milestone.restored", "milestone": ID}
    assert error_of(envelope(body, **overrides)).field == field


def test_missing_envelope_field_is_named() -> None:
    raw = envelope({"type": "milestone.restored", "milestone": ID})
    del raw["actor"]
    error = error_of(raw)
    assert (error.field, error.reason) == ("actor", "required field is missing")


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xfe", b"[]", b"null", b"42", b'{"id":', b"{" * 10_000, b"\x00" * 10]
)
def test_garbage_raises_only_the_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


def test_oversized_input_is_refused_before_parsing() -> None:
    error = error_of(b" " * (MAX_EVENT_BYTES + 1))
    assert "more than" in error.reason


def test_v1_checkin_is_upcast_to_v2() -> None:
    raw = envelope(
        {
            "type": "checkin.recorded",
            "subject": ID,
            "progress": 0.42,
            "status": "amber",
            "comment": "slow week",
        },
        schema=1,
    )
    event = decode(as_bytes(raw))
    assert isinstance(event, Event)
    assert event.schema == CURRENT_SCHEMA
    assert event.body == b.CheckInRecorded(
        subject=ID, confidence="at-risk", percent=42.0, note="slow week"
    )


def test_v1_checkin_with_metric_becomes_a_value() -> None:
    raw = envelope(
        {"type": "checkin.recorded", "subject": ID, "metric": 1200, "status": "red"}, schema=1
    )
    body = decode_event(as_bytes(raw)).body
    assert body == b.CheckInRecorded(subject=ID, confidence="off-track", value=1200)


def test_invalid_v1_checkin_is_still_refused_with_the_field() -> None:
    raw = envelope({"type": "checkin.recorded", "subject": ID, "progress": 1.4}, schema=1)
    error = error_of(raw)
    assert error.field == "body.percent"


def test_v1_events_of_unchanged_types_decode_as_they_are() -> None:
    raw = envelope({"type": "task.completed", "task": ID}, schema=1)
    assert decode_event(as_bytes(raw)).body == b.TaskCompleted(task=ID)


def test_unknown_type_is_kept_opaque_and_byte_identical() -> None:
    data = b'{"id":"%s","actor":"alice","device":"laptop","clock":7,' % ID.encode() + (
        b'"recorded_at":"2026-03-02T09:30:00Z","occurred_at":"2026-03-02T09:30:00+01:00",'
        b'"body":{"type":"goal.teleported","to":  "mars","extra":[1,2,{"x":null}]},"schema":3}'
    )
    event = decode(data)
    assert isinstance(event, OpaqueEvent)
    assert (event.type, event.id, event.actor, event.schema) == ("goal.teleported", ID, "alice", 3)
    assert encode(event) == data
    with pytest.raises(CodecError, match="unknown event type"):
        decode_event(data)


def test_unknown_type_with_a_bad_envelope_is_refused() -> None:
    raw = envelope({"type": "goal.teleported"}, actor="NOT OK")
    assert error_of(raw).field == "actor"


def test_newer_schema_of_a_known_type_ignores_added_fields() -> None:
    raw = envelope(
        {"type": "task.completed", "task": ID, "completed_by_voice": True},
        schema=CURRENT_SCHEMA + 1,
    )
    assert decode_event(as_bytes(raw)).body == b.TaskCompleted(task=ID)


def test_bodies_are_frozen() -> None:
    body = b.TaskCompleted(task=ID)
    with pytest.raises(AttributeError):
        body.task = OTHER  # type: ignore[misc]


def test_cycle_bounds() -> None:
    assert events.cycle_bounds("2026-Q1") == (date(2026, 1, 1), date(2026, 3, 31))
    assert events.cycle_bounds("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert events.cycle_bounds("2026-H2") == (date(2026, 7, 1), date(2026, 12, 31))
    assert events.cycle_bounds("2026") == (date(2026, 1, 1), date(2026, 12, 31))
    with pytest.raises(ValueError, match="not a cycle"):
        events.cycle_bounds("2026-Q0")


def test_decode_many_gives_what_decode_gives_item_by_item() -> None:
    current = as_bytes(envelope({"type": "task.completed", "task": ID}))
    old = as_bytes(envelope({"type": "checkin.recorded", "subject": ID, "metric": 3}, schema=1))
    unknown = as_bytes(envelope({"type": "goal.teleported", "to": "mars"}))
    newer = as_bytes(envelope({"type": "task.completed", "task": ID, "x": 1}, schema=3))
    items = [current, old, unknown, newer]
    assert list(events.decode_many(items)) == [decode(item) for item in items]
    (upcast,) = events.decode_many([old])
    assert isinstance(upcast, events.Event)
    assert isinstance(upcast.body, b.CheckInRecorded)


@pytest.mark.parametrize(
    "bad",
    [b"{", b"\xff\xfe", b'{"id": 1}', b" " * (MAX_EVENT_BYTES + 1)],
)
def test_decode_many_raises_the_codec_error_at_the_bad_item(bad: bytes) -> None:
    good = as_bytes(envelope({"type": "task.completed", "task": ID}))
    decoded = events.decode_many([good, bad, good])
    assert next(decoded) == decode(good)
    with pytest.raises(CodecError) as raised:
        next(decoded)
    with pytest.raises(CodecError) as expected:
        decode(bad)
    assert (raised.value.field, raised.value.reason) == (
        expected.value.field,
        expected.value.reason,
    )
