"""The ``milepost`` command: a cyclopts app whose commands load lazily.

``main`` turns every ``MilepostError`` into one line on stderr (exit 1, or 2
for usage), and never shows a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

HELP = """Milepost keeps your goals honest all year, offline.

Start:  milepost init --person ava --device laptop
Then:   milepost objective "Show people how Roads works" --cycle 2026-Q1
Dates are YYYY-MM-DD, today or yesterday. Ids print on creation; any unique
prefix, or the printed 8-character suffix, refers to an item.
MILEPOST_HOME sets the data folder; MILEPOST_NOW (ISO datetime) replaces the
clock, a testing aid.
"""

_COMMANDS: list[tuple[str, str]] = [
    ("init", "client.commands.setup:init"),
    ("config", "client.commands.setup:config"),
    ("rebuild", "client.commands.setup:rebuild"),
    ("objective", "client.commands.goals:objective"),
    ("kr", "client.commands.goals:kr"),
    ("milestone", "client.commands.goals:milestone_app"),
    ("task", "client.commands.goals:task_app"),
    ("done", "client.commands.goals:done"),
    ("checkin", "client.commands.goals:checkin"),
    ("pause", "client.commands.goals:pause"),
    ("share", "client.commands.goals:share"),
    ("correct", "client.commands.goals:correct"),
    ("retract", "client.commands.goals:retract"),
    ("indicator", "client.commands.journal:indicator"),
    ("observe", "client.commands.journal:observe"),
    ("journal", "client.commands.journal:journal"),
    ("status", "client.commands.show:status"),
    ("drift", "client.commands.show:drift"),
    ("feed", "client.commands.show:feed"),
    ("review", "client.commands.show:review"),
    ("prompt", "client.commands.show:prompt"),
    ("log", "client.commands.show:log"),
    ("export", "client.commands.transfer:export"),
    ("import", "client.commands.transfer:import_"),
    ("sync", "client.commands.sync:sync"),
    ("web", "client.commands.web:web"),
]


def build_app() -> Any:
    """The cyclopts app with every command registered by import path."""
    from cyclopts import App

    app = App(name="milepost", help=HELP, version="0.1.0")
    for name, path in _COMMANDS:
        app.command(path, name=name)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0, 1 user error, 2 usage)."""
    from client.errors import MilepostError

    args = sys.argv[1:] if argv is None else argv
    try:
        from cyclopts import CycloptsError

        app = build_app()
        try:
            result = app(args, exit_on_error=False, print_error=False)
        except CycloptsError as exc:
            text = " ".join(str(exc).split()) or "invalid command line"
            sys.stderr.write(f"milepost: {text} (see milepost --help)\n")
            return 2
        return result if isinstance(result, int) else 0
    except MilepostError as exc:
        for line in exc.details:
            sys.stderr.write(line + "\n")
        sys.stderr.write(f"milepost: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("milepost: interrupted; nothing half-written\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the promise: one line, never a traceback
        sys.stderr.write(f"milepost: internal error: {type(exc).__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
