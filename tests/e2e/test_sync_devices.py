"""Devices converge through the real server: bulk offline work, concurrent edits, --watch."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from milepost_testkit.history import jsonl_file, person_history
from milepost_testkit.sync_world import wait_until, world


def test_an_offline_laptop_logs_500_events_and_the_second_device_sees_them_all(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:
        laptop = w.device("alice", "laptop")
        phone = w.device("alice", "phone")
        # Offline: nothing reaches the server until `sync`.
        events = person_history("alice", "laptop", 500)
        assert (
            laptop.json("import", str(jsonl_file(tmp_path / "bulk.jsonl", events)))["added"] == 500
        )
        assert set(laptop.log_states().values()) == {"pending"}
        pushed = laptop.sync()
        assert pushed["pushed"] == 500 and pushed["pending"] == 0
        got = phone.sync()
        assert got["received"] == 500 and got["confirmed"] == 500
        assert set(phone.log_states()) == {e.id for e in events}
        laptop.sync()
        assert set(laptop.log_states().values()) == {"confirmed"}
        assert phone.status() == laptop.status()
        assert phone.json("feed", "--limit", "500") == laptop.json("feed", "--limit", "500")
        phone.ok("rebuild", "--check")  # views applied page by page equal a rebuild
        assert phone.json("status")["sync"]["pending"] == 0


def test_two_offline_devices_editing_the_same_milestone_converge(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        laptop = w.device("alice", "laptop", team="web")
        phone = w.device("alice", "phone", team="web")
        w.server.admin("team", "join", "web", "alice", "bob")
        goal = laptop.new("objective", "Launch", "--cycle", "2026-Q1", "--visibility", "team")
        ms = laptop.new("milestone", "add", "Beta", "--objective", goal, "--due", "2026-02-01")
        laptop.sync()
        phone.sync()
        # Both offline, both edit the same milestone; the phone's clock runs later.
        laptop.ok("milestone", "reschedule", ms, "2026-02-10", now="2026-01-06T10:00:00+00:00")
        laptop.ok("checkin", ms, "40", "--confidence", "at-risk",
                  now="2026-01-06T10:01:00+00:00")  # fmt: skip
        phone.ok("checkin", ms, "60", "--confidence", "on-track", now="2026-01-06T11:00:00+00:00")
        phone.ok("milestone", "reschedule", ms, "2026-02-20", now="2026-01-06T11:01:00+00:00")
        assert laptop.status() != phone.status()
        laptop.sync()
        phone.sync()
        laptop.sync()
        assert laptop.status() == phone.status()
        assert laptop.json("feed") == phone.json("feed")
        beta = laptop.status()["objectives"][0]["milestones"][0]
        assert beta["due_on"] == "2026-02-20"  # last writer by clock wins, on both
        teammate = w.device("bob", "laptop", team="web")
        teammate.sync()
        assert [i["summary"] for i in teammate.json("feed")["items"]] == [
            i["summary"] for i in laptop.json("feed")["items"]
        ]


def test_watch_pushes_as_events_are_logged_and_pulls_on_pokes(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        laptop = w.device("alice", "laptop")
        phone = w.device("alice", "phone")
        env = {**phone.env, "MILEPOST_HOME": str(phone.home), "MILEPOST_NOW": phone.now}
        laptop_env = {**laptop.env, "MILEPOST_HOME": str(laptop.home)}
        watchers = [
            subprocess.Popen(
                [sys.executable, "-m", "client.cli", "sync", "--watch", "--json"],
                env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for e in (env, {**laptop_env, "MILEPOST_NOW": laptop.now})
        ]  # fmt: skip
        try:
            ref = laptop.new("objective", "Watched", "--cycle", "2026-Q1")
            wait_until(lambda: any(ref in i for i in phone.log_states()), timeout=15)
            # The network goes away and comes back: the watchers reconnect by themselves.
            w.nats.stop()
            second = laptop.new("objective", "While NATS was away", "--cycle", "2026-Q1")
            w.nats.start()
            wait_until(lambda: any(second in i for i in phone.log_states()), timeout=30)
            wait_until(lambda: set(laptop.log_states().values()) == {"confirmed"}, timeout=15)
        finally:
            for watcher in watchers:
                watcher.send_signal(signal.SIGTERM)
            for watcher in watchers:
                _, err = watcher.communicate(timeout=15)
                assert watcher.returncode == 0, err
                assert "Traceback" not in err
