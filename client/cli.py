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
        milepost kr o1 "Reach 3,000 visitors" --start 0 --target 3000
        milepost checkin k1 1200 --confidence at-risk
        milepost status

References: the short refs every listing shows (o1, k3, m12, t4, c7...), any
unique prefix of an id, or its printed 8-character suffix.
Dates: YYYY-MM-DD, today or yesterday.
Environment: MILEPOST_HOME (data folder), MILEPOST_PAGER or PAGER (pager for
long output), MILEPOST_NOW (ISO datetime replacing the clock: a testing aid).
"""

VERSION = "0.1.0"

# (name, import path, section, one-line description): ``milepost --help`` prints these
# without importing cyclopts (start-up time); each command's own page is its docstring.
_COMMANDS: list[tuple[str, str, str, str]] = [
    ("objective", "client.commands.goals:objective", "Plan",
     "Set an objective for a cycle (default: the current quarter)."),
    ("kr", "client.commands.goals:kr", "Plan",
     "Add a key result to an objective: from a start to a target, or a threshold."),
    ("milestone", "client.commands.milestones:milestone_app", "Plan",
     "Plan, reschedule, complete, reopen, drop or relink milestones."),
    ("task", "client.commands.milestones:task_app", "Plan",
     "The checklist inside a milestone: add, done, reopen."),
    ("indicator", "client.commands.journal:indicator", "Plan",
     "Name a capability and its ordered stages."),
    ("checkin", "client.commands.goals:checkin", "Track",
     "Record progress: a key result's value or a milestone's percent."),
    ("done", "client.commands.milestones:done", "Track",
     "Complete a milestone with what you did, why it mattered, the outcome."),
    ("observe", "client.commands.journal:observe", "Track",
     "Record an observation, optionally as evidence of an indicator's stage."),
    ("journal", "client.commands.journal:journal", "Track",
     "Write a journal entry: this week's win or lesson."),
    ("week", "client.commands.week:week", "Track",
     "The weekly review, one question at a time: check-ins, what is due, one entry."),
    ("pause", "client.commands.goals:pause", "Track",
     "Declare leave or travel: pace and staleness stop counting."),
    ("status", "client.commands.show:status", "See",
     "Your goals: progress, what is expected by now, health and confidence."),
    ("drift", "client.commands.show:drift", "See",
     "What is drifting: stale, behind pace, overdue... (--exit-code for scripts)."),
    ("prompt", "client.commands.show:prompt", "See",
     "What is due for a check-in."),
    ("feed", "client.commands.show:feed", "See",
     "What you may see: milestones, check-ins, shared entries, newest first."),
    ("review", "client.commands.show:review", "See",
     "Your record over a period, as Markdown or JSON."),
    ("log", "client.commands.show:log", "See",
     "The raw events with their sync state."),
    ("correct", "client.commands.goals:correct", "Fix",
     "Fix fields of an earlier event (the original stays in the log)."),
    ("retract", "client.commands.goals:retract", "Fix",
     "Withdraw an event logged by mistake."),
    ("share", "client.commands.goals:share", "Fix",
     "Change who may see an item: private, partners or team."),
    ("init", "client.commands.setup:init", "Set up and move data",
     "Create your profile on this device (person, device, team, server)."),
    ("config", "client.commands.setup:config", "Set up and move data",
     "Show or change settings: server, credentials, visibility, drift thresholds."),
    ("web", "client.commands.web:web", "See",
     "Open the team's page in a browser with a one-time sign-in link."),
    ("sync", "client.commands.sync:sync", "Set up and move data",
     "Send your events to the sync server and receive what you may see."),
    ("import", "client.commands.transfer:import_", "Set up and move data",
     "Import an export (JSON Lines) or a CSV journal."),
    ("export", "client.commands.transfer:export", "Set up and move data",
     "Write every event as JSON Lines."),
    ("rebuild", "client.commands.setup:rebuild", "Set up and move data",
     "Recompute the stored views from the log (--check compares)."),
    ("completion", "client.commands.setup:completion", "Set up and move data",
     "Print the shell completion script for bash, zsh or fish."),
]  # fmt: skip


def fast_help() -> str:
    """``milepost --help``: every command with its description, without importing cyclopts."""
    lines = ["Usage: milepost COMMAND [OPTIONS]", "", *HELP.rstrip().splitlines(), ""]
    width = max(len(name) for name, *_ in _COMMANDS) + 2
    sections: dict[str, list[tuple[str, str]]] = {}
    for name, _, section, summary in _COMMANDS:
        sections.setdefault(section, []).append((name, summary))
    for section, commands in sections.items():
        lines.append(f"{section}:")
        lines.extend(f"  {name:{width}}{summary}" for name, summary in commands)
        lines.append("")
    lines.append("Run `milepost COMMAND --help` for a command's options and examples;")
    lines.append("--version prints the version.")
    return "\n".join(lines) + "\n"


def _shown_default(value: Any) -> str | None:
    """Defaults worth printing in help: none for flags off, empty text or empty lists."""
    if value in (False, None, "", ()):
        return None
    if isinstance(value, float) and value == int(value):
        return f"{value:g}"
    return str(value)


def build_app() -> Any:
    """The cyclopts app with every command registered by import path."""
    from cyclopts import App, Parameter

    app = App(
        name="milepost",
        help=HELP,
        version=VERSION,
        help_format="plaintext",
        default_parameter=Parameter(show_default=_shown_default, negative_iterable=()),
    )
    for name, path, _, _ in _COMMANDS:
        app.command(path, name=name)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0, 1 user error, 2 usage)."""
    from client.errors import MilepostError

    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["--help"], ["-h"], ["help"]):
        sys.stdout.write(fast_help())
        return 0
    if args == ["--version"]:
        sys.stdout.write(VERSION + "\n")
        return 0
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
