"""Fixtures for integration tests beyond ``tests/conftest.py``: the NATS cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from milepost_testkit.cluster import NatsCluster, running_cluster


@pytest_asyncio.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    """A three-node cluster with the events stream replicated three times."""
    async with running_cluster(tmp_path / "cluster") as cluster:
        yield cluster
