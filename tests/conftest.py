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
