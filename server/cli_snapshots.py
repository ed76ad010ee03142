"""``milepost-server snapshot …``: take, list and check snapshots of the projection state,
of all history or of one working-set partition (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from cyclopts import App, Parameter

from server.cli_common import AsJson, CliError, Database, open_with_snapshots, print_report

snapshot_app = App(
    name="snapshot",
    help="Snapshots of the projection state: a restart loads the newest and folds the rest.\n\n"
    "Example: milepost-server snapshot take && milepost-server snapshot check",
)

PartitionKey = Annotated[
    str,
    Parameter(
        help="A working-set partition (team:NAME or person:NAME; with --memory-budget each"
        " keeps snapshots of its own) instead of all history."
    ),
]


def _checked_key(partition: str) -> str:
    from server.partition import split_key

    if partition and split_key(partition) is None:
        raise CliError(f"--partition must be team:NAME or person:NAME, not {partition!r}", 2)
    return partition


def _snapshot_json(info: Any, valid: str | None) -> dict[str, Any]:
    return {
        "id": info.id,
        "position": info.position,
        "fold_version": info.fold_version,
        "size": info.size,
        "taken_at": info.taken_at.isoformat(),
        "seconds": round(info.seconds, 3),
        "loadable": valid is None,
        "why_not": valid,
    }


@snapshot_app.command(name="take")
def snapshot_take(
    *,
    partition: PartitionKey = "",
    partitions: Annotated[
        bool,
        Parameter(
            negative="",
            help="Snapshot every team's and person's working-set partition whose newest"
            " snapshot is --snapshot-every of its events behind (or missing, or of other"
            " members), one at a time: each then loads from a snapshot, asked for or not.",
        ),
    ] = False,
    snapshot_every: Annotated[
        int | None,
        Parameter(
            help="With --partitions: how many of its events a partition's snapshot may be"
            " behind [default: 5000, as the server's]."
        ),
    ] = None,
    database: Database = None,
    as_json: AsJson = False,
) -> int:
    """Fold every stored event and store the state as a snapshot now (or a partition's).

    Example: milepost-server snapshot take --partitions
    """
    key = _checked_key(partition)
    if partitions and key:
        raise CliError("give --partition KEY or --partitions, not both", 2)
    if snapshot_every is not None and snapshot_every < 1:
        raise CliError("--snapshot-every must be at least 1", 2)
    if partitions or key:
        from server.working_set import SNAPSHOT_AFTER

        every = SNAPSHOT_AFTER if snapshot_every is None else snapshot_every
        return _take_partitions(key, every, database, as_json)
    from server.metrics import SnapshotStats
    from server.projection import ProjectionFollower
    from server.snapshots import service as snapshotting

    async def go() -> dict[str, Any]:
        async with open_with_snapshots(database) as (opened, snapshots):
            follower = ProjectionFollower(opened.store)
            stats = SnapshotStats()
            began = time.perf_counter()
            await snapshotting.load_newest(opened.store, snapshots, follower, stats)
            await follower.catch_up()
            info = await snapshotting.take(opened.store, snapshots, follower, stats)
            if info is None:
                raise CliError("the store changed while the snapshot was taken; try again")
            report = _snapshot_json(info, None)
            report["total_seconds"] = round(time.perf_counter() - began, 3)
            return report

    report = asyncio.run(go())
    print_report(
        report,
        as_json,
        lambda: [
            f"snapshot {report['id']} at position {report['position']}: "
            f"{report['size']:,} bytes in {report['total_seconds']}s"
        ],
    )
    return 0


def _take_partitions(key: str, every: int, database: str | None, as_json: bool) -> int:
    """``snapshot take --partition KEY`` (taken whatever its newest) or ``--partitions``
    (each stale one), each folded alone and let go before the next."""
    from server.partition import split_key
    from server.working_set import WorkingSet

    async def go() -> dict[str, Any]:
        async with open_with_snapshots(database) as (opened, snapshots):
            began = time.perf_counter()
            working_set = WorkingSet(opened.store, 1, snapshot_after=every)
            working_set.snapshots = snapshots
            upto = await working_set.start()
            memberships = working_set.directory.memberships
            if key:
                kind, name = split_key(key) or ("", "")
                if kind == "team" and not any(team == name for team, _ in memberships):
                    raise CliError(f"no team {name!r}: nobody was ever one of its members")
                if kind == "person" and not any(p == name for _, p in memberships):
                    rows = await opened.store.partition_events(frozenset({name}), 0, upto)
                    if not any(row.actor == name for row in rows):
                        raise CliError(f"no person {name!r}: the store has no event of theirs")
                wanted = [
                    working_set.team_key(name) if kind == "team" else working_set.person_key(name)
                ]
            else:
                wanted = [working_set.team_key(t) for t in sorted({t for t, _ in memberships})]
                wanted += [working_set.person_key(p) for p in sorted({p for _, p in memberships})]
            taken: list[dict[str, Any]] = []
            fresh = 0
            most_behind = 0  # of the partitions' newest snapshots, after this run
            for wanted_key, people in wanted:
                info, behind = await working_set.refresh_snapshot(
                    wanted_key, people, upto, force=bool(key)
                )
                most_behind = max(most_behind, behind or 0)
                if info is None:
                    fresh += behind is not None
                    continue
                item = _snapshot_json(info, None)
                item["partition"] = wanted_key
                taken.append(item)
                if not as_json:
                    print(
                        f"{wanted_key}: snapshot {info.id} at position {info.position}, "
                        f"{info.size:,} bytes",
                        flush=True,
                    )
            return {
                "position": upto,
                "taken": taken,
                "fresh": fresh,
                "most_behind": most_behind,
                "seconds": round(time.perf_counter() - began, 3),
            }

    report = asyncio.run(go())
    print_report(
        report,
        as_json,
        lambda: [
            f"{len(report['taken'])} partition snapshots taken at position "
            f"{report['position']} ({report['fresh']} fresh enough, the most behind by"
            f" {report['most_behind']:,} events) in {report['seconds']}s"
        ],
    )
    if key and not report["taken"]:
        raise CliError(f"the store changed while {key} was snapshotted; try again")
    return 0


@snapshot_app.command(name="list")
def snapshot_list(
    *, partition: PartitionKey = "", database: Database = None, as_json: AsJson = False
) -> int:
    """List the stored snapshots, newest first, and whether this server could load each.

    Example: milepost-server snapshot list --json
    """
    from server.snapshots import service as snapshotting

    key = _checked_key(partition)

    async def go() -> tuple[list[dict[str, Any]], int]:
        async with open_with_snapshots(database) as (opened, snapshots):
            found = [
                _snapshot_json(info, await snapshotting.why_invalid(opened.store, info))
                for info in await snapshots.listing(key)
            ]
            return found, 0 if key else await snapshots.partition_count()

    found, partitions = asyncio.run(go())
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    if not found and key:
        print(f"no snapshots of {key} yet (taken when it is loaded with --memory-budget)")
    elif not found:
        print("no snapshots of all history yet: milepost-server snapshot take")
    for item in found:
        note = "loadable" if item["loadable"] else f"not loadable: {item['why_not']}"
        print(
            f"{item['id']}\tposition {item['position']}\t{item['size']:,} bytes\t"
            f"{item['taken_at']}\t{note}"
        )
    if partitions:
        print(f"and {partitions:,} snapshots of working-set partitions (--memory-budget)")
    return 0


@snapshot_app.command(name="check")
def snapshot_check(
    snapshot_id: Annotated[
        int | None, Parameter(name="--id", help="The snapshot to check (default: the newest).")
    ] = None,
    *,
    partition: PartitionKey = "",
    database: Database = None,
    as_json: AsJson = False,
) -> int:
    """Compare every user-visible view of a snapshot with a fold of the same events
    (goal trees, drift, reviews, team boards, feeds); exit 1 on any difference, or
    if the snapshot cannot be loaded (corrupt, another fold, another store).

    Example: milepost-server snapshot check
    """
    from projections import persist
    from projections.state import ProjectionState, apply
    from server import rebuild as rb
    from server.snapshots import service as snapshotting

    key = _checked_key(partition)

    async def go() -> dict[str, Any]:
        async with open_with_snapshots(database) as (opened, snapshots):
            listed = await snapshots.listing(key)
            if snapshot_id is not None:
                listed = [info for info in listed if info.id == snapshot_id]
            if not listed:
                raise CliError(
                    f"no snapshot {snapshot_id}"
                    if snapshot_id is not None
                    else f"no snapshots of {key} yet"
                    if key
                    else "no snapshots yet: milepost-server snapshot take"
                )
            info = listed[0]
            reason = await snapshotting.why_invalid(opened.store, info)
            if reason is not None:
                raise CliError(f"snapshot {info.id} cannot be loaded: {reason}")
            blob = await snapshots.blob(info.id)
            if blob is None:
                raise CliError(f"snapshot {info.id} cannot be loaded: its bytes are gone")
            try:
                loaded, _ = persist.decode(blob, info.checksum)
            except persist.SnapshotInvalid as exc:
                raise CliError(f"snapshot {info.id} cannot be loaded: {exc}") from None
            # The fold of the same events: positions 1..position, in order.
            fresh = ProjectionState()
            for event in await rb.stored_events(opened.store, upto=info.position):
                apply(fresh, event)
        # A partition's own views (its team's, or its person's); all of them for all history.
        compared, differ = rb.differences(loaded, fresh, datetime.now(UTC), partition=key or None)
        return {
            "id": info.id,
            "position": info.position,
            "views_compared": compared,
            "differing": differ,
            "equal": not differ,
        }

    report = asyncio.run(go())
    if as_json:
        print(json.dumps(report, indent=2))
    elif report["equal"]:
        print(
            f"snapshot {report['id']} at position {report['position']}: "
            f"{report['views_compared']} views equal a fold of the same events"
        )
    else:
        print(
            f"snapshot {report['id']}: {len(report['differing'])} views differ: "
            + ", ".join(report["differing"])
        )
    if not report["equal"]:
        raise CliError(f"snapshot {report['id']} differs from a fold of the same events")
    return 0
