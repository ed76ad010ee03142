"""The client's sync, as a small package with ports:

- ``config`` — where and as whom to connect (``Endpoint``), tunables from the environment;
- ``transport`` — the ``Transport`` port and ``NatsTransport`` (nats-py; formerly ``Link``);
- ``log`` — the ``SyncStore`` port and ``SyncLog``, the sync state in the client database,
  each operation one synchronous transaction in the store's worker thread;
- ``progress`` — progress bars of a big sync;
- ``engine`` — ``Syncer``: push, pull, one full sync, and ``watch``.

Everything callers used from the former ``client/sync.py`` is importable from here.
"""

from client.sync.config import (
    DEFAULT_POLL,
    DEFAULT_REPUSH_AFTER,
    Endpoint,
    backoff_delays,
    endpoint,
    poll_interval,
    repush_after_default,
)
from client.sync.engine import (
    APPLY_BATCH,
    PULL_AHEAD,
    PUSH_CHUNK,
    RefusedEvent,
    Summary,
    Syncer,
)
from client.sync.errors import SyncError, SyncRefused, SyncUnreachable
from client.sync.log import (
    REBUILD_ABOVE,
    CommitWatch,
    Counts,
    SyncLog,
    SyncStore,
    apply_views,
    referenced,
    wall_ms,
)
from client.sync.progress import BIG_SYNC, Progress, RichProgress, progress_for
from client.sync.transport import Link, NatsTransport, Transport

__all__ = [
    "APPLY_BATCH",
    "BIG_SYNC",
    "DEFAULT_POLL",
    "DEFAULT_REPUSH_AFTER",
    "PULL_AHEAD",
    "PUSH_CHUNK",
    "REBUILD_ABOVE",
    "CommitWatch",
    "Counts",
    "Endpoint",
    "Link",
    "NatsTransport",
    "Progress",
    "RefusedEvent",
    "RichProgress",
    "Summary",
    "SyncError",
    "SyncLog",
    "SyncRefused",
    "SyncStore",
    "SyncUnreachable",
    "Syncer",
    "Transport",
    "apply_views",
    "backoff_delays",
    "endpoint",
    "poll_interval",
    "progress_for",
    "referenced",
    "repush_after_default",
    "wall_ms",
]
