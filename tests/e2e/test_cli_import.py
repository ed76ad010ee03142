"""Export / import: idempotent JSON Lines, the CSV journal, bad rows rejected whole."""

from __future__ import annotations

from pathlib import Path

from milepost_testkit.cli import Cli
from tests.e2e.conftest import event_count


def test_export_import_twice_changes_nothing(ready: Cli, tmp_path: Path) -> None:
    objective = ready.new("objective", "Grow", "--cycle", "2026-Q1")
    kr = ready.new("kr", objective, "Signups", "--start", "0", "--target", "100")
    ready.ok("checkin", kr, "30")
    backup = tmp_path / "backup.jsonl"
    ready.ok("export", "--output", str(backup))
    assert len(backup.read_text().splitlines()) == 3

    fresh = Cli(tmp_path / "other")
    fresh.ok("init", "--person", "ava", "--device", "desktop")
    assert fresh.json("import", str(backup))["added"] == 3
    second = fresh.json("import", str(backup))
    assert second["added"] == 0 and second["unchanged"] == 3
    assert fresh.json("status") == ready.json("status")
    assert fresh.json("rebuild", "--check")["agree"] is True
    since = fresh.ok("export", "--since", "2026-01-06")
    assert since == ""


def test_csv_journal_import(ready: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "journal.csv"
    journal.write_text(
        "Date,Indicator,Observation,Impact\n"
        "2026-01-02,Customer empathy,Asked users first,positive\n"
        "2026-01-03,,Skipped the review,negative\n"
        "2026-01-04,Customer empathy,Users noticed,more signups\n"
    )
    first = ready.json("import", str(journal))
    assert first == {"rows": 3, "added": 4, "unchanged": 0, "skipped": 0}
    again = ready.json("import", str(journal))
    assert again["added"] == 0
    log = ready.json("log", "--limit", "0")
    assert [e["event"]["body"]["type"] for e in log].count("indicator.defined") == 1
    assert ready.json("rebuild", "--check")["agree"] is True


def test_bad_csv_rejected_whole_with_every_line(ready: Cli, tmp_path: Path) -> None:
    journal = tmp_path / "bad.csv"
    journal.write_text(
        "date,indicator,observation,impact\n"
        "2026-01-02,Empathy,Fine,\n"
        "2026-02-30,Empathy,Bad date,\n"
        "2026-01-04,Empathy,,\n"
    )
    done = ready.run("import", str(journal))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].endswith(":3: date '2026-02-30' is not a real YYYY-MM-DD date")
    assert ":4: observation is empty" in lines[1]
    assert lines[-1].startswith("milepost: ") and "nothing imported" in lines[-1]
    assert event_count(ready) == 0
    skipped = ready.run("import", str(journal), "--skip-bad", "--json")
    assert skipped.returncode == 0 and '"added":2' in skipped.stdout
    assert skipped.stderr.count("skipped ") == 2
