"""The team page's routes: sign-in, board, feed (live), kudos, drift, charts, a person's page.

Every page reads the same cached view objects as the JSON API (the same
``ctx.cached`` keys, so the bytes are literally shared) and has a JSON twin
(``….json``) over the page's data. Reading works without JavaScript; the
script only makes the feed live and kudos instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import quote

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, ServerSentEvent

from events import Event, HybridLogicalClock, KudosGiven, encode, new_event_id
from projections.drift import DriftSignal, drift_signals
from projections.goals import GoalTree, KeyResultView, ObjectiveView, checkins_for, goal_tree
from projections.health import Health, tree_health
from projections.kudos import kudos_givers, kudos_refusal
from projections.review import Review, review, review_markdown
from projections.team import (
    FeedPage,
    InvalidCursor,
    TeamBoard,
    team_board,
    team_drift,
    team_feed,
    visible_signals,
)
from projections.visibility import can_see_item
from server.http.context import ServerContext, context_of
from server.http.controllers.teams import StreamCursor, TeamDrift, feed_events
from server.http.errors import ApiError, InvalidParameter, NotVisible
from server.http.services import check_cycle, require_member, require_person, review_period
from server.ingest import validate
from server.nats_embedded import events_subject
from server.web import charts
from server.web.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_REFUSED,
    LINK_SECONDS,
    SESSION_COOKIE,
    SESSION_ENDED,
    SESSION_SECONDS,
    SIGNIN_COOKIE,
    SessionKeeper,
    SignedIn,
    SignInRefused,
    same_secret,
)
from server.web.views import (
    BoardFilters,
    BoardPage,
    DriftPage,
    FeedPageView,
    IndicatorView,
    board_page,
    drift_page,
    person_indicators,
)

AnyRequest = Request[Any, Any, Any]

PAGE_TTL = 30.0
"""Seconds a rendered page stands at one position (a new event re-renders it at once)."""

WEB_DEVICE = "web"
"""The device id of events written from the team page."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_decode_board = msgspec.json.Decoder(TeamBoard).decode
_decode_feed = msgspec.json.Decoder(FeedPage).decode
_decode_drift = msgspec.json.Decoder(TeamDrift).decode
_decode_review = msgspec.json.Decoder(Review).decode
_decode_tree = msgspec.json.Decoder(GoalTree).decode
_encode = msgspec.json.Encoder().encode


# --- plumbing ---------------------------------------------------------------------------


class Rendered(NamedTuple):
    """A rendered page and its gzip encoding."""

    html: bytes
    gzipped: bytes


class WebState:
    """Per-process state of the page: sessions, the clock of kudos, rendered pages."""

    MAX_PAGES = 512
    MAX_BYTES = 64 << 20
    """Rendered pages kept at most (count and bytes, HTML and gzip): oldest used go first."""

    def __init__(self, ctx: ServerContext) -> None:
        self.sessions = SessionKeeper(ctx.tokens)
        self.clock = HybridLogicalClock()
        self.kudos_lock = asyncio.Lock()
        self.pages: OrderedDict[tuple[Any, ...], tuple[float, Rendered]] = OrderedDict()
        self.rendering: dict[tuple[Any, ...], asyncio.Task[Rendered]] = {}
        self.kept_bytes = 0

    def start_rendering(
        self, key: tuple[Any, ...], render: Callable[[], Awaitable[str]], ttl: float
    ) -> asyncio.Task[Rendered]:
        """Render a page in the background, storing it under ``key`` when done."""

        async def run() -> Rendered:
            try:
                html = (await render()).encode()
                # Browsers ask for gzip: compressed once per rendering, not per request.
                body = Rendered(html, await asyncio.to_thread(gzip.compress, html, 6))
                old = self.pages.pop(key, None)
                if old is not None:
                    self.kept_bytes -= len(old[1].html) + len(old[1].gzipped)
                self.pages[key] = (time.monotonic() + ttl, body)
                self.kept_bytes += len(html) + len(body.gzipped)
                while len(self.pages) > 1 and (
                    len(self.pages) > self.MAX_PAGES or self.kept_bytes > self.MAX_BYTES
                ):
                    _, (_, dropped) = self.pages.popitem(last=False)
                    self.kept_bytes -= len(dropped.html) + len(dropped.gzipped)
                return body
            finally:
                self.rendering.pop(key, None)

        task = asyncio.create_task(run())
        self.rendering[key] = task
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        return task


def _web(request: AnyRequest) -> WebState:
    state: WebState = request.app.state.web
    return state


def _secure(request: AnyRequest) -> bool:
    return request.url.scheme == "https"


async def _signed_in(request: AnyRequest) -> SignedIn:
    """The signed-in person, or SESSION_ENDED (a page that says what to do)."""
    ctx = context_of(request)
    found = await _web(request).sessions.check(request.cookies.get(SESSION_COOKIE), ctx.clock())
    if found is None:
        raise SESSION_ENDED
    return found


async def _maybe_signed_in(request: AnyRequest) -> SignedIn | None:
    ctx = context_of(request)
    return await _web(request).sessions.check(request.cookies.get(SESSION_COOKIE), ctx.clock())


def _render(request: AnyRequest, name: str, **context: Any) -> str:
    engine = request.app.template_engine
    assert engine is not None
    rendered: str = engine.get_template(name).render(request=request, **context)
    return rendered


def _html(
    body: str | bytes, status: int = 200, cookies: list[Cookie] | None = None
) -> Response[Any]:
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
        cookies=cookies,
    )


def _json(payload: bytes | Any) -> Response[Any]:
    body = payload if isinstance(payload, bytes) else _encode(payload)
    return Response(body, media_type="application/json", headers=SECURITY_HEADERS)


async def _page(
    request: AnyRequest, key: tuple[Any, ...], render: Callable[[], Awaitable[str]]
) -> Response[Any]:
    """A rendered page, computed once per projection position (and again after
    ``PAGE_TTL`` seconds: pages show time-dependent views, whose numbers move by the day).

    ``key`` names the session (a page carries its session's CSRF token), not only the
    person. Concurrent requests for a page being rendered wait for that one rendering; an
    expired page at the same position is served while its refresh runs, as the JSON
    routes' ``ctx.cached`` does.
    """
    ctx = context_of(request)
    web = _web(request)
    full_key = (ctx.follower.position, *key)
    hit = web.pages.get(full_key)
    if hit is not None:
        web.pages.move_to_end(full_key)
        if hit[0] <= time.monotonic() and full_key not in web.rendering:
            web.start_rendering(full_key, render, ctx.response_ttl)
        return _cached_html(request, hit[1])
    pending = web.rendering.get(full_key) or web.start_rendering(full_key, render, ctx.response_ttl)
    return _cached_html(request, await asyncio.shield(pending))


def _cached_html(request: AnyRequest, page: Rendered) -> Response[Any]:
    """A rendered page, gzipped when the browser accepts it."""
    if "gzip" in request.headers.get("accept-encoding", ""):
        response = _html(page.gzipped)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = _html(page.html)
    response.headers["Vary"] = "Accept-Encoding, Cookie"
    return response


def _problem(request: AnyRequest, exc: SignInRefused) -> Response[Any]:
    if request.url.path.endswith(".json"):
        return Response(
            {"status": exc.status, "error": exc.title, "reason": exc.advice},
            status_code=exc.status,
            headers=SECURITY_HEADERS,
        )
    body = _render(request, "problem.html", problem=exc, me=None)
    cookies = None
    if exc is SESSION_ENDED:  # forget a dead cookie
        cookies = [
            Cookie(key=SESSION_COOKIE, value="", max_age=0, httponly=True, samesite="strict")
        ]
    return _html(body, exc.status, cookies)


def _not_found(request: AnyRequest, exc: Exception) -> Response[Any]:
    return _problem(
        request,
        SignInRefused(
            "Not found",
            "There is nothing here that you may see. Check the address, or go back to your "
            "team's board.",
            404,
        ),
    )


def _bad_parameter(request: AnyRequest, exc: InvalidParameter) -> Response[Any]:
    return _problem(
        request,
        SignInRefused("That address has a bad parameter", f"{exc.field}: {exc.reason}", 422),
    )


def _http_error(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return _not_found(request, exc)
    if exc.status_code >= 500:
        return _problem(request, SignInRefused("Something went wrong", "Try again.", 500))
    return _problem(
        request, SignInRefused("That request could not be used", str(exc.detail), exc.status_code)
    )


def _api_error(request: AnyRequest, exc: ApiError) -> Response[Any]:
    if isinstance(exc, InvalidParameter):
        return _bad_parameter(request, exc)
    if isinstance(exc, NotVisible):
        return _not_found(request, exc)
    return _problem(request, SignInRefused(exc.message, "Try again.", exc.status))


def _common(me: SignedIn, ctx: ServerContext) -> dict[str, Any]:
    return {"me": me, "teams": sorted(ctx.state.teams_of(me.person)), "now": ctx.clock()}


def _check_csrf(me: SignedIn, given: str | None) -> None:
    if not same_secret(given, me.csrf):
        raise CSRF_REFUSED


# --- sign-in ----------------------------------------------------------------------------


@get("/", include_in_schema=False)
async def home(request: AnyRequest) -> Response[Any]:
    """Signed in: your first team's board (or your own page). Otherwise: the sign-in form."""
    me = await _maybe_signed_in(request)
    if me is None:
        return _signin_form(request)
    ctx = context_of(request)
    teams = sorted(ctx.state.teams_of(me.person))
    target = f"/t/{quote(teams[0])}" if teams else f"/p/{quote(me.person)}"
    return Redirect(target, status_code=303, headers=SECURITY_HEADERS)


def _signin_form(request: AnyRequest, error: str | None = None, status: int = 200) -> Response[Any]:
    nonce = secrets.token_urlsafe(16)
    body = _render(request, "signin.html", nonce=nonce, error=error, me=None)
    cookie = Cookie(
        key=SIGNIN_COOKIE,
        value=nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/signin",
    )
    return _html(body, status, [cookie])


@get("/signin", include_in_schema=False)
async def signin_page(request: AnyRequest) -> Response[Any]:
    """The sign-in form (an API token), and how to get a one-time link instead."""
    return _signin_form(request)


def _session_cookie(request: AnyRequest, value: str) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )


def _signed_in_page(request: AnyRequest, person: str, cookie: str) -> Response[Any]:
    """A same-site page that moves on to ``/`` (a redirect from a cross-site link would
    arrive without the SameSite=Strict cookie)."""
    body = _render(request, "signed_in.html", person=person, me=None)
    return _html(body, 200, [_session_cookie(request, cookie)])


@post("/signin", include_in_schema=False, status_code=200)
async def signin_with_token(request: AnyRequest) -> Response[Any]:
    """Sign in with an API token posted from the form."""
    form = await request.form()
    nonce = request.cookies.get(SIGNIN_COOKIE)
    if not nonce or not same_secret(str(form.get("signin", "")), nonce):
        raise CSRF_REFUSED
    web, ctx = _web(request), context_of(request)
    try:
        person = await web.sessions.person_for_token(str(form.get("token", "")))
    except SignInRefused as refused:
        return _signin_form(request, f"{refused.title}. {refused.advice}", 401)
    cookie, _ = await web.sessions.start(person, ctx.clock())
    return _signed_in_page(request, person, cookie)


@get("/signin/{token:str}", include_in_schema=False)
async def signin_with_link(request: AnyRequest, token: FromPath[str]) -> Response[Any]:
    """Redeem a one-time link from ``milepost web``: a session, or a page saying why not."""
    web, ctx = _web(request), context_of(request)
    person = await web.sessions.redeem_link(token, ctx.clock())
    cookie, _ = await web.sessions.start(person, ctx.clock())
    return _signed_in_page(request, person, cookie)


@post("/signout", include_in_schema=False, status_code=200)
async def signout(request: AnyRequest) -> Response[Any]:
    """End this browser's session."""
    me = await _signed_in(request)
    form = await request.form()
    _check_csrf(me, str(form.get(CSRF_FIELD, "")) or request.headers.get(CSRF_HEADER))
    await _web(request).sessions.end(me)
    body = _render(request, "signed_out.html", me=None)
    return _html(
        body,
        200,
        [Cookie(key=SESSION_COOKIE, value="", max_age=0, httponly=True, samesite="strict")],
    )


class SignInLink(msgspec.Struct, frozen=True):
    """A one-time sign-in link for the caller (works once, for a few minutes)."""

    url: str
    expires_at: datetime


@post(
    "/auth/links",
    summary="A one-time sign-in link to the team page for the caller",
    tags=["web"],
    status_code=201,
)
async def new_signin_link(request: Request[str, str, Any]) -> SignInLink:
    """A fresh one-time link (``milepost web`` opens it); only its hash is stored."""
    ctx = context_of(request)
    now = ctx.clock()
    token = await _web(request).sessions.new_link(request.user, now)
    base = str(request.base_url).rstrip("/")
    return SignInLink(f"{base}/signin/{token}", now + timedelta(seconds=LINK_SECONDS))


# --- the board --------------------------------------------------------------------------


async def _board(ctx: ServerContext, viewer: str, team: str, cycle: str) -> TeamBoard:
    """The API's board for the viewer (the very same cached bytes as GET /teams/…/board)."""
    state, now, settings = ctx.state, ctx.clock(), ctx.settings
    payload = await ctx.cached(
        ("board", viewer, team, cycle),
        lambda: team_board(state, team, viewer, now, cycle=cycle, settings=settings),
    )
    return _decode_board(payload)


def _filters(person: str | None, cycle: str | None, health: str | None) -> BoardFilters:
    check_cycle(cycle or "current")
    if health is not None and health not in ("on-track", "at-risk", "off-track", "done", "dropped"):
        raise InvalidParameter("health", "one of on-track, at-risk, off-track, done, dropped")
    return BoardFilters(person or None, cycle or "current", health or None)


async def _board_page(
    request: AnyRequest, team: str, filters: BoardFilters
) -> tuple[SignedIn, BoardPage]:
    me = await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)
    board = await _board(ctx, me.person, team, filters.cycle)
    return me, board_page(board, filters)


@get("/t/{team:str}", include_in_schema=False)
async def board(
    request: AnyRequest,
    team: FromPath[str],
    person: FromQuery[str | None] = None,
    cycle: FromQuery[str | None] = None,
    health: FromQuery[str | None] = None,
) -> Response[Any]:
    """The team board: each member's objectives, key results and milestones with health."""
    filters = _filters(person, cycle, health)
    me = await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)

    async def render() -> str:
        page = board_page(await _board(ctx, me.person, team, filters.cycle), filters)
        common = _common(me, ctx)
        return await asyncio.to_thread(
            _render, request, "board.html", page=page, team=team, **common
        )

    return await _page(request, ("board", me.session_hash, team, filters), render)


@get("/t/{team:str}/board.json", include_in_schema=False)
async def board_json(
    request: AnyRequest,
    team: FromPath[str],
    person: FromQuery[str | None] = None,
    cycle: FromQuery[str | None] = None,
    health: FromQuery[str | None] = None,
) -> Response[Any]:
    """The board page's data."""
    _, page = await _board_page(request, team, _filters(person, cycle, health))
    return _json(page)


# --- the feed ---------------------------------------------------------------------------


async def _feed_page(
    request: AnyRequest, team: str, cursor: str | None, me: SignedIn | None = None
) -> tuple[SignedIn, FeedPageView]:
    me = me or await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)
    position = ctx.follower.position
    state, viewer = ctx.state, me.person
    try:
        payload = await ctx.cached(
            ("feed", viewer, team, cursor, 50),
            lambda: team_feed(state, team, viewer, cursor=cursor, limit=50),
            uses_clock=False,
        )
    except InvalidCursor:
        raise InvalidParameter("cursor", "not a cursor returned by this feed") from None
    return me, FeedPageView(team, viewer, _decode_feed(payload), position)


@get("/t/{team:str}/feed", include_in_schema=False)
async def feed(
    request: AnyRequest, team: FromPath[str], cursor: FromQuery[str | None] = None
) -> Response[Any]:
    """The team feed, newest first; the script keeps it live over server-sent events."""
    me = await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)

    async def render() -> str:
        _, view = await _feed_page(request, team, cursor, me)
        common = _common(me, ctx)
        return await asyncio.to_thread(
            _render, request, "feed.html", view=view, team=team, cursor=cursor, **common
        )

    return await _page(request, ("feed", me.session_hash, team, cursor), render)


@get("/t/{team:str}/feed.json", include_in_schema=False)
async def feed_json(
    request: AnyRequest, team: FromPath[str], cursor: FromQuery[str | None] = None
) -> Response[Any]:
    """The feed page's data."""
    _, view = await _feed_page(request, team, cursor)
    return _json(view)


@get("/t/{team:str}/feed/live", include_in_schema=False)
async def feed_live(request: AnyRequest, team: FromPath[str]) -> ServerSentEvent:
    """The API's live feed stream for the signed-in person (resumes from Last-Event-ID or
    from ``after``, the position the page was rendered at)."""
    me = await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)
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
    me = await _signed_in(request)
    form = await request.form()
    _check_csrf(me, str(form.get(CSRF_FIELD, "")) or request.headers.get(CSRF_HEADER))
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)
    completion = str(form.get("completion", ""))
    web = _web(request)
    async with web.kudos_lock:
        refusal = kudos_refusal(ctx.state, me.person, completion)
        if refusal is not None:
            if request.headers.get("accept", "").startswith("application/json"):
                return Response(
                    {"status": 422, "error": "kudos refused", "reason": refusal},
                    status_code=422,
                    headers=SECURITY_HEADERS,
                )
            raise SignInRefused("Kudos could not be given", refusal + ". Nothing was written.", 422)
        target = ctx.state.events[completion]
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
    givers = kudos_givers(ctx.state, completion)
    if request.headers.get("accept", "").startswith("application/json"):
        return _json(KudosResult(completion, givers))
    return Redirect(f"/t/{quote(team)}/feed#item-{completion}", status_code=303)


# --- drift ------------------------------------------------------------------------------


async def _drift_page(
    request: AnyRequest, team: str, me: SignedIn | None = None
) -> tuple[SignedIn, DriftPage]:
    me = me or await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)
    state, viewer, settings, now = ctx.state, me.person, ctx.settings, ctx.clock()
    payload = await ctx.cached(
        ("drift", viewer, team),
        lambda: TeamDrift(team, now, team_drift(state, team, viewer, now, settings)),
    )
    return me, drift_page(team, viewer, _decode_drift(payload).signals)


@get("/t/{team:str}/drift", include_in_schema=False)
async def drift(request: AnyRequest, team: FromPath[str]) -> Response[Any]:
    """The team's drift grouped by item: each signal's rule, numbers and events."""
    me = await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)

    async def render() -> str:
        _, page = await _drift_page(request, team, me)
        common = _common(me, ctx)
        return await asyncio.to_thread(
            _render, request, "drift.html", page=page, team=team, **common
        )

    return await _page(request, ("drift", me.session_hash, team), render)


@get("/t/{team:str}/drift.json", include_in_schema=False)
async def drift_json(request: AnyRequest, team: FromPath[str]) -> Response[Any]:
    """The drift page's data."""
    _, page = await _drift_page(request, team)
    return _json(page)


# --- charts -----------------------------------------------------------------------------


def _find_key_result(
    board: TeamBoard, key_result: str
) -> tuple[ObjectiveView, KeyResultView] | None:
    for member in board.members:
        for objective in member.objectives:
            for kr in objective.key_results:
                if kr.id == key_result:
                    return objective, kr
    return None


async def _burnup(
    request: AnyRequest, team: str, key_result: str
) -> tuple[SignedIn, charts.BurnUp]:
    me = await _signed_in(request)
    ctx = context_of(request)
    require_member(ctx.state, team, me.person)
    found = _find_key_result(await _board(ctx, me.person, team, "all"), key_result)
    if found is None or not can_see_item(ctx.state, me.person, key_result):
        raise NotVisible()
    objective, kr = found
    checkins = checkins_for(ctx.state, key_result)
    return me, charts.burn_up(ctx.state, objective, kr, checkins, ctx.clock())


@get("/t/{team:str}/kr/{key_result:str}", include_in_schema=False)
async def key_result_page(
    request: AnyRequest, team: FromPath[str], key_result: FromPath[str]
) -> Response[Any]:
    """One key result: its burn-up chart and its check-ins."""
    me, chart = await _burnup(request, team, key_result)
    ctx = context_of(request)
    body = _render(
        request,
        "key_result.html",
        chart=chart,
        svg=charts.burn_up_svg(chart),
        team=team,
        **_common(me, ctx),
    )
    return _html(body)


@get("/t/{team:str}/kr/{key_result:str}/burnup.svg", include_in_schema=False)
async def burnup_svg(
    request: AnyRequest, team: FromPath[str], key_result: FromPath[str]
) -> Response[Any]:
    """The burn-up chart alone, as SVG."""
    _, chart = await _burnup(request, team, key_result)
    return Response(charts.burn_up_svg(chart), media_type="image/svg+xml", headers=SECURITY_HEADERS)


@get("/t/{team:str}/kr/{key_result:str}/chart.json", include_in_schema=False)
async def burnup_json(
    request: AnyRequest, team: FromPath[str], key_result: FromPath[str]
) -> Response[Any]:
    """The burn-up chart's data."""
    _, chart = await _burnup(request, team, key_result)
    return _json(chart)


# --- a person's page --------------------------------------------------------------------


class PersonPage(msgspec.Struct, frozen=True):
    """A person's page: their goals (as the API's goal tree), indicators, journal and review."""

    person: str
    viewer: str
    goals: GoalTree
    health: dict[str, Health]
    team: str | None  # a team the viewer shares with the person (for the charts' links)
    indicators: list[IndicatorView]
    review: Review
    year: charts.YearStrip


async def _person_page(
    request: AnyRequest, person: str, start: date | None, end: date | None
) -> tuple[SignedIn, PersonPage]:
    me = await _signed_in(request)
    ctx = context_of(request)
    now = ctx.clock()
    first, last = review_period(start, end, now.date())
    require_person(ctx.state, me.person, person, now)
    state, viewer, settings = ctx.state, me.person, ctx.settings
    goals = _decode_tree(
        await ctx.cached(
            ("goals", viewer, person, None, "current"),
            lambda: goal_tree(state, person, now, viewer=viewer, cycle="current"),
        )
    )
    shown = _decode_review(
        await ctx.cached(
            ("review", viewer, person, first, last),
            lambda: review(state, person, first, last, now, viewer, settings),
        )
    )
    year = charts.year_strip(shown)
    indicators = person_indicators(state, person, viewer, shown)
    signals = visible_signals(
        state,
        person,
        viewer,
        state.memoized(
            ("drift", person, now.date(), settings),
            partial(drift_signals, state, person, now, settings),
        ),
    )
    health = tree_health(
        goals.objectives, goals.standalone_milestones, now.date(), signals, settings=settings
    )
    shared = sorted(state.teams_of(viewer) & state.teams_of(person))
    team = shared[0] if shared else None
    return me, PersonPage(person, viewer, goals, health, team, indicators, shown, year)


@get("/p/{person:str}", include_in_schema=False)
async def person_page(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """A person's indicators and journal (± marked), year strip and review (printable)."""
    me, page = await _person_page(request, person, start, end)
    ctx = context_of(request)
    journal = _journal(page.review)
    body = _render(
        request,
        "person.html",
        page=page,
        journal=journal,
        strip=charts.year_strip_svg(page.year),
        **_common(me, ctx),
    )
    return _html(body)


def _journal(shown: Review) -> dict[str, list[Any]]:
    """Observations grouped by indicator title ('' for bare journal entries), newest first."""
    grouped: dict[str, list[Any]] = {}
    for seen in sorted(shown.observations, key=lambda o: o.occurred_at, reverse=True):
        grouped.setdefault(seen.indicator_title or "", []).append(seen)
    return grouped


@get("/p/{person:str}/review.json", include_in_schema=False)
async def person_review_json(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """The review as JSON (a download)."""
    _, page = await _person_page(request, person, start, end)
    response = _json(page.review)
    name = f"review-{person}-{page.review.start}-{page.review.end}.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@get("/p/{person:str}/review.md", include_in_schema=False)
async def person_review_markdown(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """The review as Markdown (a download)."""
    _, page = await _person_page(request, person, start, end)
    name = f"review-{person}-{page.review.start}-{page.review.end}.md"
    return Response(
        review_markdown(page.review),
        media_type="text/markdown; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@get("/p/{person:str}/page.json", include_in_schema=False)
async def person_json(
    request: AnyRequest,
    person: FromPath[str],
    start: FromQuery[date | None] = None,
    end: FromQuery[date | None] = None,
) -> Response[Any]:
    """The person page's data."""
    _, page = await _person_page(request, person, start, end)
    return _json(page)


WEB_ROUTES = [
    home,
    signin_page,
    signin_with_token,
    signin_with_link,
    signout,
    board,
    board_json,
    feed,
    feed_json,
    feed_live,
    give_kudos,
    drift,
    drift_json,
    key_result_page,
    burnup_svg,
    burnup_json,
    person_page,
    person_review_json,
    person_review_markdown,
    person_json,
]
"""Routes signed in by the session cookie (the bearer middleware leaves them alone)."""


def web_router() -> Router:
    """The page's routes, with errors shown as pages that say what to do."""
    return Router(
        path="/",
        route_handlers=WEB_ROUTES,
        exception_handlers={
            SignInRefused: _problem,
            ApiError: _api_error,
            HTTPException: _http_error,
        },
        include_in_schema=False,
        request_max_body_size=64 * 1024,  # forms only: a token, a CSRF token, an id
    )


__all__ = ["DriftSignal", "SignInLink", "WebState", "new_signin_link", "web_router"]
