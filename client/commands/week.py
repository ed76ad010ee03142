"""``milepost week``: the weekly review, one question at a time, in a terminal.

It walks through what ``milepost prompt`` lists (a value or percent, a
confidence, a note), the milestones due in the next two weeks, the milestones
nobody has looked at for a month (keep — a check-in without a number —,
reschedule or drop), and ends with one
journal entry. Every answer is recorded at once as an ordinary event, so
quitting halfway (``q``, Ctrl-D or Ctrl-C) keeps everything entered so far.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, TypeVar

from client import dates, render
from client.commands._common import with_session
from client.errors import InvalidValue, MilepostError, UsageError
from client.session import Session, make
from events import bodies as b

T = TypeVar("T")
CONFIDENCES = ("on-track", "at-risk", "off-track")
SOON_DAYS = 14


class Quit(Exception):
    """The person asked to stop (``q``, Ctrl-D, Ctrl-C)."""


def _ask(question: str) -> str:
    try:
        answer = input(question)
    except (EOFError, KeyboardInterrupt):
        print()
        raise Quit from None
    if answer.strip().lower() in ("q", "quit"):
        raise Quit
    return answer.strip()


def _until_valid(question: str, parse: Callable[[str], T]) -> T:
    """Ask until ``parse`` accepts the answer (it raises InvalidValue with the reason)."""
    while True:
        try:
            return parse(_ask(question))
        except InvalidValue as exc:
            print(f"  {exc.message}")


def _number(text: str, *, low: float | None = None, high: float | None = None) -> float | None:
    if not text:
        return None
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        raise InvalidValue(f"{text!r} is not a number (Enter skips, q stops)") from None
    if not math.isfinite(value):
        raise InvalidValue(f"{text} is not a finite number")
    if low is not None and high is not None and not low <= value <= high:
        raise InvalidValue(f"give a number from {low:g} to {high:g}")
    return value


def _confidence(default: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text:
            return default
        for name in CONFIDENCES:
            if name.startswith(text.lower()):
                return name
        raise InvalidValue("answer on-track, at-risk or off-track (o, a, f... also work)")

    return parse


class Review:
    """One walk through the week; counts what was recorded."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.recorded = 0
        self.today = session.now.date()

    async def record(self, body: b.Body, what: str) -> None:
        event = await self.session.record(body)
        self.recorded += 1
        short = (await self.session.short_refs([event.id])).get(event.id, "")
        print(f"  ✓ {short} {what}".rstrip())

    async def checkin(self, item: Any, view: Any) -> None:
        is_kr = item.kind == "key result"
        said = (view.confidence if view is not None else None) or "on-track"
        if is_kr:
            unit = f" {view.unit}" if view is not None and view.unit else ""
            current = "-" if view is None or view.current is None else render.number(view.current)
            target = "" if view is None or view.target is None else render.number(view.target)
            print(f"  now {current}{unit}" + (f", target {target}{unit}" if target else ""))
            amount = _until_valid("  New value (Enter skips): ", _number)
        else:
            progress = f"{view.progress:.0f}%" if view is not None else "-"
            print(f"  {progress} done" + (f", due {item.due_on}" if item.due_on else ""))
            amount = _until_valid(
                "  Percent done, or 'done' if it is finished (Enter skips): ",
                lambda text: -1.0 if text.lower() == "done" else _number(text, low=0, high=100),
            )
            if amount == -1.0:
                await self.complete(item)
                return
        if amount is None:
            return
        confidence = _until_valid(f"  Confidence (Enter: {said}): ", _confidence(said))
        note = _ask("  Note (optional): ")
        body = make(
            b.CheckInRecorded,
            subject=item.id,
            confidence=confidence,
            value=amount if is_kr else None,
            percent=None if is_kr else amount,
            note=note,
        )
        shown = render.number(amount) + ("" if is_kr else "%")
        await self.record(body, f"check-in {shown} {confidence}")

    async def complete(self, item: Any) -> None:
        did = _ask("  What did you do? ")
        why = _ask("  Why did it matter? ")
        outcome = _ask("  What was the outcome? ")
        body = make(b.MilestoneCompleted, milestone=item.id, did=did, why=why, outcome=outcome)
        await self.record(body, f"completed {item.title}")

    async def unreviewed(
        self, milestone_id: str, title: str, explanation: str, view: Any = None
    ) -> None:
        print(f"  {explanation}")
        choice = _until_valid(
            "  Keep, reschedule or drop? [k/r/d] (Enter: keep): ",
            lambda text: _choice(text, ("keep", "reschedule", "drop")),
        )
        if choice == "keep":  # a check-in without a number: looked at, still wanted
            said = getattr(view, "confidence", None) or "on-track"
            body = make(
                b.CheckInRecorded,
                subject=milestone_id,
                confidence=said,
                note="kept in the weekly review",
            )
            await self.record(body, f"kept {title}")
            return
        if choice == "drop":
            reason = _ask("  Why drop it? (optional): ")
            await self.record(
                make(b.MilestoneDropped, milestone=milestone_id, reason=reason), f"dropped {title}"
            )
            return
        due = _until_valid(
            "  New due date (YYYY-MM-DD): ",
            lambda text: dates.parse_date(text, self.today, what="due date"),
        )
        reason = _ask("  Why? (optional): ")
        await self.record(
            make(b.MilestoneRescheduled, milestone=milestone_id, due_on=due, reason=reason),
            f"rescheduled {title} to {due}",
        )

    async def journal(self) -> None:
        text = _ask("One win or lesson from this week (Enter skips): ")
        if not text:
            return
        kind = _until_valid(
            "  A win or a lesson? [w/l] (Enter: win): ",
            lambda answer: _choice(answer, ("win", "lesson")),
        )
        body = make(
            b.ObservationRecorded,
            text=text,
            polarity="positive" if kind == "win" else "negative",
            visibility=self.session.default_visibility,
        )
        await self.record(body, f"journal: {kind}")


def _choice(text: str, options: tuple[str, ...]) -> str:
    if not text:
        return options[0]
    for option in options:
        if option.startswith(text.lower()):
            return option
    raise InvalidValue("answer " + ", ".join(f"{o[0]} ({o})" for o in options))


def _views_by_id(tree: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for objective in tree.objectives:
        for kr in objective.key_results:
            out[kr.id] = kr
            for m in kr.milestones:
                out[m.id] = m
        for m in objective.milestones:
            out[m.id] = m
    for m in tree.standalone_milestones:
        out[m.id] = m
    return out


def week() -> int:
    """The weekly review: check in on what is due, look ahead two weeks, keep or drop
    what nobody has looked at for a month, and write one journal entry.

    It asks one question at a time in a terminal; every answer is saved at once,
    so q (or Ctrl-D) stops with everything entered so far kept.

    Example: milepost week
    """
    if not sys.stdin.isatty():
        raise UsageError(
            "milepost week asks its questions in a terminal; in scripts use"
            " milepost prompt --json and milepost checkin"
        )

    async def go(session: Session) -> int:
        from client.commands.show import prompt_items
        from client.views import load_all, stored_tree
        from projections.drift import drift_signals

        review = Review(session)
        today = review.today
        tree = await stored_tree(session.store, session.person, session.now)
        views = _views_by_id(tree)
        due = prompt_items(tree, today, session.settings.due_soon_days)
        asked = {item.id for item in due}
        horizon = today + timedelta(days=SOON_DAYS)
        soon = [
            view
            for view in views.values()
            if getattr(view, "state", None) == "open"
            and view.id not in asked
            and view.due_on is not None
            and view.due_on <= horizon
        ]
        soon.sort(key=lambda v: (v.due_on or date.max, v.title))
        asked.update(view.id for view in soon)
        state = (await load_all(session.store)).state
        stale = [
            s
            for s in drift_signals(state, session.person, session.now, session.settings)
            if s.kind == "unreviewed" and s.subject not in asked and s.subject in views
        ]
        refs = await session.short_refs(
            [*asked, *(v.id for v in soon), *(s.subject for s in stale)]
        )
        print(
            f"Weekly review, {today}: {len(due)} to check in on, {len(soon)} due within two"
            f" weeks, {len(stale)} not looked at for a month. q stops (answers so far are kept)."
        )
        try:
            for number, item in enumerate(due, start=1):
                print(f"\n[{number}/{len(due)}] {refs.get(item.id, item.ref)} {item.title}"
                      f" ({item.kind}) — {item.reason}")  # fmt: skip
                await review.checkin(item, views.get(item.id))
            if soon:
                print("\nDue within two weeks:")
            for view in soon:
                print(f"\n{refs.get(view.id, '')} {view.title} — due {view.due_on}")
                await review.checkin(_as_item(view), view)
            if stale:
                print("\nNot looked at for a month:")
            for signal in stale:
                print(f"\n{refs.get(signal.subject, '')} {signal.subject_title}")
                await review.unreviewed(
                    signal.subject,
                    signal.subject_title,
                    signal.explanation,
                    views.get(signal.subject),
                )
            print()
            await review.journal()
        except Quit:
            print(f"Stopped. {review.recorded} answers saved.")
            return 0
        except MilepostError:
            raise
        print(f"Done: {review.recorded} answers saved. See you next week.")
        return 0

    return with_session(go)


class _Item:
    """A prompt-like item for a milestone due soon."""

    def __init__(self, view: Any) -> None:
        self.id = view.id
        self.kind = "milestone"
        self.title = view.title
        self.due_on = view.due_on


def _as_item(view: Any) -> _Item:
    return _Item(view)
