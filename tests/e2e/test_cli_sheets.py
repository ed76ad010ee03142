"""The sheets people keep: column mappings (remembered per file name), --dry-run, date
formats detected or asked for, .xlsx, weekly key-result values, CSV export."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import openpyxl

from milepost_testkit.cli import Cli
from tests.e2e.conftest import event_count

NOW = "2026-03-20T09:00:00+00:00"
MAPPING = 'date=Week,indicator=Indicator,observation="What happened",impact=Positive/Negative'


def test_a_real_journal_sheet_with_mapping_dates_and_dry_run(ready: Cli, tmp_path: Path) -> None:
    cli = ready
    sheet = tmp_path / "journal.csv"
    sheet.write_text(
        "Week,Indicator,What happened,Positive/Negative\n"
        "3/2/2026,Empathy,Called three users,Positive\n"
        "3/9/2026,Empathy,Skipped the user call,Negative\n"
        "3/10/2026,,Paired with support,Positive\n"
    )
    # Its headers are recognised (Week, What happened, Positive/Negative)...
    line = cli.fails("import", str(sheet), now=NOW)
    assert "can be read as" in line
    # ...a sheet in other words needs --columns.
    french = tmp_path / "journal-fr.csv"
    french.write_text("Semaine,Ce qui s'est passé\n2026-03-02,Appel client\n")
    line = cli.fails("import", str(french), now=NOW)
    assert "no 'date' column" in line and "--columns date=" in line
    mapped = "date=Semaine,observation=Ce qui s'est passé"
    assert cli.json("import", str(french), "--columns", mapped, now=NOW)["added"] == 1
    line = cli.fails("import", str(sheet), "--columns", MAPPING, now=NOW)
    assert "can be read as" in line and "--date-format" in line  # 3/2: March or February?
    preview = cli.ok(
        "import", str(sheet), "--columns", MAPPING, "--date-format", "MM/DD/YYYY", "--dry-run",
        now=NOW,
    )  # fmt: skip
    assert "2026-03-02  new indicator 'Empathy'" in preview
    assert "2026-03-09  - lesson [Empathy]: Skipped the user call" in preview
    assert "nothing was stored" in preview
    assert event_count(cli) == 1  # only the French sheet's entry
    done = cli.json(
        "import", str(sheet), "--columns", MAPPING, "--date-format", "MM/DD/YYYY", now=NOW
    )
    assert done["added"] == 4
    # The mapping and date format are remembered for this file name.
    assert cli.json("import", str(sheet), now=NOW)["added"] == 0
    status = cli.ok("status", now=NOW)
    assert "− Skipped the user call" in status
    # Exported as a sheet, it reads back into another profile as the same journal.
    out = tmp_path / "export.csv"
    cli.ok("export", "--format", "csv", "--output", str(out), now=NOW)
    exported = out.read_text().splitlines()
    assert exported[0] == "date,indicator,observation,impact"
    assert sorted(exported[1:]) == [
        "2026-03-02,,Appel client,positive",
        "2026-03-02,Empathy,Called three users,positive",
        "2026-03-09,Empathy,Skipped the user call,negative",
        "2026-03-10,,Paired with support,positive",
    ]


def test_unambiguous_dates_are_detected_and_bad_rows_reported(ready: Cli, tmp_path: Path) -> None:
    cli = ready
    sheet = tmp_path / "notes.csv"
    sheet.write_text(
        "date,observation\n13/2/2026,A day above twelve settles it\n"
        "3/2/2026,The 3rd of February\n31/2/2026,No such day\n"
    )
    done = cli.run("import", str(sheet), now=NOW)
    assert done.returncode == 1
    assert f"{sheet}:4: date '31/2/2026' is not a real DD/MM/YYYY date" in done.stderr
    skipped = cli.run("import", str(sheet), "--skip-bad", now=NOW)
    assert skipped.returncode == 0 and "notes.csv:4:" in skipped.stderr
    days = sorted(e["event"]["occurred_at"][:10] for e in cli.json("log", "--limit", "0"))
    assert days == ["2026-02-03", "2026-02-13"]


def test_weekly_key_result_values_from_xlsx_become_check_ins(ready: Cli, tmp_path: Path) -> None:
    cli = ready
    cli.ok("objective", "Grow", "--cycle", "2026-Q1")
    cli.ok("kr", "o1", "Visitors", "--start", "0", "--target", "3000")
    cli.ok("kr", "o1", "NPS", "--start", "10", "--target", "40")
    cli.ok("checkin", "k2", "12", "--confidence", "at-risk")
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["Week", "Site visits", "NPS"])
    ws.append([date(2026, 2, 2), 800, 15])
    ws.append([date(2026, 2, 9), 1250, None])
    ws.append([date(2026, 2, 16), "lots", 18])
    path = tmp_path / "weekly.xlsx"
    book.save(path)
    # "Site visits" is not a key result's title: map it to k1.
    line = cli.fails("import", str(path), "--sheet", "values", now=NOW)
    assert "'Site visits' names no key result" in line
    done = cli.run("import", str(path), "--sheet", "values", "--columns", "k1=Site visits",
                   now=NOW)  # fmt: skip
    assert done.returncode == 1 and f"{path}:4: Site visits: 'lots' is not a number" in done.stderr
    added = cli.run("import", str(path), "--sheet", "values", "--columns", "k1=Site visits",
                    "--skip-bad", "--json", now=NOW)  # fmt: skip
    assert json.loads(added.stdout)["added"] == 3 and "weekly.xlsx:4:" in added.stderr
    tree = cli.json("status", now=NOW)
    visitors, nps = tree["objectives"][0]["key_results"]
    assert visitors["current"] == 1250
    assert nps["current"] == 15  # Feb 2 is later than the check-in of Jan 5; row 4 was bad
    assert nps["confidence"] == "at-risk"  # imported check-ins keep the last confidence
    out = tmp_path / "values.csv"
    cli.ok("export", "--format", "csv", "--sheet", "values", "--output", str(out), now=NOW)
    rows = out.read_text().splitlines()
    assert rows[0] == "date,Visitors,NPS"
    assert "2026-02-02,800,15" in rows and "2026-02-09,1250," in rows
