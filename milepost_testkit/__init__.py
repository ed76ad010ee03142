"""Test support shared by ``tests/`` and ``bench/`` (neither imports the other).

- ``history``: the seeded, realistic history generator (benchmarks, rebuild and
  snapshot tests) and a small one-person history for sync runs;
- ``strategies``: the Hypothesis strategies for single events and coherent histories;
- ``cli``: the real ``milepost`` command as a subprocess against a temporary home;
- ``sync_world``: a nats-server, ``milepost-server run`` and device homes as processes;
- ``cluster``: a three-node NATS JetStream cluster of real ``nats-server`` processes.

Not installed with the package: pytest puts the repository root on the path
(``pythonpath`` in pyproject) and the bench scripts insert it themselves.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (subprocesses get it as ``PYTHONPATH``)."""

PEOPLE = ("alice", "bob", "carol", "dave")
"""People provisioned on every test nats-server and cluster."""
