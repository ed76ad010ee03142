"""The persisted views, kept current in the same transaction as each append.

* ``refs``: one row per event (type, actor, the id it points at, a title, and whether a
  retraction by its own author is in the log) — it resolves short references and checks
  what a command refers to;
* ``goal_roots`` / ``goal_parts``: the goal tree split into roots (see
  ``projections.snapshot``). Appending an event refolds only the slices of
  the roots it touches; ``status`` reads the stored parts and refreshes their
  time-dependent fields — nothing is replayed.

Every fold here judges with the device's ``referents`` (what the server vouched for of
events it may not receive; ``projections.state.vouch``), so the views are always those
of a rebuild of the log and the referents.

A retraction of a check-in (which can uncover an older one) and any import
rebuild the views from the log.

The maintenance is synchronous, over ``Tx`` (a few statements on a ``sqlite3``
connection inside an open transaction): ``record_views`` (one new event),
``roots_touched`` and ``refold`` (used per batch by the sync engine's apply
transaction), ``rebuild_all`` (everything) and ``view_problems`` (compare the stored
views with a recomputation). The one-shot commands reach them through the awaitable
wrappers at the end (``on_append``, ``rebuild_views``, ``check_views``, ...), which run
them in the ``Store``'s thread with ``Store.run``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from client.store import Store
from events import AnyEvent, CodecError, Event, OpaqueEvent, decode
from events import bodies as b
from projections.goals import GoalTree
from projections.ownership import Referent, referenced_ids
from projections.snapshot import (
    RootPart,
    all_roots,
    assemble_tree,
    node_roots,
    pauses_root,
    root_part,
    slice_ids,
)
from projections.state import PLACEHOLDER, ProjectionState, rebuild, vouch

if TYPE_CHECKING:
    pass

_slice_encoder = msgspec.json.Encoder()
_slice_decoder = msgspec.json.Decoder(list[tuple[int, Event]])
_raw_slice_decoder = msgspec.json.Decoder(list[tuple[int, msgspec.Raw]])
_event_decoder = msgspec.json.Decoder(Event)
_part_encoder = msgspec.msgpack.Encoder()
_part_decoder = msgspec.msgpack.Decoder(RootPart)

_CHAINED = frozenset(
    {
        "task.added",
        "task.completed",
        "task.reopened",
        "checkin.recorded",
        "milestone.rescheduled",
        "milestone.completed",
        "milestone.reopened",
        "milestone.dropped",
        "milestone.restored",
        "milestone.relinked",
        "sharing.changed",
        "correction",
        "retraction",
    }
)


def parent_of(event: AnyEvent) -> str | None:
    """The id an event points at (its milestone, subject, task, target...)."""
    if isinstance(event, OpaqueEvent):
        return None
    body = event.body
    for name in ("milestone", "subject", "task", "target", "indicator", "objective"):
        value = getattr(body, name, None)
        if isinstance(value, str):
            return value
    return None


def _number(value: float) -> str:
    return f"{value:g}"


def title_of(event: AnyEvent) -> str:
    """A one-line description of an event for listings and ambiguity messages."""
    if isinstance(event, OpaqueEvent):
        return f"({event.type})"
    body = event.body
    match body:
        case b.ObjectiveCreated() | b.KeyResultAdded() | b.MilestonePlanned() | b.TaskAdded():
            return body.title
        case b.IndicatorDefined():
            return body.title
        case b.ObservationRecorded():
            return body.text[:80]
        case b.CheckInRecorded():
            amount = (
                _number(body.value)
                if body.value is not None
                else f"{_number(body.percent)}%"
                if body.percent is not None
                else ""
            )
            return f"check-in {amount} {body.confidence}".replace("  ", " ")
        case b.PauseDeclared():
            return f"pause {body.starts_on}..{body.ends_on}"
        case _:
            return event.type


def ref_row(event: AnyEvent) -> tuple[str, str, str, str, str | None, str]:
    """The ``refs`` row of an event."""
    hexid = event.id.replace("-", "")
    return (event.id, hexid[::-1], event.type, event.actor, parent_of(event), title_of(event))


INSERT_REF = (
    "INSERT OR IGNORE INTO refs (id, rhex, type, actor, parent, title) VALUES (?, ?, ?, ?, ?, ?)"
)
"""Insert one ``refs`` row (``ref_row``); a ref already there is kept."""


class Tx(Protocol):
    """Synchronous statements inside one open transaction (``client.store.SqliteTx`` over a
    ``sqlite3`` connection, in the store's thread). The views are maintained through it by
    the one-shot commands (``on_append``, ``rebuild_views``) and by the sync engine's apply
    transaction (``client.sync.log``) alike."""

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query."""
        ...

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows changed."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows, in order."""
        ...


def referents_of(tx: Tx, ids: Iterable[str] | None = None) -> dict[str, Referent]:
    """The stored referents (``client.store.REFERENTS_TABLE``) among ``ids``, or all."""
    if ids is None:
        rows = tx.fetchall("SELECT id, actor, type FROM referents")
    else:
        wanted = msgspec.json.encode(sorted(ids)).decode()
        rows = tx.fetchall(
            "SELECT id, actor, type FROM referents WHERE id IN (SELECT value FROM json_each(?))",
            (wanted,),
        )
    return {str(i): Referent(str(actor), str(kind)) for i, actor, kind in rows}


def with_referents(tx: Tx, state: ProjectionState) -> ProjectionState:
    """``state`` judged again with the stored referents of the events it waits for: the
    same state as folding with them from the start (``vouch``). Nothing waits: no query."""
    if state.waiting_on:
        found = referents_of(tx, list(state.waiting_on))
        if found:
            vouch(state, found)
    return state


class ViewsNeedRebuild(Exception):
    """Raised inside ``on_append`` when only a rebuild can bring the views up to date."""


# --- incremental maintenance ---------------------------------------------------------------


def _node_roots(tx: Tx, node: str) -> set[str]:
    rows = tx.fetchall("SELECT root FROM goal_roots WHERE node = ?", (node,))
    return {str(r[0]) for r in rows}


def _chain_roots(tx: Tx, item: str | None, depth: int = 0) -> set[str]:
    """Roots of whatever an event points at, following task → milestone, check-in → subject."""
    if item is None or depth > 4:
        return set()
    roots = _node_roots(tx, item)
    if roots:
        return roots
    rows = tx.fetchall("SELECT type, actor, parent FROM refs WHERE id = ?", (item,))
    if not rows:
        return set()
    kind, actor, parent = rows[0]
    if kind == "pause.declared":
        return {pauses_root(actor)}
    if kind in _CHAINED:
        return _chain_roots(tx, parent, depth + 1)
    return set()


def _link_roots(tx: Tx, milestone: str, key_result: str | None, objective: str | None) -> set[str]:
    if key_result is None and objective is None:
        return {milestone}  # standalone: its own root
    roots = _node_roots(tx, key_result) if key_result is not None else set()
    if objective is not None:
        roots.add(objective)
    return roots


def _set_node(tx: Tx, node: str, roots: set[str]) -> None:
    tx.execute("DELETE FROM goal_roots WHERE node = ?", (node,))
    tx.executemany(
        "INSERT INTO goal_roots (node, root) VALUES (?, ?)", [(node, r) for r in sorted(roots)]
    )


def roots_touched(tx: Tx, event: Event) -> set[str]:
    """Roots whose views ``event`` may change, recording the roots of the nodes it creates
    or relinks (``goal_roots``) as it goes; its ``refs`` row must be written already.
    Raises ``ViewsNeedRebuild`` when only a rebuild can place it (a retracted check-in)."""
    body = event.body
    match body:
        case b.ObjectiveCreated():
            _set_node(tx, event.id, {event.id})
            return {event.id}
        case b.KeyResultAdded():
            _set_node(tx, event.id, {body.objective})
            return {body.objective}
        case b.MilestonePlanned():
            # Placed at once (later events of the same batch look its roots up);
            # ``refold`` corrects it from the fold if a later-stamped relink came first.
            roots = _link_roots(tx, event.id, body.key_result, body.objective)
            _set_node(tx, event.id, roots)
            return roots
        case b.MilestoneRelinked():
            # Both sides are refolded; which link wins (last writer by (clock, id), only
            # the owner's writes count) is the fold's call: ``refold`` places the
            # milestone from the folded state (``_place_linked``), not by arrival.
            old = _node_roots(tx, body.milestone)
            return old | _link_roots(tx, body.milestone, body.key_result, body.objective)
        case b.PauseDeclared():
            return {pauses_root(event.actor)}
        case b.Retracted():
            rows = tx.fetchall("SELECT type, actor FROM refs WHERE id = ?", (body.target,))
            if rows and rows[0][1] == event.actor:
                tx.execute("UPDATE refs SET retracted = 1 WHERE id = ?", (body.target,))
                if rows[0][0] == "checkin.recorded":
                    raise ViewsNeedRebuild
            return _chain_roots(tx, body.target)
        case _:
            parent = parent_of(event)
            if event.type in _CHAINED and parent is not None:
                return _chain_roots(tx, parent)
            return set()


def record_views(tx: Tx, seq: int, event: AnyEvent, now: datetime) -> None:
    """Bring the views up to date with one newly stored event (inside its transaction)."""
    tx.execute(INSERT_REF, ref_row(event))
    if isinstance(event, OpaqueEvent):
        return
    try:
        roots = roots_touched(tx, event)
    except ViewsNeedRebuild:
        rebuild_all(tx, now)
        return
    if not roots:
        return
    refold(tx, sorted(roots), [(seq, event)], now)


def _slice_events(blob: bytes) -> list[tuple[int, Event]]:
    """A stored slice's events; one this version's codec refuses (e.g. a date outside the
    range, stored by an older version) is left out instead of failing the whole slice."""
    try:
        return _slice_decoder.decode(blob)
    except msgspec.ValidationError:
        kept = []
        for seq, raw in _raw_slice_decoder.decode(blob):
            try:
                kept.append((seq, _event_decoder.decode(raw)))
            except msgspec.ValidationError:
                continue
        return kept


def refold(tx: Tx, roots: list[str], extra: list[tuple[int, Event]], now: datetime) -> None:
    """Refold the stored slices of ``roots`` with the new events ``extra`` (seq, event) and
    store the resulting parts (a root left with nothing to show is removed). The
    milestones whose link ``extra`` writes are placed (``goal_roots``) where the fold
    puts them; when the slices lack what the fold needs to decide, the views are rebuilt."""
    marks = ",".join("?" * len(roots))
    rows = tx.fetchall(f"SELECT slice FROM goal_parts WHERE root IN ({marks})", roots)
    by_id: dict[str, tuple[int, Event]] = {}
    for (blob,) in rows:
        for seq, event in _slice_events(blob):
            by_id[event.id] = (seq, event)
    for seq, event in extra:
        by_id[event.id] = (seq, event)
    ordered = sorted(by_id.values(), key=lambda item: item[0])
    seqs = {event.id: seq for seq, event in ordered}
    state = with_referents(tx, rebuild(event for _, event in ordered))
    if not _place_linked(tx, state, extra):
        rebuild_all(tx, now)
        return
    _store_parts(tx, state, roots, seqs, now)


def _linked_milestone(event: Event) -> str | None:
    """The milestone whose link ``event`` writes (its planning or a relink), if any."""
    body = event.body
    if isinstance(body, b.MilestonePlanned):
        return event.id
    if isinstance(body, b.MilestoneRelinked):
        return body.milestone
    return None


def _place_linked(tx: Tx, state: ProjectionState, extra: list[tuple[int, Event]]) -> bool:
    """Set ``goal_roots`` of every milestone whose link an event of ``extra`` writes to its
    roots in ``state`` (the fold of the touched slices with ``extra``): the link is the
    fold's register (``MilestoneNode.link``), the last accepted write of its owner by
    (clock, id) whatever the arrival order, and ``node_roots`` reads it as a rebuild does.

    The touched slices hold the milestone and its winning link write whenever the log
    does, so the fold decides as a fold of the whole log would; unless such an event
    waits in ``state`` for one the log holds (its container's part is empty, e.g. a
    retracted objective, so no slice carries it): then False, and only a rebuild can
    place it. A milestone the fold does not hold (refused, or waiting for one not seen
    yet) has no row, as after a rebuild."""
    placed: dict[str, set[str]] = {}
    for _, event in extra:
        milestone = _linked_milestone(event)
        if milestone is None:
            continue
        if event.id in state.pending:
            for ref in referenced_ids(event):
                if state.referent(ref) is None and tx.scalar(
                    "SELECT 1 FROM refs WHERE id = ?", (ref,)
                ):
                    return False
        node = state.milestones.get(milestone)
        held = node is not None and node.event is not PLACEHOLDER
        placed[milestone] = node_roots(state, milestone) if held else set()
    for milestone, roots in placed.items():
        if _node_roots(tx, milestone) != roots:
            _set_node(tx, milestone, roots)
    return True


def _empty(part: RootPart) -> bool:
    return part.objective is None and part.milestone is None and not part.pauses


def _store_parts(
    tx: Tx, state: ProjectionState, roots: Iterable[str], seqs: dict[str, int], now: datetime
) -> int:
    rows = []
    gone = []
    for root in roots:
        # A root its owner retracted shows nothing, whatever ``state`` holds: a refold
        # can carry it in another root's slice (it decided an event there) without the
        # retraction, which lived in its own part, deleted when it was retracted.
        retracted = tx.scalar("SELECT retracted FROM refs WHERE id = ?", (root,))
        part = RootPart(root, "") if retracted else root_part(state, root, now)
        if _empty(part):  # retracted, linked elsewhere, or unknown: nothing to show
            gone.append((root,))
            continue
        ids = slice_ids(state, root)
        kept = sorted(((seqs[i], state.events[i]) for i in ids), key=lambda item: item[0])
        rows.append((root, part.owner, _slice_encoder.encode(kept), _part_encoder.encode(part)))
    tx.executemany("DELETE FROM goal_parts WHERE root = ?", gone)
    tx.executemany(
        "INSERT INTO goal_parts (root, owner, slice, part) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (root) DO UPDATE SET owner = excluded.owner,"
        " slice = excluded.slice, part = excluded.part",
        rows,
    )
    return len(rows)


# --- full rebuild and check -------------------------------------------------------------------


class Loaded(msgspec.Struct):
    """Every stored event decoded and folded."""

    state: Any  # ProjectionState (not a Struct)
    seqs: dict[str, int]
    events: list[AnyEvent]


def load_log(tx: Tx, *, recorded_until_ms: int | None = None) -> Loaded:
    """Decode and fold the whole log (or what was recorded by a moment): the slow path."""
    if recorded_until_ms is None:
        rows = tx.fetchall("SELECT seq, data FROM events ORDER BY seq")
    else:
        rows = tx.fetchall(
            "SELECT seq, data FROM events WHERE recorded_ms <= ? ORDER BY seq",
            (recorded_until_ms,),
        )
    decoded: list[AnyEvent] = []
    seqs: dict[str, int] = {}
    for seq, data in rows:
        try:
            event = decode(data)
        except CodecError:  # stored by an older version, refused by this one: left out
            continue
        decoded.append(event)
        seqs[event.id] = seq
    return Loaded(with_referents(tx, rebuild(decoded)), seqs, decoded)


def _expected_rows(loaded: Loaded) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]], set[str]]:
    state = loaded.state
    refs = [ref_row(e) for e in loaded.events]
    nodes = all_roots(state)
    node_rows = sorted((node, root) for node, roots in nodes.items() for root in roots)
    roots = {root for _, root in node_rows}
    roots.update(pauses_root(person) for person, index in state.people.items() if index.pauses)
    return refs, node_rows, roots


def _retracted_ids(events: Iterable[AnyEvent]) -> set[str]:
    """The ids the ``refs`` flag marks: each named by a retraction of its own author, both
    in the log. Decided from the log, as an append decides it (``roots_touched``), not
    from the fold: a retraction of an event the fold refused (a hostile device's own
    forgery) or still holds pending waits in the fold forever or until it is accepted,
    while its append marked the row at once. Once the event is folded the two agree."""
    actors = {event.id: event.actor for event in events}
    return {
        event.body.target
        for event in events
        if isinstance(event, Event)
        and type(event.body) is b.Retracted
        and actors.get(event.body.target) == event.actor
    }


def rebuild_all(tx: Tx, now: datetime) -> int:
    """Recompute every view from the log (inside the caller's transaction); returns roots."""
    loaded = load_log(tx)
    refs, node_rows, roots = _expected_rows(loaded)
    tx.execute("DELETE FROM refs")
    tx.execute("DELETE FROM goal_roots")
    tx.execute("DELETE FROM goal_parts")
    tx.executemany(INSERT_REF, refs)
    retracted = _retracted_ids(loaded.events)
    tx.executemany("UPDATE refs SET retracted = 1 WHERE id = ?", [(i,) for i in retracted])
    tx.executemany("INSERT INTO goal_roots (node, root) VALUES (?, ?)", node_rows)
    return _store_parts(tx, loaded.state, sorted(roots), loaded.seqs, now)


def parts_of(tx: Tx, owner: str | None = None) -> list[RootPart]:
    """Stored goal parts, of one owner or all."""
    if owner is None:
        rows = tx.fetchall("SELECT part FROM goal_parts ORDER BY root")
    else:
        rows = tx.fetchall("SELECT part FROM goal_parts WHERE owner = ?", (owner,))
    return [_part_decoder.decode(blob) for (blob,) in rows]


def view_problems(tx: Tx, now: datetime) -> list[str]:
    """Differences between the stored views and a recomputation (empty: they agree)."""
    loaded = load_log(tx)
    refs, node_rows, roots = _expected_rows(loaded)
    problems: list[str] = []
    retracted = _retracted_ids(loaded.events)
    expected_refs = {r[0]: (*r[1:], 1 if r[0] in retracted else 0) for r in refs}
    stored_refs = {
        str(r[0]): tuple(r[1:])
        for r in tx.fetchall("SELECT id, rhex, type, actor, parent, title, retracted FROM refs")
    }
    if stored_refs != expected_refs:
        diff = set(stored_refs.items()) ^ set(expected_refs.items())
        problems.append(f"refs differ for {len(diff)} rows")
    stored_nodes = sorted(
        (str(n), str(r)) for n, r in tx.fetchall("SELECT node, root FROM goal_roots")
    )
    if stored_nodes != node_rows:
        problems.append("goal roots differ")
    parts = parts_of(tx)
    stored_roots = {p.root for p in parts}
    fresh = [root_part(loaded.state, root, now) for root in sorted(roots)]
    fresh = [part for part in fresh if not _empty(part)]
    if stored_roots != {p.root for p in fresh}:
        problems.append(f"stored roots differ: {sorted(stored_roots ^ {p.root for p in fresh})}")
    owners = {p.owner for p in parts} | set(loaded.state.people)
    for owner in sorted(o for o in owners if o):
        if assemble_tree(owner, now, parts) != assemble_tree(owner, now, fresh):
            problems.append(f"goal tree of {owner} differs from a rebuild")
    return problems


# --- the same, awaited on a ``Store`` (run in its thread, inside any open transaction) --------


async def on_append(store: Store, seq: int, event: AnyEvent, now: datetime) -> None:
    """``record_views`` on ``store`` (inside the caller's ``write``)."""
    await store.run(lambda tx: record_views(tx, seq, event, now))


async def rebuild_views(store: Store, now: datetime) -> int:
    """``rebuild_all`` on ``store`` (inside the caller's ``write``); returns roots."""
    return await store.run(lambda tx: rebuild_all(tx, now))


async def load_all(store: Store, *, recorded_until_ms: int | None = None) -> Loaded:
    """``load_log`` on ``store``."""
    return await store.run(lambda tx: load_log(tx, recorded_until_ms=recorded_until_ms))


async def stored_parts(store: Store, owner: str | None = None) -> list[RootPart]:
    """Stored goal parts, of one owner or all."""
    return await store.run(lambda tx: parts_of(tx, owner))


async def stored_tree(store: Store, person: str, now: datetime) -> GoalTree:
    """The person's goal tree from the stored views (no replay)."""
    return assemble_tree(person, now, await stored_parts(store, person))


async def check_views(store: Store, now: datetime) -> list[str]:
    """``view_problems`` on ``store``: differences between the stored views and a rebuild."""
    return await store.run(lambda tx: view_problems(tx, now))


async def stored_state(
    store: Store, person: str, roots: Iterable[str] | None = None
) -> ProjectionState:
    """The person's goal roots (or only ``roots``, with their pauses) folded from their
    stored slices — no replay of the log: what the drift rules about goal items read."""
    if roots is None:
        rows = await store.fetchall("SELECT slice FROM goal_parts WHERE owner = ?", (person,))
    else:
        wanted = sorted({*roots, pauses_root(person)})
        marks = ",".join("?" * len(wanted))
        rows = await store.fetchall(
            f"SELECT slice FROM goal_parts WHERE owner = ? AND root IN ({marks})",
            (person, *wanted),
        )
    by_id: dict[str, tuple[int, Event]] = {}
    for (blob,) in rows:
        for seq, event in _slice_events(blob):
            by_id[event.id] = (seq, event)
    state = rebuild(event for _, event in sorted(by_id.values(), key=lambda item: item[0]))
    if state.waiting_on:
        return await store.run(lambda tx: with_referents(tx, state))
    return state
