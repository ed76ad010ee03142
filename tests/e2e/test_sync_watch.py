"""``milepost sync --watch`` says what it watches and how to stop; a sync says what happened
in words (no ``confirmed 0 … (cursor 0)``)."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from milepost_testkit.sync_world import world


def test_watch_announces_itself_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        alice = w.device("alice", "laptop")
        alice.ok("objective", "Grow", "--cycle", "2026-Q1")
        once = alice.ok("sync")
        assert once.startswith("synced: sent 1, received ")
        assert "cursor" not in once and "confirmed 0" not in once
        env = {**alice.env, "MILEPOST_HOME": str(alice.home), "MILEPOST_NOW": alice.now}
        watcher = subprocess.Popen(
            [sys.executable, "-m", "client.cli", "sync", "--watch"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert watcher.stdout is not None
            ready, _, _ = select.select([watcher.stdout], [], [], 30)
            assert ready, "the watcher said nothing"
            first = watcher.stdout.readline()
            assert first.startswith(f"watching {w.nats.url} as alice@laptop"), first
            assert "Press Ctrl-C to stop." in first
            time.sleep(0.5)
            watcher.send_signal(signal.SIGINT)
            _, err = watcher.communicate(timeout=20)
            assert watcher.returncode == 0, err
            assert "Traceback" not in err
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
