"""What the page's script drives: the live feed (server-sent events) and instant kudos."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent

from events import Event, KudosGiven, encode, new_event_id
from projections.kudos import kudos_givers, kudos_refusal
from server.http.context import context_of
from server.http.controllers.teams import StreamCursor, feed_events
from server.http.services import require_member
from server.ingest import validate
from server.nats_embedded import events_subject
from server.web.plumbing import (
    SECURITY_HEADERS,
    AnyRequest,
    check_csrf,
    json_response,
    require_signed_in,
    web_state,
)
from server.web.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SignInRefused,
)

WEB_DEVICE = "web"
"""The device id of events written from the team page."""


@get("/t/{team:str}/feed/live", include_in_schema=False)
async def feed_live(request: AnyRequest, team: FromPath[str]) -> ServerSentEvent:
    """The API's live feed stream for the signed-in person (resumes from Last-Event-ID or
    from ``after``, the position the page was rendered at)."""
    me = await require_signed_in(request)
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)
    after: int | None = None
    for raw in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if raw is not None and raw.isdigit() and len(raw) < 19:
            after = int(raw)
            break
    position = ctx.follower.position  # fixed before the headers go out (see teams.py)
    cursor = StreamCursor(position if after is None else min(after, position))
    return ServerSentEvent(
        feed_events(ctx, team, me.person, cursor), headers={"Cache-Control": "no-store"}
    )


# --- kudos ------------------------------------------------------------------------------


class KudosResult(msgspec.Struct, frozen=True):
    completion: str
    kudos: list[str]


@post("/t/{team:str}/kudos", include_in_schema=False, status_code=200)
async def give_kudos(request: AnyRequest, team: FromPath[str]) -> Response[Any]:
    """Give kudos on a completion: a ``kudos.given`` event by the signed-in person, judged by
    ``projections.kudos.kudos_refusal`` and stored as ingest stores a device's event."""
    me = await require_signed_in(request)
    form = await request.form()
    check_csrf(me, str(form.get(CSRF_FIELD, "")) or request.headers.get(CSRF_HEADER))
    ctx = context_of(request)
    require_member(ctx.directory, team, me.person)
    completion = str(form.get("completion", ""))
    web = web_state(request)
    async with web.kudos_lock:
        state = await ctx.team_state(team)  # the completion is a member's: it is in there
        refusal = kudos_refusal(state, me.person, completion)
        if refusal is not None:
            if request.headers.get("accept", "").startswith("application/json"):
                return Response(
                    {"status": 422, "error": "kudos refused", "reason": refusal},
                    status_code=422,
                    headers=SECURITY_HEADERS,
                )
            raise SignInRefused("Kudos could not be given", refusal + ". Nothing was written.", 422)
        target = state.events[completion]
        web.clock.observe(target.clock)
        now = ctx.clock()
        event = Event(
            id=new_event_id(),
            actor=me.person,
            device=WEB_DEVICE,
            clock=web.clock.now(),
            recorded_at=now,
            occurred_at=now,
            body=KudosGiven(completion=completion),
        )
        incoming = validate(encode(event), events_subject(me.person, event.id))
        result = await ctx.store.append_batch([incoming])
        if not ctx.follower.offer(result.stored, (incoming,)):
            ctx.follower.poke()
        if ctx.poke is not None:
            with contextlib.suppress(Exception):  # the event is stored; devices pull it anyway
                await ctx.poke(result)
        last = result.last_position
        if last is not None:
            await ctx.follower.wait_beyond(last - 1, 5.0)
    givers = kudos_givers(await ctx.team_state(team), completion)
    if request.headers.get("accept", "").startswith("application/json"):
        return json_response(KudosResult(completion, givers))
    return Redirect(f"/t/{quote(team)}/feed#item-{completion}", status_code=303)
