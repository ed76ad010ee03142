"""The new user's story, end to end through the real CLI (issue 3, item 8)."""

from __future__ import annotations

from pathlib import Path

from milepost_testkit.cli import Cli

WEEK = ["2026-01-05", "2026-01-12", "2026-01-19"]


def at(day: str) -> str:
    return f"{day}T18:00:00+00:00"


def test_new_user_story(ready: Cli, tmp_path: Path) -> None:
    cli = ready
    objective = cli.new("objective", "Show people how Roads works", "--cycle", "2026-Q1")
    kr = cli.new("kr", objective, "Reach 3,000 visitors to the site", "--start", "0",
                 "--target", "3000", "--unit", "visitors")  # fmt: skip
    profiles = cli.new("milestone", "add", "Create social media profiles", "--kr", kr,
                       "--due", "2026-01-25")  # fmt: skip
    cli.new("milestone", "add", "Improve SEO in the site", "--kr", kr, "--due", "2026-01-31")
    posts = cli.new("milestone", "add", "Post 10 blog posts", "--objective", objective,
                    "--due", "2026-03-20")  # fmt: skip
    linkedin = cli.new("task", "add", profiles, "Create a LinkedIn profile")
    cli.new("task", "add", profiles, "Create a profile on Instagram")
    cli.new("task", "add", profiles, "Create a Mastodon account")
    cli.ok("task", "done", linkedin)

    for week, (visitors, percent) in zip(WEEK, [(120, 30), (410, 60), (800, 90)], strict=True):
        cli.ok("checkin", kr, str(visitors), "--note", f"week of {week}", now=at(week))
        cli.ok("checkin", profiles, str(percent), "--confidence", "on-track", now=at(week))
    cli.ok("checkin", posts, "10", "--confidence", "at-risk", now=at(WEEK[0]))

    empathy = cli.new("indicator", "Customer empathy", "--stage", "team solicits feedback",
                      "--stage", "team anticipates needs unprompted")  # fmt: skip
    cli.new("observe", "We asked five readers what confused them", "--indicator", empathy,
            "--stage", "1", "--at", "2026-01-08", now=at(WEEK[1]))  # fmt: skip
    cli.new("observe", "Launched without asking anyone", "--indicator", empathy, "--negative",
            now=at(WEEK[1]))  # fmt: skip
    cli.new("journal", "Paired with Bo on the landing page", "--impact", "bounce rate down",
            now=at(WEEK[1]))  # fmt: skip

    done = cli.json("done", profiles, "--did", "Opened LinkedIn, Instagram and Mastodon",
                    "--why", "People find Roads where they already are",
                    "--outcome", "120 followers in the first week", now=at(WEEK[2]))  # fmt: skip
    assert done["type"] == "milestone.completed"

    # status: the tree with progress and expected progress
    tree = cli.json("status", now=at("2026-01-20"))
    assert tree["person"] == "ava"
    [goal] = tree["objectives"]
    assert goal["title"] == "Show people how Roads works" and goal["cycle"] == "2026-Q1"
    [key_result] = goal["key_results"]
    assert key_result["current"] == 800 and key_result["target"] == 3000
    assert key_result["progress"] == round(100 * 800 / 3000, 2)
    assert 0 < key_result["expected"] < 100
    by_title = {m["title"]: m for m in key_result["milestones"] + goal["milestones"]}
    completed = by_title["Create social media profiles"]
    assert completed["state"] == "completed" and completed["progress"] == 100
    assert completed["answers"]["outcome"] == "120 followers in the first week"
    assert [t["done"] for t in completed["tasks"]] == [True, False, False]
    assert by_title["Post 10 blog posts"]["status"] == "at-risk"
    plain = cli.ok("status", now=at("2026-01-20"))
    assert "Reach 3,000 visitors to the site" in plain and "\x1b[" not in plain

    # drift at a later date: SEO overdue, the blog posts stale
    drift = cli.json("drift", now=at("2026-02-10"))
    kinds = {(s["kind"], s["subject_title"]) for s in drift["signals"]}
    assert ("overdue", "Improve SEO in the site") in kinds
    assert any(kind == "stale" and title == "Post 10 blog posts" for kind, title in kinds)
    before = cli.json("drift", "--as-of", "2026-01-06", now=at("2026-02-10"))
    assert not any(s["kind"] == "overdue" for s in before["signals"])

    prompt = cli.json("prompt", now=at("2026-02-10"))
    assert {i["title"] for i in prompt["items"]} >= {"Improve SEO in the site"}
    assert prompt["questions"][0] == "What did you do?"

    # review, as JSON and as Markdown
    review = cli.json("review", "--from", "2026-01-01", "--to", "2026-03-31", now=at("2026-02-10"))
    text = str(review)
    assert "Opened LinkedIn, Instagram and Mastodon" in text
    assert "Launched without asking anyone" in text
    report = tmp_path / "review.md"
    cli.ok("review", "--output", str(report), now=at("2026-02-10"))
    markdown = report.read_text()
    assert markdown.startswith("#") and "Create social media profiles" in markdown
    assert "120 followers in the first week" in markdown

    # the views stored incrementally agree with a rebuild; the log has it all
    assert cli.json("rebuild", "--check")["agree"] is True
    log = cli.json("log", "--limit", "0")
    assert all(entry["sync"] == "pending" for entry in log)
    assert len(log) == len(cli.ok("export").splitlines())
    feed = cli.json("feed", "--limit", "5", now=at("2026-02-10"))
    assert len(feed["items"]) == 5

    # status as of an earlier day shows what was known then
    earlier = cli.json("status", "--as-of", "2026-01-12", now=at("2026-02-10"))
    assert earlier["objectives"][0]["key_results"][0]["current"] == 410


def test_corrections_retractions_and_config(ready: Cli) -> None:
    cli = ready
    objective = cli.new("objective", "Grow", "--cycle", "2026-Q1")
    kr = cli.new("kr", objective, "Signups", "--start", "0", "--target", "100")
    first = cli.new("checkin", kr, "10", now=at("2026-01-06"))
    second = cli.new("checkin", kr, "40", now=at("2026-01-07"))
    cli.ok("correct", second, "--value", "45", "--reason", "typo")
    assert cli.json("status")["objectives"][0]["key_results"][0]["current"] == 45
    cli.ok("retract", second, "--reason", "double")
    assert cli.json("status")["objectives"][0]["key_results"][0]["current"] == 10
    assert first
    milestone = cli.new("milestone", "add", "Launch page", "--due", "2026-02-01")
    cli.ok("milestone", "link", milestone, "--kr", kr)
    cli.ok("milestone", "reschedule", milestone, "2026-02-15")
    cli.ok("milestone", "drop", milestone)
    cli.ok("milestone", "restore", milestone)
    cli.ok("pause", "2026-01-10", "2026-01-20", "--reason", "leave")
    cli.ok("share", objective, "team")
    tree = cli.json("status", now=at("2026-01-25"))
    [linked] = tree["objectives"][0]["key_results"][0]["milestones"]
    assert linked["due_on"] == "2026-02-15" and linked["state"] == "open"
    assert tree["objectives"][0]["visibility"] == "team"
    cli.ok("config", "drift.behind_pace_points", "15")
    cli.ok("config", "default-visibility", "partners")
    shown = cli.json("config")
    assert shown["drift"]["behind_pace_points"] == 15
    assert shown["default_visibility"] == "partners"
    assert cli.fails("config", "drift.stale_alert_periods", "0.5").startswith("milepost: invalid")
    assert cli.json("rebuild", "--check")["agree"] is True
    assert cli.json("rebuild")["events"] > 0
