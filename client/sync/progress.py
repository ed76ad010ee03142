"""Progress display of a big sync: nothing by default, a rich bar on a terminal."""

from __future__ import annotations

import sys
from typing import Any

BIG_SYNC = 2000
"""A phase with more units than this shows a progress bar (on a terminal)."""


class Progress:
    """Where progress goes; the default shows nothing."""

    shows = False
    """Whether anything is shown (totals that cost a query are only counted then)."""

    def start(self, what: str, total: int) -> None:
        """A phase begins with ``total`` units of work."""

    def advance(self, what: str, amount: int) -> None:
        """``amount`` more units done."""

    def stop(self) -> None:
        """All done."""


class RichProgress(Progress):
    """A rich progress bar on stderr (only used on a terminal)."""

    shows = True

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._started = False

    def start(self, what: str, total: int) -> None:
        """Show a bar for ``what``."""
        if not self._started:
            self._bar.start()
            self._started = True
        self._tasks[what] = self._bar.add_task(what, total=total)

    def advance(self, what: str, amount: int) -> None:
        """Move a bar."""
        if what in self._tasks:
            self._bar.advance(self._tasks[what], amount)

    def stop(self) -> None:
        """Remove the bars."""
        if self._started:
            self._bar.stop()
            self._started = False


def progress_for(stream: Any = None) -> Progress:
    """A progress bar on a terminal, nothing otherwise."""
    target = sys.stderr if stream is None else stream
    return RichProgress() if getattr(target, "isatty", lambda: False)() else Progress()
