"""Fixtures for integration tests beyond ``tests/conftest.py``: the NATS cluster."""

from tests.cluster import nats_cluster

__all__ = ["nats_cluster"]
