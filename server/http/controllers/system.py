"""Health and metrics (no token needed)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency

from server.http.context import ServerContext
from server.metrics import render


class Health(msgspec.Struct, frozen=True):
    """Liveness and how far the projections have read."""

    status: str
    projection_position: int


class SystemController(Controller):
    """Operational routes."""

    tags = ["system"]  # noqa: RUF012 - Litestar reads these class attributes

    @get("/health", summary="Liveness")
    async def health(self, ctx: NamedDependency[ServerContext]) -> Health:
        """``ok`` while the server runs."""
        return Health("ok", ctx.follower.position)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, ctx: NamedDependency[ServerContext]) -> Response[str]:
        """Events stored, dead letters, ingest counters, consumer lag, projection position."""
        text = await render(
            ctx.store,
            ctx.ingest,
            ctx.dead_letters,
            ctx.follower.position,
            ctx.consumer_lag,
            ctx.snapshots,
            ctx.follower.working_set,
            ctx.partition_refreshes,
        )
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
