"""Setting up a device: ``init --credentials`` checks the file and keeps its own copy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from milepost_testkit import ROOT
from milepost_testkit.cli import Cli


def _run_in(cli: Cli, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cli.env, "MILEPOST_HOME": str(cli.home), "MILEPOST_NOW": cli.now,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        env=env, cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_init_checks_and_copies_the_credentials_file(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    init = ("init", "--person", "ava", "--device", "laptop")
    assert "does not exist" in cli.fails(*init, "--credentials", str(folder / "nope.json"))
    assert not (cli.home / "profile.json").exists()
    (folder / "notes.txt").write_text("dear diary\nsecond line\n")
    assert "not milepost credentials" in cli.fails(
        *init, "--credentials", str(folder / "notes.txt")
    )
    (folder / "bob.json").write_text(json.dumps({"person": "bob", "nats_password": "s3cret"}))
    assert "is for bob, not for ava" in cli.fails(*init, "--credentials", str(folder / "bob.json"))
    (folder / "empty.json").write_text(json.dumps({"person": "ava"}))
    assert "no nats_password" in cli.fails(*init, "--credentials", str(folder / "empty.json"))
    good = {"person": "ava", "nats_url": "nats://127.0.0.1:4222", "nats_password": "s3cret"}
    (folder / "ava.json").write_text(json.dumps(good))
    done = _run_in(cli, folder, *init, "--credentials", "ava.json")  # a relative path
    assert done.returncode == 0, done.stderr
    stored = Path(cli.json("config")["credentials"])
    assert stored.is_absolute() and stored.parent == cli.home.resolve()
    assert json.loads(stored.read_text()) == good
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    # The original may go away: the profile keeps working from any folder.
    (folder / "ava.json").unlink()
    assert _run_in(cli, tmp_path, "config", "credentials").returncode == 0
    # config credentials goes through the same checks.
    assert "does not exist" in cli.fails("config", "credentials", str(folder / "ava.json"))
    (folder / "rotated.json").write_text(json.dumps({**good, "nats_password": "n3w"}))
    cli.ok("config", "credentials", str(folder / "rotated.json"))
    assert json.loads(stored.read_text())["nats_password"] == "n3w"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
