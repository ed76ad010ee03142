"""Partition snapshots kept fresh in the background: every so often a replica with a
working set runs ``milepost-server snapshot take --partitions`` as a child process, so
that a team nobody asked for since its events arrived still loads from a snapshot and a
short tail (docs/scaling.md, "Partition snapshots").

A child process, not a task of the server: it folds one partition at a time, each as
large as a team's history, and that memory is returned to the system when it exits
instead of staying in the server's heap; it runs at a lower priority on whatever core
the server leaves idle. Replicas sharing a store share the snapshots: what one took, the
others find fresh and skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_REFRESH_SECONDS = 120.0
"""How long after the start the first refresh runs (the warm-up of the partitions held
at the last stop goes first)."""

STOP_GRACE_SECONDS = 10.0
"""How long a child has to stop after SIGTERM at the server's stop (then it is killed:
a snapshot is listed only once its bytes are whole, so one cut short is never loaded)."""


@dataclass
class RefreshStats:
    """What the refreshes did, for ``/metrics``."""

    runs: int = 0
    failures: int = 0
    taken: int = 0
    seconds: float = 0.0
    most_behind: int | None = None
    """After the last good run: how many of its events the partition whose newest snapshot
    is furthest behind was behind (at most ``--snapshot-every``)."""
    succeeded_at: float | None = None
    """When the last good run ended (``time.time()``)."""


def refresh_command(snapshot_after: int) -> list[str]:
    """The child's command line: this interpreter running the server's CLI, niced."""
    command = [sys.executable, "-m", "server.cli", "snapshot", "take", "--partitions"]
    command += ["--snapshot-every", str(snapshot_after), "--json"]
    nice = shutil.which("nice")
    return [nice, "-n", "10", *command] if nice else command


async def refresh_periodically(
    database: str,
    home: Path,
    every_seconds: float,
    snapshot_after: int,
    stats: RefreshStats,
    stop: asyncio.Event,
) -> None:
    """Every ``every_seconds`` until ``stop``: one refresh of every stale partition's
    snapshot in a child process (a failure logs its last line and waits for the next)."""
    # The location goes by the environment: a PostgreSQL URL's password stays off the
    # command line (``ps`` shows it to every user).
    env = {**os.environ, "MILEPOST_DATABASE": database, "MILEPOST_SERVER_HOME": str(home)}
    # The first run comes soon after the start: after an upgrade that changed the fold,
    # every partition's snapshot is of the old fold, and each team would otherwise be
    # folded from the store on its first request until the interval passed.
    wait = min(every_seconds, FIRST_REFRESH_SECONDS)
    while True:
        with contextlib.suppress(TimeoutError):
            # Replicas started together drift apart by the jitter: the one that runs
            # second finds the first one's snapshots fresh instead of taking them again.
            await asyncio.wait_for(stop.wait(), wait * random.uniform(0.9, 1.1))
        wait = every_seconds
        if stop.is_set():
            return
        began = time.perf_counter()
        child = await asyncio.create_subprocess_exec(
            *refresh_command(snapshot_after),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        finished = asyncio.ensure_future(child.communicate())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({finished, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():
            await _stop_child(child, finished)
            stopping.cancel()
            return
        stopping.cancel()
        out, err = finished.result()
        stats.runs += 1
        stats.seconds += time.perf_counter() - began
        _account(child.returncode, out, err, stats)


def _account(returncode: int | None, out: bytes, err: bytes, stats: RefreshStats) -> None:
    if returncode != 0:
        stats.failures += 1
        lines = err.decode(errors="replace").strip().splitlines() or [f"exit {returncode}"]
        log.warning("refreshing partition snapshots failed: %s", lines[-1])
        return
    try:
        report = json.loads(out)
        taken = len(report["taken"])
        most_behind = int(report["most_behind"])
    except (ValueError, KeyError, TypeError):
        stats.failures += 1
        log.warning("refreshing partition snapshots: unreadable report %r", out[:200])
        return
    stats.taken += taken
    stats.most_behind = most_behind
    stats.succeeded_at = time.time()
    log.info(
        "partition snapshots: %d taken, %d fresh, in %.1f s",
        taken,
        report.get("fresh", 0),
        report.get("seconds", 0.0),
    )


async def _stop_child(
    child: asyncio.subprocess.Process, finished: asyncio.Future[tuple[bytes, bytes]]
) -> None:
    """SIGTERM, then SIGKILL after the grace period; reaped either way."""
    with contextlib.suppress(ProcessLookupError):
        child.terminate()
    try:
        await asyncio.wait_for(asyncio.shield(finished), STOP_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await finished
