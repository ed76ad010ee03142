"""Crash safety (issue 3, item 7): concurrent real check-ins, some killed with SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from milepost_testkit.cli import Cli

PROCESSES = 24
KILLED = 8


@pytest.mark.slow
def test_sigkill_never_leaves_partial_or_duplicate_events(ready: Cli) -> None:
    objective = ready.new("objective", "Grow", "--cycle", "2026-Q1")
    kr = ready.new("kr", objective, "Signups", "--start", "0", "--target", "1000")
    milestone = ready.new("milestone", "add", "Launch", "--kr", kr)
    rng = random.Random(20260105)
    env = {**ready.env, "MILEPOST_HOME": str(ready.home), "MILEPOST_NOW": ready.now,
           "MILEPOST_LOCK_TIMEOUT": "30"}  # fmt: skip
    procs = []
    for index in range(PROCESSES):
        subject, amount = (kr, str(index * 10)) if index % 2 else (milestone, str(index * 3))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "client.cli", "checkin", subject, amount, "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    victims = rng.sample(procs, KILLED)
    started = time.monotonic()
    for victim in sorted(victims, key=lambda _: rng.random()):
        time.sleep(max(0.0, rng.uniform(0.05, 1.2) - (time.monotonic() - started)))
        victim.send_signal(signal.SIGKILL)
    confirmed = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            confirmed.append(json.loads(out)["id"])
        else:
            assert proc.returncode == -signal.SIGKILL, err
    assert len(confirmed) >= PROCESSES - KILLED
    log = ready.json("log", "--limit", "0", "--type", "checkin.recorded")
    counts = Counter(entry["event"]["id"] for entry in log)
    assert all(n == 1 for n in counts.values())
    for event_id in confirmed:
        assert counts[event_id] == 1
    assert ready.json("rebuild", "--check")["agree"] is True
    ready.ok("status")
