"""Output: JSON for ``--json``, plain text when piped, rich colour and bars on a terminal.

rich is imported only when stdout is a terminal.
"""

from __future__ import annotations

import sys
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
    ref: str  # the id's last 8 hex digits
    type: str
    title: str
    occurred_at: str
    short: str | None = None  # the short reference on this device (``m12``), if numbered


def created(event: Event, title: str, as_json: bool, short: str | None = None) -> None:
    """Report a recorded event with its short reference and id."""
    from client.session import short_ref

    ref = short_ref(event.id)
    if as_json:
        emit_json(Created(event.id, ref, event.type, title, event.occurred_at.isoformat(), short))
        return
    out(f"{short or ref}  {event.type}  {title}")
    out(f"  id {event.id} (or {ref})" if short else f"  id {event.id}")


def bar(percent: float, width: int = 20) -> str:
    """A text progress bar."""
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    return "#" * filled + "." * (width - filled)


class Line(msgspec.Struct):
    """One line of a listing: ``text``, then ``level`` coloured, then ``tail``."""

    depth: int
    text: str
    level: str = ""
    tail: str = ""
    progress: float | None = None
    bold: bool = False
    wrap: bool = False  # a signal line: ``level`` first, wrapped under itself on a terminal

    def plain(self) -> str:
        """The line without colour."""
        if self.wrap:
            return "  " * self.depth + f"{self.level:7}" + self.tail
        judged = f" — {self.level}" if self.level else ""
        return "  " * self.depth + self.text + judged + self.tail


def number(value: float) -> str:
    """A measure as people write it: 3,000 or 2.5."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.6g}"


def _ref(item_id: str, refs: dict[str, str]) -> str:
    from client.session import short_ref

    return refs.get(item_id) or short_ref(item_id)


def _judgement(health: Any, confidence: str | None, open_: bool) -> tuple[str, str]:
    """(level, tail): the health level, its reason, and what the person said."""
    if health is None:
        return "", ""
    # The numbers are on the line already: on-track and dropped need no reason.
    tail = f": {health.reason}" if health.level not in ("on-track", "dropped") else ""
    if open_ and confidence:
        tail += f" · you said {confidence}"
    return health.level, tail


def _pace(progress: float, expected: float | None) -> str:
    exp = f" (expected {expected:.0f}%)" if expected is not None else ""
    return f"{progress:.0f}%{exp}"


def _milestone_line(
    m: MilestoneView, depth: int, healths: dict[str, Any], refs: dict[str, str]
) -> Line:
    head = f"{_ref(m.id, refs)} {m.title}"
    if m.state == "open":
        due = f" due {m.due_on}" if m.due_on else ""
        tasks = f" [{sum(t.done for t in m.tasks)}/{len(m.tasks)} tasks]" if m.tasks else ""
        head += f"  {_pace(m.progress, m.expected)}{due}{tasks}"
    level, tail = _judgement(healths.get(m.id), m.confidence, m.state == "open")
    return Line(depth, head, level or m.status, tail, m.progress)


def _kr_numbers(kr: KeyResultView) -> str:
    unit = f" {kr.unit}" if kr.unit else ""
    current = "-" if kr.current is None else number(kr.current)
    if kr.target is None:
        return ""
    if kr.kind == "stay-above":
        return f"  {current}{unit} (stay at or above {number(kr.target)}{unit})"
    if kr.kind == "stay-below":
        return f"  {current}{unit} (stay at or below {number(kr.target)}{unit})"
    return f"  {current} → {number(kr.target)}{unit}"


def _kr_line(kr: KeyResultView, ended: bool, healths: dict[str, Any], refs: dict[str, str]) -> Line:
    head = f"{_ref(kr.id, refs)} {kr.title}{_kr_numbers(kr)}"
    if kr.target is None and kr.kind in ("increase", "decrease"):
        counted = [m for m in kr.milestones if m.state != "dropped"]
        done = sum(m.state == "completed" for m in counted)
        head += f"  {done}/{len(counted)} milestones"
    head += f"  {_pace(kr.progress, None if ended else kr.expected)}"
    health = healths.get(kr.id)
    open_ = health is not None and health.level not in ("done", "dropped")
    level, tail = _judgement(health, kr.confidence, open_)
    return Line(1, head, level or kr.status, tail, kr.progress)


def status_lines(
    tree: GoalTree,
    healths: dict[str, Any],
    refs: dict[str, str],
    indicators: list[Any],
    today: Any,
) -> list[Line]:
    """The lines of ``milepost status``: objectives, key results, milestones, indicators."""
    lines: list[Line] = []
    for objective in tree.objectives:
        ended = objective.ends_on < today
        cycle = f"{objective.cycle}, ended {objective.ends_on}" if ended else objective.cycle
        head = (
            f"{_ref(objective.id, refs)} {objective.title} [{cycle}]"
            f"  {_pace(objective.progress, None if ended else objective.expected)}"
        )
        level, tail = _judgement(healths.get(objective.id), None, False)
        lines.append(Line(0, head, level, tail, objective.progress, bold=True))
        for kr in objective.key_results:
            lines.append(_kr_line(kr, ended, healths, refs))
            lines.extend(_milestone_line(m, 2, healths, refs) for m in kr.milestones)
        lines.extend(_milestone_line(m, 1, healths, refs) for m in objective.milestones)
    if tree.standalone_milestones:
        lines.append(Line(0, "Standalone milestones", bold=True))
        lines.extend(_milestone_line(m, 1, healths, refs) for m in tree.standalone_milestones)
    if indicators:
        lines.append(Line(0, "Indicators", bold=True))
    for indicator in indicators:
        if indicator.stage is None:
            where = f"no stage reached yet (stages: {', '.join(indicator.stages)})"
        else:
            where = (
                f"stage {indicator.stage} of {len(indicator.stages)}: {indicator.stage_name}"
                f" (since {indicator.reached_on})"
            )
        lines.append(Line(1, f"{_ref(indicator.id, refs)} {indicator.title} — {where}"))
        for o in indicator.latest:
            mark = "+" if o.polarity == "positive" else "−"
            stage = f" [{o.stage}]" if o.stage else ""
            lines.append(Line(2, f"{o.on} {mark} {one_line(o.text, 100)}{stage}"))
    if not lines:
        lines.append(
            Line(0, 'No goals yet. Start with: milepost objective "Title" --cycle 2026-Q1')
        )
    return lines


def one_line(text: str, limit: int) -> str:
    """Text on one line, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def print_lines(lines: list[Line]) -> None:
    """Print lines: plain when piped; on a terminal with bars, the level coloured, and
    through a pager when longer than the screen."""
    if not is_tty():
        for line in lines:
            out(line.plain())
        return
    import shutil
    import textwrap

    from rich.table import Table
    from rich.text import Text

    width = shutil.get_terminal_size().columns
    texts: list[Any] = []
    for line in lines:
        if line.wrap:
            indent = "  " * line.depth
            body = textwrap.wrap(
                f"{line.level:7}{line.tail}",
                width=max(40, width - 1),
                initial_indent=indent,
                subsequent_indent=indent + " " * 9,
                break_on_hyphens=False,
            )
            first = Text(indent)
            first.append(line.level, style=_COLOURS.get(line.level, ""))
            first.append(body[0][len(indent) + len(line.level) :])
            texts.append(first)
            texts.extend(Text(rest) for rest in body[1:])
            continue
        prefix = Text("  " * line.depth)
        if line.progress is not None:
            prefix.append(bar(line.progress, 12) + " ", style=_COLOURS.get(line.level, ""))
        text = Text(line.text, style="bold" if line.bold else "")
        if line.level:
            text.append(" — ")
            text.append(line.level, style=_COLOURS.get(line.level, ""))
        text.append(line.tail)
        if not prefix.plain:
            texts.append(text)
            continue
        # A long line wraps under its own text, not under the bar.
        grid = Table.grid()
        grid.add_column(no_wrap=True)
        grid.add_column()
        grid.add_row(prefix, text)
        texts.append(grid)
    page(texts)


def page(renderables: list[Any]) -> None:
    """Print rich renderables to the terminal, through the pager when they do not fit."""
    import os
    import shutil

    from rich.console import Console

    size = shutil.get_terminal_size()
    console = Console(width=size.columns, force_terminal=True, highlight=False)
    with console.capture() as captured:
        for renderable in renderables:
            console.print(renderable)
    text = captured.get()
    pager = os.environ.get("MILEPOST_PAGER", os.environ.get("PAGER", "less -FRX"))
    if text.count("\n") < size.lines or not pager.strip() or pager.strip() == "cat":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    run_pager(pager, text)


def run_pager(pager: str, text: str) -> None:
    """Show ``text`` through the pager command (like git and gh: ``less -FRX`` by default)."""
    import os
    import shlex
    import subprocess

    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    try:
        process = subprocess.Popen(shlex.split(pager), stdin=subprocess.PIPE, env=env)
    except (OSError, ValueError):
        sys.stdout.write(text)  # no such pager: print as is
        sys.stdout.flush()
        return
    assert process.stdin is not None
    try:
        process.stdin.write(text.encode())
        process.stdin.close()
    except BrokenPipeError:
        pass  # the person quit the pager early
    process.wait()


_COLOURS = {
    "done": "green",
    "on-track": "green",
    "at-risk": "yellow",
    "off-track": "red",
    "dropped": "dim",
    "alert": "red",
    "warning": "yellow",
}


def colour_line(text: str, key: str) -> None:
    """Print a line coloured by a status or severity on a terminal."""
    if not is_tty():
        out(text)
        return
    from rich.console import Console

    Console().print(text, style=_COLOURS.get(key, ""), highlight=False, markup=False)
