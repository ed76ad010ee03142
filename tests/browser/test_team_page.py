"""The team page in a real Chromium against ``milepost-server run`` and the ``milepost`` CLI:
sign-in by one-time link, the board (never a private item of someone else), the live feed,
kudos reaching the author's device, drift, charts, the printable review, reading without
JavaScript. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from milepost_testkit.sync_world import Device
from tests.browser.conftest import SCREENSHOTS, WebWorld, screenshot, web_world

pytestmark = pytest.mark.slow
KEEP_PDF = False  # True keeps the printed review next to the screenshots, to look at


def quarter(day: date) -> tuple[str, date]:
    """The cycle of the quarter containing ``day`` and its first day."""
    index = (day.month - 1) // 3
    return f"{day.year}-Q{index + 1}", date(day.year, 3 * index + 1, 1)


@dataclass
class Story:
    world: WebWorld
    alice: Device
    bob: Device
    refs: dict[str, str]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """Alice (team ``web``) plans a quarter, checks in and completes a milestone; bob is her
    teammate; both devices synced."""
    root = tmp_path_factory.mktemp("web")
    with web_world(root) as w:
        alice = w.device("alice", "laptop", team="web")
        bob = w.device("bob", "laptop", team="web")
        w.admin("team", "join", "web", "alice", "bob")
        today = datetime.now(UTC).date()
        cycle, first = quarter(today)
        refs: dict[str, str] = {}
        # Planned on the quarter's first day: the check-ins below are back-dated into it
        # (a check-in before its goal existed is refused).
        planned = f"{first.isoformat()}T09:00:00+00:00"
        refs["objective"] = alice.new(
            "objective", "Launch the team page", "--cycle", cycle, "--visibility", "team",
            now=planned,
        )  # fmt: skip
        refs["kr"] = alice.new(
            "kr", refs["objective"], "Weekly readers", "--start", "0", "--target", "100",
            "--unit", "readers", now=planned,
        )  # fmt: skip
        refs["board"] = alice.new(
            "milestone", "add", "Ship the board", "--kr", refs["kr"],
            "--due", (today + timedelta(days=20)).isoformat(),
        )  # fmt: skip
        refs["post"] = alice.new(
            "milestone", "add", "Write the launch post", "--kr", refs["kr"],
            "--due", (today - timedelta(days=3)).isoformat(),
        )  # fmt: skip
        refs["secret"] = alice.new(
            "milestone", "add", "Secret plan ZZPRIVATE", "--visibility", "private"
        )
        refs["feed"] = alice.new(
            "milestone", "add", "Live feed", "--kr", refs["kr"],
            "--due", (today + timedelta(days=30)).isoformat(),
        )  # fmt: skip
        alice.ok("pause", (first + timedelta(days=30)).isoformat(),
                 (first + timedelta(days=36)).isoformat(), "--reason", "leave")  # fmt: skip
        for days, value, confidence in ((10, 10, "on-track"), (24, 18, "on-track"),
                                        (45, 30, "at-risk"), (58, 41, "at-risk")):  # fmt: skip
            moment = first + timedelta(days=days)
            if moment < today:
                alice.ok(
                    "checkin", refs["kr"], str(value), "--confidence", confidence,
                    "--at", moment.isoformat(),
                )  # fmt: skip
        alice.ok("checkin", refs["post"], "40", "--confidence", "off-track", "--note", "blocked")
        alice.ok(
            "done", refs["board"], "--did", "Built the board page",
            "--why", "The team sees progress without the CLI",
            "--outcome", "Three teams use it daily",
        )  # fmt: skip
        refs["indicator"] = alice.new(
            "indicator", "Customer empathy", "--stage", "asks users", "--stage",
            "anticipates needs", "--stage", "teaches others", "--visibility", "team",
        )  # fmt: skip
        week_ago, two_days_ago = today - timedelta(days=9), today - timedelta(days=2)
        alice.ok("observe", "Called three users before the launch", "--indicator",
                 refs["indicator"], "--stage", "2", "--at", week_ago.isoformat())  # fmt: skip
        alice.ok("observe", "Skipped the interviews this week", "--indicator",
                 refs["indicator"], "--negative", "--at", two_days_ago.isoformat())  # fmt: skip
        alice.ok("observe", "Paired with support for a day", "--visibility", "team")
        alice.ok("observe", "ZZPRIVATE note to self", "--visibility", "private")
        bob.new("objective", "Bob's own goal", "--cycle", cycle, "--visibility", "team")
        alice.sync()
        bob.sync()
        yield Story(w, alice, bob, refs)


def signed_in_page(browser: Any, device: Device, **context: Any) -> Any:
    """A fresh browser context signed in through ``milepost web --print``; the page's
    console errors and script errors (a CSP violation included) go to ``page.errors``."""
    link = device.ok("web", "--print").strip()
    assert "/signin/" in link, link
    page = browser.new_context(viewport={"width": 1200, "height": 900}, **context).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    # A failed load's console line does not name the resource: the response does.
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.errors = errors
    page.goto(link)
    page.wait_for_url("**/t/web")
    return page


def test_the_one_time_link_signs_in_once_and_the_board_shows_the_team_goals(
    browser: Any, story: Story
) -> None:
    link = story.alice.ok("web", "--print").strip()
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(link)
    page.wait_for_url("**/t/web")
    assert "page-board" in (page.get_attribute("body", "class") or "")
    text = page.inner_text("main")
    assert "Launch the team page" in text and "Weekly readers" in text
    assert "Secret plan ZZPRIVATE" in text  # alice sees her own private milestone
    # The overdue milestone is off-track, said in words (not by colour alone), with a reason.
    post = page.locator(".milestone", has_text="Write the launch post")
    assert "off-track" in post.inner_text() and "overdue" in post.inner_text()
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["milepost_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    # The same link again, in another browser: a page that says what to do, not signed in.
    other = browser.new_context().new_page()
    other.goto(link)
    assert "page-problem" in (other.get_attribute("body", "class") or "")
    assert "milepost web" in other.inner_text("main")
    other.goto(link.split("/signin/")[0] + "/t/web")
    assert "page-problem" in (other.get_attribute("body", "class") or "")
    other.context.close()
    context.close()


def test_bob_sees_alices_team_goals_and_never_her_private_item(browser: Any, story: Story) -> None:
    page = signed_in_page(browser, story.bob)
    text = page.inner_text("main")
    assert "Launch the team page" in text and "Ship the board" in text
    assert "ZZPRIVATE" not in page.content()
    assert "Bob's own goal" in text
    # Filters: only alice, only off-track.
    page.select_option("select[name=person]", "alice")
    page.select_option("select[name=health]", "off-track")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**health=off-track**")
    text = page.inner_text("main")
    assert "Write the launch post" in text and "Ship the board" not in text
    assert "Bob's own goal" not in text
    page.goto(page.url.split("/t/web")[0] + "/t/web")
    screenshot(page, "board", full_page=True)
    # The JSON twin never holds the private item either.
    twin = page.context.request.get(page.url.split("/t/web")[0] + "/t/web/board.json")
    assert twin.ok and "ZZPRIVATE" not in twin.text()
    page.context.close()


def test_a_synced_checkin_reaches_an_open_feed_within_two_seconds(
    browser: Any, story: Story
) -> None:
    page = signed_in_page(browser, story.bob)
    page.goto(page.url + "/feed")
    page.wait_for_selector(".feed[data-ready='1']", timeout=10_000)
    story.alice.ok("checkin", story.refs["feed"], "60", "--note", "live from the CLI")
    story.alice.sync()
    synced = time.monotonic()
    page.wait_for_selector(".feed .item:has-text('live from the CLI')", timeout=2_000)
    arrived = time.monotonic() - synced
    assert arrived < 2.0
    first = page.locator(".feed .item").first
    assert "live from the CLI" in first.inner_text()  # newest first, without a reload
    screenshot(page, "feed", full_page=True)
    assert page.errors == []
    page.context.close()


def test_kudos_given_in_the_page_reach_the_authors_device(browser: Any, story: Story) -> None:
    page = signed_in_page(browser, story.bob)
    page.goto(page.url + "/feed")
    page.wait_for_selector(".feed[data-ready='1']", timeout=10_000)
    done = page.locator(".item.kind-milestone-completed", has_text="Ship the board")
    assert "Built the board page" in done.inner_text()  # did / why / outcome shown
    assert "Three teams use it daily" in done.inner_text()
    done.get_by_role("button", name="Give kudos to alice").click()
    page.wait_for_selector(".item.kind-milestone-completed .kudos-count:has-text('bob')")
    assert "you gave kudos" in done.inner_text()
    story.alice.sync()
    feed = story.alice.json("feed", "--limit", "50")
    kudos = [i for i in feed["items"] if i["kind"] == "kudos.given"]
    assert [k["actor"] for k in kudos] == ["bob"]
    completion = next(i for i in feed["items"] if i["kind"] == "milestone.completed")
    assert completion["kudos"] == ["bob"]
    review = story.alice.json("review")
    assert review["kudos_received"] == 1
    # Alice cannot give kudos on her own completion: no button for her.
    mine = signed_in_page(browser, story.alice)
    mine.goto(mine.url + "/feed")
    own = mine.locator(".item.kind-milestone-completed", has_text="Ship the board")
    assert own.get_by_role("button").count() == 0 and "1 kudos: bob" in own.inner_text()
    assert page.errors == [] and mine.errors == []
    mine.context.close()
    page.context.close()


def test_drift_charts_and_the_printable_review(browser: Any, story: Story, tmp_path: Path) -> None:
    page = signed_in_page(browser, story.bob)
    base = page.url.split("/t/web")[0]
    page.goto(base + "/t/web/drift")
    assert "page-drift" in (page.get_attribute("body", "class") or "")
    text = page.inner_text("main")
    assert "overdue" in text and "Write the launch post" in text
    screenshot(page, "drift", full_page=True)

    page.goto(base + "/t/web")
    page.click("a:has-text('Weekly readers')")
    page.wait_for_selector("svg.burnup")
    assert page.locator("svg.burnup polyline.expected").count() == 1
    # Pauses are private: bob's chart of alice's key result counts and shows none of them.
    assert page.locator("svg.burnup rect.pause").count() == 0
    assert "due " in (page.text_content("svg.burnup") or "")
    chart_url = page.url
    owner = signed_in_page(browser, story.alice)
    owner.goto(chart_url)
    owner.wait_for_selector("svg.burnup")
    assert owner.locator("svg.burnup rect.pause").count() >= 1  # alice sees hers shaded
    screenshot(owner, "burnup", full_page=True)
    owner.context.close()

    page.goto(base + "/p/alice")
    assert "page-person" in (page.get_attribute("body", "class") or "")
    text = page.inner_text("main")
    assert "Built the board page" in text
    assert "anticipates needs (reached)" in text and "teaches others" in text
    assert "Skipped the interviews" in text and "Paired with support" in text
    assert "ZZPRIVATE" not in page.content()
    screenshot(page, "person", full_page=True)
    page.emulate_media(media="print")
    assert not page.is_visible("header.top") and not page.is_visible("form.period")
    pdf = SCREENSHOTS.parent / "review-print.pdf" if KEEP_PDF else tmp_path / "review.pdf"
    page.pdf(path=str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5_000
    page.emulate_media(media="screen")
    markdown = page.context.request.get(base + "/p/alice/review.md")
    assert markdown.ok and "Built the board page" in markdown.text()
    assert "ZZPRIVATE" not in markdown.text()
    page.context.close()


def test_reading_works_without_javascript_and_at_phone_width(browser: Any, story: Story) -> None:
    page = signed_in_page(browser, story.bob, java_script_enabled=False, color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    assert "Launch the team page" in page.inner_text("main")
    # Keyboard: the first Tab lands on the skip link, shown with a visible focus ring.
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "[document.activeElement.className, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["skip", "solid"], focused
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the board scrolls sideways at phone width ({width}px)"
    screenshot(page, "board-phone-dark", full_page=True)
    page.goto(page.url + "/feed")
    assert "Built the board page" in page.inner_text("main")
    # Kudos still work as a plain form post.
    page.context.close()


def test_rotating_credentials_with_the_server_cli_signs_the_browser_out(
    browser: Any, story: Story
) -> None:
    carol = story.world.device("carol", "laptop")
    link = carol.ok("web", "--print").strip()
    page = browser.new_context().new_page()
    page.goto(link)
    page.wait_for_url("**/p/carol")  # in no team: her own page
    assert "page-person" in (page.get_attribute("body", "class") or "")
    story.world.admin("person", "rotate", "carol")
    # The server re-reads credentials and sessions at most a second later.
    deadline = time.monotonic() + 5
    while True:
        page.reload()
        if "page-problem" in (page.get_attribute("body", "class") or ""):
            break
        assert time.monotonic() < deadline, "still signed in after the rotation"
        time.sleep(0.2)
    assert "rotated" in page.inner_text("main")
    assert "milepost_session" not in {c["name"] for c in page.context.cookies()}
    page.context.close()
