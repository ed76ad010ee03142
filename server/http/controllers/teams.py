"""A team's board, feed (paged and live) and drift list, for its members only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from projections.drift import DriftSignal
from projections.team import (
    FeedPage,
    InvalidCursor,
    SubjectResolver,
    TeamBoard,
    team_board,
    team_drift,
    team_feed,
)
from projections.visibility import awaits_ancestor
from server.http.auth import SECURITY_SCHEME
from server.http.context import ServerContext, context_of
from server.http.errors import ERROR_RESPONSES, InvalidParameter
from server.http.services import check_cycle, json_response, require_member
from server.projection import Folded

Viewer = Request[str, str, Any]


class TeamDrift(msgspec.Struct, frozen=True):
    """A team's drift list as the caller may see it."""

    team: str
    as_of: datetime
    signals: list[DriftSignal]


class TeamsController(Controller):
    """Team views; a caller who is not a current member gets 404."""

    path = "/teams/{team:str}"
    tags = ["teams"]  # noqa: RUF012 - Litestar reads these class attributes
    security = [{SECURITY_SCHEME: []}]  # noqa: RUF012
    responses = ERROR_RESPONSES

    @get("/board", summary="Each member's goals as the caller may see them")
    async def board(
        self,
        request: Viewer,
        ctx: NamedDependency[ServerContext],
        team: FromPath[str],
        cycle: Annotated[
            str,
            QueryParameter(
                description="Which objectives: `current` (the default), `all`, or one cycle"
                " such as 2026-Q1."
            ),
        ] = "current",
    ) -> Response[TeamBoard]:
        """The team's goal board, with each item's health (pace, due dates, drift)."""
        check_cycle(cycle)
        require_member(ctx.directory, team, request.user)
        viewer, state, now, settings = (
            request.user,
            await ctx.team_state(team),
            ctx.clock(),
            ctx.settings,
        )
        key = ("board", viewer, team, cycle)
        return json_response(
            await ctx.cached(
                key, lambda: team_board(state, team, viewer, now, cycle=cycle, settings=settings)
            )
        )

    @get("/feed", summary="The team feed, newest first, paged by cursor")
    async def feed(
        self,
        request: Viewer,
        team: FromPath[str],
        cursor: Annotated[
            str | None,
            QueryParameter(description="next_cursor of the previous page.", max_length=512),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200, description="Items per page.")] = 50,
    ) -> Response[FeedPage]:
        """One page of what the caller may see of the team's milestones, check-ins, observations."""
        ctx = context_of(request)
        require_member(ctx.directory, team, request.user)
        viewer, state = request.user, await ctx.team_state(team)
        key = ("feed", viewer, team, cursor, limit)
        try:
            payload = await ctx.cached(
                key,
                lambda: team_feed(state, team, viewer, cursor=cursor, limit=limit),
                uses_clock=False,  # the feed reads only the state
            )
            return json_response(payload)
        except InvalidCursor:
            raise InvalidParameter("cursor", "not a cursor returned by this feed") from None

    @get(
        "/feed/stream",
        summary="The team feed live, as server-sent events",
        description=(
            "Each new feed item the caller may see is sent as a `feed.item` event whose `id` "
            "is its store position; a `ready` event (with the current position as its id) "
            "marks the end of the catch-up. Reconnect with `Last-Event-ID` to resume."
        ),
    )
    async def stream(
        self,
        request: Viewer,
        ctx: NamedDependency[ServerContext],
        team: FromPath[str],
        last_event_id: Annotated[
            int | None,
            HeaderParameter(
                name="Last-Event-ID",
                ge=0,
                le=(1 << 62),
                description="Resume after this position.",
            ),
        ] = None,
    ) -> ServerSentEvent:
        """Server-sent events of the team feed."""
        require_member(ctx.directory, team, request.user)
        # The stream's start is fixed here, before the response headers go out, not when
        # the body is first iterated: a client that has seen the 200 gets every item
        # folded from then on.
        position = ctx.follower.position
        cursor = StreamCursor(position if last_event_id is None else min(last_event_id, position))
        return ServerSentEvent(feed_events(ctx, team, request.user, cursor))

    @get("/drift", summary="The team's drift signals the caller may see")
    async def drift(
        self, request: Viewer, ctx: NamedDependency[ServerContext], team: FromPath[str]
    ) -> Response[TeamDrift]:
        """Drift signals of every current member, filtered for the caller."""
        require_member(ctx.directory, team, request.user)
        now = ctx.clock()
        viewer, state, settings = request.user, await ctx.team_state(team), ctx.settings
        return json_response(
            await ctx.cached(
                ("drift", viewer, team),
                lambda: TeamDrift(team, now, team_drift(state, team, viewer, now, settings)),
            )
        )


_encoder = msgspec.json.Encoder()


class StreamCursor:
    """Where one live feed stream stands: its position and the items held back.

    An item whose ancestor has not been folded yet (with several replicas a
    check-in can commit before its milestone) is invisible to others for now;
    it is held and sent, with the then-current position as its id, once the
    ancestor arrives. The paged feed shows it in its place either way.
    """

    MAX_HELD = 10_000

    def __init__(self, position: int) -> None:
        self.position = position
        self.held: dict[str, None] = {}  # insertion-ordered set of event ids

    def advance(
        self, ctx: NamedDependency[ServerContext], folded: Folded, team: str, viewer: str
    ) -> list[ServerSentEventMessage]:
        """Messages for the items of ``folded`` (the team's) that became visible since the
        last call."""
        state = folded.state
        upto = ctx.follower.position
        members = state.members_of(team)
        resolver = SubjectResolver(state, viewer)
        messages = []
        retry = list(self.held)
        self.held.clear()
        fresh = [(upto, event_id) for event_id in retry]
        fresh += list(folded.feed_events_after(self.position))
        for position, event_id in fresh:
            event = state.events.get(event_id)
            if event is None:
                # Waiting for an event it names (the ownership rule judges it when that one
                # arrives): held like an item whose ancestor is missing.
                pending = state.pending.get(event_id)
                room = len(self.held) < self.MAX_HELD
                if pending is not None and pending.actor in members and room:
                    self.held[event_id] = None
                continue
            if event.actor not in members:
                continue
            item = resolver.item(event_id)
            if item is not None:
                data = _encoder.encode(item).decode()
                messages.append(ServerSentEventMessage(data=data, event="feed.item", id=position))
            elif awaits_ancestor(state, event_id) and len(self.held) < self.MAX_HELD:
                self.held[event_id] = None
        self.position = upto
        return messages


async def feed_events(
    ctx: NamedDependency[ServerContext], team: FromPath[str], viewer: str, cursor: StreamCursor
) -> AsyncIterator[ServerSentEventMessage]:
    """Catch up from ``cursor``, say ``ready``, then follow the projections."""
    follower = ctx.follower
    for message in cursor.advance(ctx, await ctx.team_view(team), team, viewer):
        yield message
    yield ServerSentEventMessage(data="{}", event="ready", id=cursor.position)
    while not ctx.stopping.is_set():
        advanced = await follower.wait_beyond(cursor.position, ctx.keepalive_seconds)
        if ctx.stopping.is_set() or team not in ctx.directory.teams_of(viewer):
            return
        if not advanced:
            yield ServerSentEventMessage(comment="keepalive")
            continue
        for message in cursor.advance(ctx, await ctx.team_view(team), team, viewer):
            yield message
