"""The SQL text of the PostgreSQL event store: its migrations and its queries
(``server.store.postgres`` runs them)."""

from __future__ import annotations

from server.migrations import Migration

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,
        "events, dead letters and the access-control indexes",
        (
            """CREATE TABLE events (
                position bigint PRIMARY KEY,
                id text COLLATE "C" NOT NULL UNIQUE,
                actor text NOT NULL,
                type text NOT NULL,
                ref_id text COLLATE "C",
                root_id text COLLATE "C",
                team text,
                subject text NOT NULL,
                raw bytea NOT NULL,
                stored_at timestamptz NOT NULL
            )""",
            "CREATE INDEX events_ref ON events(ref_id)",
            "CREATE INDEX events_waiting ON events(ref_id) WHERE root_id IS NULL",
            "CREATE INDEX events_root ON events(root_id, position)",
            "CREATE INDEX events_actor ON events(actor, position)",
            "CREATE INDEX events_team ON events(team, position) WHERE team IS NOT NULL",
            """CREATE TABLE event_positions (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                last bigint NOT NULL
            )""",
            "INSERT INTO event_positions(singleton, last) VALUES (true, 0)",
            """CREATE TABLE items (
                item_id text COLLATE "C" PRIMARY KEY,
                owner text NOT NULL,
                kind text NOT NULL,
                root_id text COLLATE "C"
            )""",
            "CREATE INDEX items_owner ON items(owner)",
            """CREATE TABLE links (
                item_id text COLLATE "C" PRIMARY KEY,
                parent_id text COLLATE "C",
                clock bigint NOT NULL,
                event_id text COLLATE "C" NOT NULL
            )""",
            """CREATE TABLE sharing (
                root_id text COLLATE "C" NOT NULL,
                actor text NOT NULL,
                visibility text NOT NULL,
                partners jsonb NOT NULL,
                clock bigint NOT NULL,
                event_id text COLLATE "C" NOT NULL,
                PRIMARY KEY (root_id, actor)
            )""",
            """CREATE TABLE team_members (
                team text NOT NULL,
                person text NOT NULL,
                joined boolean NOT NULL,
                clock bigint NOT NULL,
                event_id text COLLATE "C" NOT NULL,
                PRIMARY KEY (team, person)
            )""",
            "CREATE INDEX team_members_person ON team_members(person)",
            """CREATE TABLE dead_letters (
                id bigserial PRIMARY KEY,
                subject text NOT NULL,
                raw bytea NOT NULL,
                reason text NOT NULL,
                digest text NOT NULL UNIQUE,
                received_at timestamptz NOT NULL
            )""",
        ),
    ),
    (
        2,
        "drop the two events indexes no query uses",
        # events_actor: no query filters on the actor alone; events_waiting: unresolved
        # children are found through events_ref. Each was one more B-tree insert per event.
        ("DROP INDEX IF EXISTS events_actor", "DROP INDEX IF EXISTS events_waiting"),
    ),
    (
        3,
        "the ownership rule: held events and whose device a dead letter came from",
        (
            """CREATE TABLE held (
                event_id text COLLATE "C" PRIMARY KEY,
                missing text COLLATE "C",
                reason text,
                released_at bigint
            )""",
            "CREATE INDEX held_missing ON held(missing) WHERE missing IS NOT NULL",
            "CREATE INDEX held_released ON held(released_at) WHERE released_at IS NOT NULL",
            "ALTER TABLE dead_letters ADD COLUMN person text",
            "ALTER TABLE dead_letters ADD COLUMN event_id text",
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
    e.actor = $1
    OR r.owner = $1
    OR (s.visibility = 'partners' AND s.partners ? $1)
    OR (s.visibility = 'team' AND EXISTS (
        SELECT 1 FROM team_members mine
        JOIN team_members theirs ON theirs.team = mine.team
        WHERE mine.person = $1 AND mine.joined AND theirs.person = r.owner AND theirs.joined))
    OR (e.team IS NOT NULL AND EXISTS (
        SELECT 1 FROM team_members m WHERE m.team = e.team AND m.person = $1 AND m.joined))
"""
"""Whether ``$1`` may see event ``e`` now (joined with its root item ``r`` and the owner's
sharing ``s``): the one visibility rule of the pull and of the referents it vouches for."""

VISIBLE = f"""
SELECT e.position, e.id, e.actor, e.type, e.root_id, e.team, e.raw
FROM events e
LEFT JOIN items r ON r.item_id = e.root_id
LEFT JOIN sharing s ON s.root_id = e.root_id AND s.actor = r.owner
WHERE e.position > $2 AND (
{MAY_SEE})
ORDER BY e.position
LIMIT $3
"""


VOUCHED = f"""
SELECT e.id, e.actor, e.type
FROM events e
LEFT JOIN held h ON h.event_id = e.id AND h.released_at IS NULL
LEFT JOIN items r ON r.item_id = e.root_id
LEFT JOIN sharing s ON s.root_id = e.root_id AND s.actor = r.owner
WHERE e.id = ANY($2::text[]) AND h.event_id IS NULL AND NOT coalesce((
{MAY_SEE}), false)
"""
"""The accepted events among ``$2`` that ``$1`` may not see now (the negation of
``VISIBLE``'s rule); see ``ServerStore.vouched``."""


PARTITION = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE actor = ANY($1::text[]) AND position > $2 AND position <= $3
UNION ALL
SELECT {EVENT_COLUMNS} FROM events
WHERE team IS NOT NULL AND position > $2 AND position <= $3 AND NOT actor = ANY($1::text[])
UNION ALL
SELECT {EVENT_COLUMNS} FROM events
WHERE type = 'kudos.given'
    AND root_id IN (SELECT item_id FROM items WHERE owner = ANY($1::text[]))
    AND position > $2 AND position <= $3 AND NOT actor = ANY($1::text[])
UNION ALL
SELECT {EVENT_COLUMNS} FROM events
WHERE root_id = ANY($4::text[]) AND position > $2 AND position <= $3
    AND NOT actor = ANY($1::text[])
ORDER BY position
"""
"""A partition's events in ``($2, $3]`` (see ``ServerStore.partition_events``)."""

FOREIGN_ROOTS = """
SELECT DISTINCT e.root_id FROM events e JOIN items r ON r.item_id = e.root_id
WHERE e.id = ANY($1::text[]) AND e.position <= $3 AND NOT r.owner = ANY($2::text[])
"""
"""The roots, owned outside ``$2``, of the events ``$1``."""


ACCEPTED_BY = """
SELECT e.id, e.actor, e.type FROM events e
LEFT JOIN held h ON h.event_id = e.id
WHERE e.id = ANY($1::text[]) AND e.position <= $2
    AND (h.event_id IS NULL OR h.released_at <= $2)
"""
"""Of the events ``$1``, those the ownership rule had accepted by position ``$2``: not held,
or released (accepted late) by then (see ``ServerStore.accepted_referents``)."""


KUDOS_NAMING = """
SELECT convert_from(e.raw, 'UTF8')::jsonb #>> '{body,completion}' AS completion,
    e.actor, e.position
FROM events e
WHERE e.type = 'kudos.given' AND e.position <= $2 AND (
    e.ref_id = ANY($1::text[])
    OR e.id IN (SELECT event_id FROM held WHERE missing = ANY($1::text[])))
"""
"""Kudos naming the completions ``$1`` (see ``ServerStore.kudos_naming``): accepted ones
by their ref, held ones by what they wait for."""


REVEALED = """
WITH RECURSIVE
changed_roots(root) AS (
    SELECT s.root_id FROM sharing s
    JOIN events w ON w.id = s.event_id
    JOIN items r ON r.item_id = s.root_id
    WHERE w.position > $2 AND r.owner <> $1
    UNION
    SELECT m.root_id FROM links l
    JOIN events w ON w.id = l.event_id
    JOIN events m ON m.id = l.item_id
    WHERE w.position > $2 AND m.root_id IS NOT NULL
    UNION
    SELECT i.item_id FROM team_members t
    JOIN events w ON w.id = t.event_id
    JOIN team_members o ON o.team = t.team AND o.joined
    JOIN items i ON i.item_id = i.root_id
        AND i.owner = CASE WHEN t.person = $1 THEN o.person ELSE t.person END
    WHERE w.position > $2 AND t.joined
),
changed_teams(team) AS (
    SELECT t.team FROM team_members t
    JOIN events w ON w.id = t.event_id
    WHERE w.position > $2 AND t.joined AND t.person = $1
),
late(id, bound) AS (
    SELECT c.id, t.position FROM events t
    JOIN events c ON c.ref_id = t.id
    WHERE t.position > $2 AND c.id <> c.ref_id AND c.position < t.position
    UNION
    SELECT c.id, late.bound FROM late
    JOIN events c ON c.ref_id = late.id
    WHERE c.id <> c.ref_id AND c.position < late.bound
),
candidates(position) AS (
    SELECT e.position FROM events e
    WHERE e.root_id IN (SELECT root FROM changed_roots) AND e.position <= $3
    UNION
    SELECT e.position FROM events e
    WHERE e.team IN (SELECT team FROM changed_teams) AND e.position <= $3
    UNION
    SELECT e.position FROM late JOIN events e ON e.id = late.id WHERE e.position <= $3
    UNION
    SELECT e.position FROM held h JOIN events e ON e.id = h.event_id
    WHERE h.released_at > $2 AND e.position <= $3
)
SELECT min(e.position)
FROM events e
LEFT JOIN items r ON r.item_id = e.root_id
LEFT JOIN sharing s ON s.root_id = e.root_id AND s.actor = r.owner
WHERE e.position IN (SELECT position FROM candidates) AND e.actor <> $1 AND (
    r.owner = $1
    OR (s.visibility = 'partners' AND s.partners ? $1)
    OR (s.visibility = 'team' AND EXISTS (
        SELECT 1 FROM team_members mine
        JOIN team_members theirs ON theirs.team = mine.team
        WHERE mine.person = $1 AND mine.joined AND theirs.person = r.owner
            AND theirs.joined))
    OR (e.team IS NOT NULL AND EXISTS (
        SELECT 1 FROM team_members m WHERE m.team = e.team AND m.person = $1
            AND m.joined))
)
"""
"""Lowest position a pull must rescan from; see ``ServerStore.reveal_floor``. The rule of
visibility is the one of ``VISIBLE``; an own event (``e.actor = person``) is always visible,
so it is never revealed."""
