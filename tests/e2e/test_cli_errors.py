"""Bad input and faults: one line on stderr, exit 1 (or 2 for usage), nothing written."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from milepost_testkit.cli import Cli
from tests.e2e.conftest import event_count


def test_commands_before_init(cli: Cli) -> None:
    line = cli.fails("status")
    assert "milepost init" in line
    cli.fails("checkin", "deadbeef", "3")


def test_usage_errors_exit_2(ready: Cli) -> None:
    assert "see milepost --help" in ready.fails("frobnicate", code=2)
    ready.fails("objective", code=2)  # missing title
    ready.fails("checkin", "abcdef", "--confidence", "great", code=2)


def test_bad_values_write_nothing(ready: Cli) -> None:
    cli = ready
    objective = cli.new("objective", "Grow", "--cycle", "2026-Q1")
    kr = cli.new("kr", objective, "Signups", "--start", "0", "--target", "100")
    milestone = cli.new("milestone", "add", "Launch", "--kr", kr)
    other = cli.new("milestone", "add", "Second", "--kr", kr)
    before = event_count(cli)
    assert "percent" in cli.fails("checkin", milestone, "140")
    assert "2026-02-30" in cli.fails("milestone", "add", "Late", "--due", "2026-02-30")
    assert "title" in cli.fails("objective", "", "--cycle", "2026-Q1")
    assert "target must differ from start" in cli.fails(
        "kr", objective, "Flat", "--start", "5", "--target", "5"
    )
    assert "no milestone matches" in cli.fails("milestone", "done", "abcdef12")
    assert "ambiguous" in cli.fails(
        "checkin", milestone[:0] + _common_prefix(cli, milestone, other)
    )
    assert "cycle" in cli.fails("objective", "Bad cycle", "--cycle", "2026-Q5")
    assert "future" in cli.fails("checkin", kr, "5", "--at", "2027-01-01")
    assert event_count(cli) == before


def _common_prefix(cli: Cli, first: str, second: str) -> str:
    ids = {str(e["event"]["id"]).replace("-", "") for e in cli.json("log", "--limit", "0")}
    full = [i for i in ids if i.endswith(first) or i.endswith(second)]
    assert len(full) == 2
    first_id, second_id = full
    assert first_id[:6] == second_id[:6]  # UUIDv7: made seconds apart, same time prefix
    return first_id[:6]


def test_locked_database(ready: Cli) -> None:
    path = ready.home / "ava@laptop.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        line = ready.fails(
            "objective", "Blocked", "--cycle", "2026-Q1",
            extra_env={"MILEPOST_LOCK_TIMEOUT": "0.3"},
        )  # fmt: skip
        assert "locked by another milepost process" in line
    finally:
        holder.rollback()
        holder.close()
    assert event_count(ready) == 0


def test_corrupt_and_foreign_database(ready: Cli) -> None:
    path = ready.home / "ava@laptop.sqlite3"
    for suffix in ("-wal", "-shm"):
        (ready.home / f"ava@laptop.sqlite3{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"garbage, not a database" * 400)
    assert "not a milepost database" in ready.fails("status")
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    assert "not a milepost database" in ready.fails("checkin", "abcdef", "1")
    assert conn is not None


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_folder(ready: Cli, tmp_path: Path) -> None:
    before = event_count(ready)
    if os.geteuid() != 0:
        os.chmod(ready.home / "ava@laptop.sqlite3", 0o444)
        os.chmod(ready.home, 0o555)
        try:
            line = ready.fails("objective", "Nope", "--cycle", "2026-Q1")
        finally:
            os.chmod(ready.home, 0o755)
            os.chmod(ready.home / "ava@laptop.sqlite3", 0o644)
    else:  # root ignores permissions: a read-only file system refuses root too
        with small_tmpfs(tmp_path / "ro", "8m") as mounted:
            shutil.copytree(ready.home, mounted / "home")
            subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
            original = ready.home
            ready.home = mounted / "home"
            try:
                line = ready.fails("objective", "Nope", "--cycle", "2026-Q1")
                # reading needs WAL's shared-memory file too: it fails the same clear way
                assert "read-only" in ready.fails("status")
                subprocess.run(["mount", "-o", "remount,rw", str(mounted)], check=True)
                assert event_count(ready) == before
            finally:
                ready.home = original
    assert "read-only" in line or "cannot" in line
    assert event_count(ready) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_writes_nothing_and_says_so(ready: Cli, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", "1m") as mounted:
        shutil.copytree(ready.home, mounted / "home")
        ready.home = mounted / "home"
        before = event_count(ready)
        filler = mounted / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as out:
            while True:  # fill the disk to the last block
                out.write(b"\0" * 4096)
                out.flush()
        big_note = "x" * 3900
        line = ready.fails("journal", big_note * 1, "--impact", big_note)
        assert "disk" in line.lower() or "full" in line.lower() or "space" in line.lower()
        filler.unlink()
        assert event_count(ready) == before
        ready.ok("journal", "room again")
        assert event_count(ready) == before + 1


def test_done_without_terminal_records_empty_answers(ready: Cli) -> None:
    milestone = ready.new("milestone", "add", "Quiet one")
    ready.ok("done", milestone)
    [standalone] = ready.json("status")["standalone_milestones"]
    assert standalone["state"] == "completed"
    assert standalone["answers"] == {"did": "", "why": "", "outcome": ""}
