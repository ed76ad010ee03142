"""Output: JSON for ``--json``, plain text when piped, rich colour and bars on a terminal.

rich is imported only when stdout is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import msgspec

from events import Event
from projections.goals import GoalTree, KeyResultView, MilestoneView

_json = msgspec.json.Encoder()


def is_tty() -> bool:
    """Whether stdout is a terminal (colour and bars only then)."""
    return sys.stdout.isatty()


def emit_json(value: Any) -> None:
    """Write one JSON document (msgspec Structs keep their field names) and a newline."""
    sys.stdout.buffer.write(_json.encode(value) + b"\n")
    sys.stdout.flush()


def out(line: str = "") -> None:
    """Write one line of plain text."""
    sys.stdout.write(line + "\n")


class Created(msgspec.Struct, frozen=True):
    """What a creating command prints with ``--json``."""

    id: str
    ref: str
    type: str
    title: str
    occurred_at: str


def created(event: Event, title: str, as_json: bool) -> None:
    """Report a recorded event with its id and short reference."""
    from client.session import short_ref

    ref = short_ref(event.id)
    if as_json:
        emit_json(Created(event.id, ref, event.type, title, event.occurred_at.isoformat()))
        return
    out(f"{ref}  {event.type}  {title}")
    out(f"  id {event.id}")


def bar(percent: float, width: int = 20) -> str:
    """A text progress bar."""
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    return "#" * filled + "." * (width - filled)


def _ms_line(m: MilestoneView) -> str:
    from client.session import short_ref

    due = f" due {m.due_on}" if m.due_on else ""
    exp = f" (expected {m.expected:.0f}%)" if m.expected is not None else ""
    tasks = ""
    if m.tasks:
        tasks = f" [{sum(t.done for t in m.tasks)}/{len(m.tasks)} tasks]"
    return (
        f"{short_ref(m.id)} {m.title} — {m.state}, {m.status}, {m.progress:.0f}%{exp}{due}{tasks}"
    )


def _kr_line(kr: KeyResultView) -> str:
    from client.session import short_ref

    numbers = ""
    if kr.target is not None:
        current = "-" if kr.current is None else f"{kr.current:g}"
        numbers = f" {current}/{kr.target:g}{(' ' + kr.unit) if kr.unit else ''}"
    return (
        f"{short_ref(kr.id)} {kr.title}{numbers} — {kr.status}, {kr.progress:.0f}%"
        f" (expected {kr.expected or 0:.0f}%)"
    )


def tree_lines(tree: GoalTree) -> Iterable[tuple[int, str, float | None, str]]:
    """(depth, text, progress, status) for each node of a goal tree."""
    from client.session import short_ref

    for objective in tree.objectives:
        yield (
            0,
            f"{short_ref(objective.id)} {objective.title} [{objective.cycle}] — "
            f"{objective.status}, {objective.progress:.0f}% (expected {objective.expected:.0f}%)",
            objective.progress,
            objective.status,
        )
        for kr in objective.key_results:
            yield 1, _kr_line(kr), kr.progress, kr.status
            for m in kr.milestones:
                yield 2, _ms_line(m), m.progress, m.status
        for m in objective.milestones:
            yield 1, _ms_line(m), m.progress, m.status
    if tree.standalone_milestones:
        yield 0, "Standalone milestones", None, ""
        for m in tree.standalone_milestones:
            yield 1, _ms_line(m), m.progress, m.status


_COLOURS = {
    "done": "green",
    "on-track": "green",
    "at-risk": "yellow",
    "off-track": "red",
    "dropped": "dim",
    "alert": "red",
    "warning": "yellow",
}


def tree(tree: GoalTree) -> None:
    """Print a goal tree: bars and colour on a terminal, plain lines otherwise."""
    lines = list(tree_lines(tree))
    if not lines:
        out('No goals yet. Start with: milepost objective "Title" --cycle 2026-Q1')
        return
    if not is_tty():
        for depth, text, _, _ in lines:
            out("  " * depth + text)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console()
    for depth, text, progress, status in lines:
        line = Text("  " * depth)
        if progress is not None:
            line.append(bar(progress, 12) + " ", style=_COLOURS.get(status, ""))
        line.append(text, style="bold" if depth == 0 else "")
        console.print(line)


def colour_line(text: str, key: str) -> None:
    """Print a line coloured by a status or severity on a terminal."""
    if not is_tty():
        out(text)
        return
    from rich.console import Console

    Console().print(text, style=_COLOURS.get(key, ""), highlight=False, markup=False)
