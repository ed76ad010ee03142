"""Which references the server vouches for (``projections.ownership.ELSEWHERE``): every
other reference names an event under the same visibility root as the event itself, so
whoever may see the one may see the other. Checked against the server's own rooting
(``server.indexing``), field by field, so a new reference cannot slip by unvouched."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec

from events import Event, encode, new_event_id
from events import bodies as b
from projections.ownership import ELSEWHERE, REACTIONS, REFERENCES
from server.indexing import index_update
from server.pull import _named_elsewhere, _NamedBody
from server.store.protocol import StoredEvent

_REQUIRED: dict[str, Any] = {
    "title": "T",
    "cycle": "2026",
    "due_on": date(2026, 3, 1),
    "confidence": "on-track",
    "stages": ("a", "b"),
    "text": "t",
    "visibility": "private",
    "changes": b.Changes(title="U"),
    "starts_on": date(2026, 3, 1),
    "ends_on": date(2026, 3, 2),
    "team": "web",
    "person": "bob",
}


def _body(body_type: type[b.Body], refs: dict[str, str]) -> b.Body:
    fields = {f.name for f in msgspec.structs.fields(body_type)}
    values = {name: value for name, value in _REQUIRED.items() if name in fields}
    return body_type(**values, **refs)


def _event(body: b.Body, actor: str = "alice") -> Event:
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    return Event(new_event_id(), actor, "laptop", 1, moment, moment, body)  # type: ignore[arg-type]


def _fields(body_type: type[b.Body]) -> list[str]:
    return [f for f, _ in (*REFERENCES[body_type], *REACTIONS.get(body_type, ()))]


def test_every_reference_not_vouched_for_shares_the_events_root() -> None:
    checked = 0
    for body_type in REFERENCES:
        tag = body_type.__struct_config__.tag
        assert isinstance(tag, str)
        for field in _fields(body_type):
            if field in ELSEWHERE.get(tag, ()):
                continue
            ref = new_event_id()
            update = index_update(_event(_body(body_type, {field: ref})))
            assert update.ref == ref, f"{tag}.{field} may name another root: add it to ELSEWHERE"
            checked += 1
    assert checked >= 15


def test_the_vouched_references_are_the_ones_that_can_point_elsewhere() -> None:
    # A milestone's planning and relinks name where it was; a kudos someone else's item.
    for tag, fields in ELSEWHERE.items():
        body_type = b.BODY_TYPES[tag]
        assert set(fields) <= set(_fields(body_type))
        assert set(fields) <= set(_NamedBody.__struct_fields__)  # the pull decodes them


def test_the_pull_reads_the_vouched_references_of_others_and_own_reactions_only() -> None:
    objective, key_result, completion = new_event_id(), new_event_id(), new_event_id()
    planned = _event(b.MilestonePlanned(title="M", key_result=key_result, objective=objective))
    kudos = _event(b.KudosGiven(completion=completion), actor="bob")
    checkin = _event(b.CheckInRecorded(subject=key_result, confidence="on-track"))

    def stored(event: Event) -> StoredEvent:
        return StoredEvent(1, event.id, event.actor, event.type, None, None, encode(event))

    assert _named_elsewhere("bob", stored(planned)) == (key_result, objective)
    assert _named_elsewhere("alice", stored(planned)) == ()  # her own: she sees them
    assert _named_elsewhere("bob", stored(kudos)) == (completion,)  # his own reaction
    assert _named_elsewhere("carol", stored(kudos)) == (completion,)
    assert _named_elsewhere("bob", stored(checkin)) == ()
    # what names the event's current root is visible with it: not asked about
    under_root = StoredEvent(1, planned.id, "alice", planned.type, objective, None, encode(planned))
    assert _named_elsewhere("bob", under_root) == (key_result,)
