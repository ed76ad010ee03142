"""The SQL text of the SQLite event store: its migrations and its two visibility queries
(``server.store.sqlite`` runs them)."""

from __future__ import annotations

from server.migrations import Migration

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "events, dead letters and the access-control indexes",
        (
            """CREATE TABLE events (
                position INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                actor TEXT NOT NULL,
                type TEXT NOT NULL,
                ref_id TEXT,
                root_id TEXT,
                team TEXT,
                subject TEXT NOT NULL,
                raw BLOB NOT NULL,
                stored_at TEXT NOT NULL
            )""",
            "CREATE INDEX events_ref ON events(ref_id)",
            "CREATE INDEX events_waiting ON events(ref_id) WHERE root_id IS NULL",
            "CREATE INDEX events_root ON events(root_id, position)",
            "CREATE INDEX events_actor ON events(actor, position)",
            "CREATE INDEX events_team ON events(team, position) WHERE team IS NOT NULL",
            """CREATE TABLE items (
                item_id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                kind TEXT NOT NULL,
                root_id TEXT
            )""",
            "CREATE INDEX items_owner ON items(owner)",
            """CREATE TABLE links (
                item_id TEXT PRIMARY KEY,
                parent_id TEXT,
                clock INTEGER NOT NULL,
                event_id TEXT NOT NULL
            )""",
            """CREATE TABLE sharing (
                root_id TEXT NOT NULL,
                actor TEXT NOT NULL,
                visibility TEXT NOT NULL,
                partners TEXT NOT NULL,
                clock INTEGER NOT NULL,
                event_id TEXT NOT NULL,
                PRIMARY KEY (root_id, actor)
            )""",
            """CREATE TABLE team_members (
                team TEXT NOT NULL,
                person TEXT NOT NULL,
                joined INTEGER NOT NULL,
                clock INTEGER NOT NULL,
                event_id TEXT NOT NULL,
                PRIMARY KEY (team, person)
            )""",
            "CREATE INDEX team_members_person ON team_members(person)",
            """CREATE TABLE dead_letters (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                subject TEXT NOT NULL,
                raw BLOB NOT NULL,
                reason TEXT NOT NULL,
                digest TEXT NOT NULL UNIQUE,
                received_at TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        "drop the two events indexes no query uses",
        # events_actor: no query filters on the actor alone; events_waiting: the
        # unresolved-children lookup is served by events_root (root_id IS NULL). Each
        # was one more B-tree insert per stored event.
        ("DROP INDEX IF EXISTS events_actor", "DROP INDEX IF EXISTS events_waiting"),
    ),
    (
        3,
        "the ownership rule: held events and whose device a dead letter came from",
        (
            """CREATE TABLE held (
                event_id TEXT PRIMARY KEY,
                missing TEXT,
                reason TEXT,
                released_at INTEGER
            )""",
            "CREATE INDEX held_missing ON held(missing) WHERE missing IS NOT NULL",
            "CREATE INDEX held_released ON held(released_at) WHERE released_at IS NOT NULL",
            "ALTER TABLE dead_letters ADD COLUMN person TEXT",
            "ALTER TABLE dead_letters ADD COLUMN event_id TEXT",
            "CREATE INDEX dead_letters_person ON dead_letters(person, id)",
            # Events stored before the rule, still waiting for what they name: held now.
            """INSERT INTO held(event_id, missing)
            SELECT e.id, e.ref_id FROM events e
            WHERE e.root_id IS NULL AND e.ref_id IS NOT NULL AND e.ref_id <> e.id
                AND NOT EXISTS (SELECT 1 FROM events p WHERE p.id = e.ref_id)""",
            "UPDATE events SET ref_id = NULL WHERE id IN (SELECT event_id FROM held)",
        ),
    ),
    (
        4,
        "the working set's partition reads: events by actor, kudos by the root they name",
        # A replica with a memory budget folds one partition (a team's people) on demand:
        # their own events by actor, and kudos others gave on their items by root.
        (
            "CREATE INDEX events_actor ON events(actor, position)",
            "CREATE INDEX events_kudos ON events(root_id) WHERE type = 'kudos.given'",
        ),
    ),
)
"""Numbered schema steps; a step runs once and is recorded in ``schema_migrations``."""

EVENT_COLUMNS = "position, id, actor, type, root_id, team, raw"

MAY_SEE = """
    e.actor = :person
    OR r.owner = :person
    OR (s.visibility = 'partners'
        AND EXISTS (SELECT 1 FROM json_each(s.partners) p WHERE p.value = :person))
    OR (s.visibility = 'team' AND EXISTS (
        SELECT 1 FROM team_members mine
        JOIN team_members theirs ON theirs.team = mine.team
        WHERE mine.person = :person AND mine.joined AND theirs.person = r.owner AND theirs.joined))
    OR (e.team IS NOT NULL AND EXISTS (
        SELECT 1 FROM team_members m WHERE m.team = e.team AND m.person = :person AND m.joined))
"""
"""Whether ``:person`` may see event ``e`` now (joined with its root item ``r`` and the
owner's sharing ``s``): the one visibility rule of the pull and of the referents it vouches
for. See ServerStore.visible_events_after."""

VISIBLE = f"""
SELECT e.position, e.id, e.actor, e.type, e.root_id, e.team, e.raw
FROM events e
LEFT JOIN items r ON r.item_id = e.root_id
LEFT JOIN sharing s ON s.root_id = e.root_id AND s.actor = r.owner
WHERE e.position > :after AND (
{MAY_SEE})
ORDER BY e.position
LIMIT :limit
"""


REVEALED = """
WITH RECURSIVE
changed_roots(root) AS (
    SELECT s.root_id FROM sharing s
    JOIN events w ON w.id = s.event_id
    JOIN items r ON r.item_id = s.root_id
    WHERE w.position > :checked AND r.owner <> :person
    UNION
    SELECT m.root_id FROM links l
    JOIN events w ON w.id = l.event_id
    JOIN events m ON m.id = l.item_id
    WHERE w.position > :checked AND m.root_id IS NOT NULL
    UNION
    SELECT i.item_id FROM team_members t
    JOIN events w ON w.id = t.event_id
    JOIN team_members o ON o.team = t.team AND o.joined
    JOIN items i ON i.item_id = i.root_id
        AND i.owner = CASE WHEN t.person = :person THEN o.person ELSE t.person END
    WHERE w.position > :checked AND t.joined
),
changed_teams(team) AS (
    SELECT t.team FROM team_members t
    JOIN events w ON w.id = t.event_id
    WHERE w.position > :checked AND t.joined AND t.person = :person
),
late(id, bound) AS (
    SELECT c.id, t.position FROM events t
    JOIN events c ON c.ref_id = t.id
    WHERE t.position > :checked AND c.id <> c.ref_id AND c.position < t.position
    UNION
    SELECT c.id, late.bound FROM late
    JOIN events c ON c.ref_id = late.id
    WHERE c.id <> c.ref_id AND c.position < late.bound
),
candidates(position) AS (
    SELECT e.position FROM events e
    WHERE e.root_id IN (SELECT root FROM changed_roots) AND e.position <= :after
    UNION
    SELECT e.position FROM events e
    WHERE e.team IN (SELECT team FROM changed_teams) AND e.position <= :after
    UNION
    SELECT e.position FROM late JOIN events e ON e.id = late.id WHERE e.position <= :after
    UNION
    SELECT e.position FROM held h JOIN events e ON e.id = h.event_id
    WHERE h.released_at > :checked AND e.position <= :after
)
SELECT min(e.position)
FROM events e
LEFT JOIN items r ON r.item_id = e.root_id
LEFT JOIN sharing s ON s.root_id = e.root_id AND s.actor = r.owner
WHERE e.position IN (SELECT position FROM candidates) AND e.actor <> :person AND (
    r.owner = :person
    OR (s.visibility = 'partners'
        AND EXISTS (SELECT 1 FROM json_each(s.partners) p WHERE p.value = :person))
    OR (s.visibility = 'team' AND EXISTS (
        SELECT 1 FROM team_members mine
        JOIN team_members theirs ON theirs.team = mine.team
        WHERE mine.person = :person AND mine.joined AND theirs.person = r.owner
            AND theirs.joined))
    OR (e.team IS NOT NULL AND EXISTS (
        SELECT 1 FROM team_members m WHERE m.team = e.team AND m.person = :person
            AND m.joined))
)
"""
"""Lowest position a pull must rescan from; see ``ServerStore.reveal_floor``. The rule of
visibility is the one of ``VISIBLE``; an own event (``e.actor = person``) is always visible,
so it is never revealed."""


VOUCHED = f"""
SELECT e.id, e.actor, e.type
FROM events e
LEFT JOIN held h ON h.event_id = e.id AND h.released_at IS NULL
LEFT JOIN items r ON r.item_id = e.root_id
LEFT JOIN sharing s ON s.root_id = e.root_id AND s.actor = r.owner
WHERE e.id IN (SELECT value FROM json_each(:ids)) AND h.event_id IS NULL AND NOT coalesce((
{MAY_SEE}), 0)
"""
"""The accepted events among ``:ids`` that ``:person`` may not see now (the negation of
``VISIBLE``'s rule); see ``ServerStore.vouched``."""


PARTITION_POSITIONS = """
SELECT position FROM events
WHERE actor IN (SELECT value FROM json_each(:people)) AND position > :after AND position <= :upto
UNION ALL
SELECT position FROM events INDEXED BY events_team  -- not a scan of every position
WHERE team IS NOT NULL AND position > :after AND position <= :upto
    AND actor NOT IN (SELECT value FROM json_each(:people))
UNION ALL
SELECT e.position FROM events e INDEXED BY events_kudos
CROSS JOIN items i ON i.item_id = e.root_id  -- from the kudos: not a probe per item owned
WHERE e.type = 'kudos.given' AND e.position > :after AND e.position <= :upto
    AND i.owner IN (SELECT value FROM json_each(:people))
    AND e.actor NOT IN (SELECT value FROM json_each(:people))
UNION ALL
SELECT position FROM events
WHERE root_id IN (SELECT value FROM json_each(:roots))
    AND position > :after AND position <= :upto
    AND actor NOT IN (SELECT value FROM json_each(:people))
"""
"""The positions of a partition's events in ``(:after, :upto]`` (see
``ServerStore.partition_events``), unordered: the people's own come from the covering
``events_actor`` index without reading a row. The kudos on their items are found from the
kudos (a scan of the partial ``events_kudos`` index) rather than from every item the
people own: a team owns ~100,000 items a year, and probing each cost 0.3 s even for an
empty tail after a partition's snapshot."""

ROWS_AT = f"""
SELECT {", ".join("e." + column for column in EVENT_COLUMNS.split(", "))}
FROM json_each(:positions) j JOIN events e ON e.position = j.value
"""
"""The events at the positions of the JSON array ``:positions`` (sorted: rows are then
read in the table's own order, a page once, and come back in it; the caller checks).
Sorting whole rows instead (``ORDER BY`` over the union) copied each into a temporary
B-tree: 2.2x slower for a team of 118,000 events."""

FOREIGN_ROOTS = """
SELECT DISTINCT e.root_id FROM events e JOIN items r ON r.item_id = e.root_id
WHERE e.id IN (SELECT value FROM json_each(:ids)) AND e.position <= :upto
    AND r.owner NOT IN (SELECT value FROM json_each(:people))
"""
"""The roots, owned outside ``:people``, of the events ``:ids``."""

ACCEPTED_BY = """
SELECT e.id, e.actor, e.type FROM events e
LEFT JOIN held h ON h.event_id = e.id
WHERE e.id IN (SELECT value FROM json_each(:ids)) AND e.position <= :upto
    AND (h.event_id IS NULL OR h.released_at <= :upto)
"""
"""Of the events ``:ids``, those the ownership rule had accepted by position ``:upto``: not
held, or released (accepted late) by then (see ``ServerStore.accepted_referents``)."""

KUDOS_NAMING = """
SELECT json_extract(CAST(e.raw AS TEXT), '$.body.completion'), e.actor, e.position
FROM events e
WHERE e.type = 'kudos.given' AND e.position <= :upto AND (
    e.ref_id IN (SELECT value FROM json_each(:ids))
    OR e.id IN (SELECT event_id FROM held WHERE missing IN (SELECT value FROM json_each(:ids))))
"""
"""Kudos naming the completions ``:ids`` (see ``ServerStore.kudos_naming``): accepted ones
by their ref, held ones by what they wait for."""
