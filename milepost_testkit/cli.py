"""Run the real ``milepost`` CLI as a subprocess against a temporary home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from milepost_testkit import ROOT


class Cli:
    """Runs ``milepost`` with a temporary ``MILEPOST_HOME`` and an injected clock."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.now = "2026-01-05T09:00:00+00:00"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPATH"] = str(ROOT)
        self.calls = 0

    def run(
        self,
        *args: str,
        now: str | None = None,
        stdin: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command; returns the completed process (never raises on failure)."""
        env = {**self.env, "MILEPOST_HOME": str(self.home), "MILEPOST_NOW": now or self.now}
        env.update(extra_env or {})
        self.calls += 1
        return subprocess.run(
            [sys.executable, "-m", "client.cli", *args],
            env=env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, now: str | None = None) -> str:
        """Run a command that must succeed; returns stdout."""
        done = self.run(*args, now=now)
        assert done.returncode == 0, f"{args}: {done.stderr}"
        assert done.stderr == "", done.stderr
        return done.stdout

    def json(self, *args: str, now: str | None = None) -> Any:
        """Run with ``--json`` and parse the output."""
        return json.loads(self.ok(*args, "--json", now=now))

    def new(self, *args: str, now: str | None = None) -> str:
        """Create something; returns its printed short reference."""
        created = self.json(*args, now=now)
        assert len(created["ref"]) == 8 and created["id"].replace("-", "").endswith(created["ref"])
        return str(created["ref"])

    def fails(self, *args: str, code: int = 1, now: str | None = None, **kw: Any) -> str:
        """Run a command that must fail with one stderr line; returns that line."""
        done = self.run(*args, now=now, **kw)
        assert done.returncode == code, f"{args}: rc={done.returncode} {done.stdout}{done.stderr}"
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "Traceback" not in done.stderr
        return lines[0]
