"""Shared fixtures. Service fixtures (real PostgreSQL, nats-server, stores) live in
``tests/services.py``; add other fixtures below the import."""

from tests.services import (
    make_event,
    nats_service,
    postgres_admin_url,
    postgres_url,
    store,
    store_factory,
)

__all__ = [
    "make_event",
    "nats_service",
    "postgres_admin_url",
    "postgres_url",
    "store",
    "store_factory",
]

from hypothesis import settings

settings.register_profile("deep", max_examples=500, stateful_step_count=120, deadline=None)
"""``pytest --hypothesis-profile=deep``: long runs of the property tests and of the replica
convergence machine (tests/integration/test_convergence.py), hours rather than minutes."""
