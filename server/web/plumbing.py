"""The team page's plumbing: per-process state, the rendered-page cache, the signed-in
person, responses with the page's security headers, and errors shown as pages."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, NotFoundException

from events import HybridLogicalClock
from server.http.context import ServerContext, context_of
from server.http.errors import ApiError, InvalidParameter, NotVisible
from server.web.sessions import (
    CSRF_REFUSED,
    SESSION_COOKIE,
    SESSION_ENDED,
    SessionKeeper,
    SignedIn,
    SignInRefused,
    same_secret,
)

AnyRequest = Request[Any, Any, Any]

PAGE_TTL = 30.0
"""Seconds a rendered page stands at one position (a new event re-renders it at once)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

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


def web_state(request: AnyRequest) -> WebState:
    state: WebState = request.app.state.web
    return state


def is_secure(request: AnyRequest) -> bool:
    return request.url.scheme == "https"


async def require_signed_in(request: AnyRequest) -> SignedIn:
    """The signed-in person, or SESSION_ENDED (a page that says what to do)."""
    ctx = context_of(request)
    found = await web_state(request).sessions.check(
        request.cookies.get(SESSION_COOKIE), ctx.clock()
    )
    if found is None:
        raise SESSION_ENDED
    return found


async def maybe_signed_in(request: AnyRequest) -> SignedIn | None:
    ctx = context_of(request)
    return await web_state(request).sessions.check(request.cookies.get(SESSION_COOKIE), ctx.clock())


def render_template(request: AnyRequest, name: str, **context: Any) -> str:
    engine = request.app.template_engine
    assert engine is not None
    rendered: str = engine.get_template(name).render(request=request, **context)
    return rendered


def html_response(
    body: str | bytes, status: int = 200, cookies: list[Cookie] | None = None
) -> Response[Any]:
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
        cookies=cookies,
    )


def json_response(payload: bytes | Any) -> Response[Any]:
    body = payload if isinstance(payload, bytes) else _encode(payload)
    return Response(body, media_type="application/json", headers=SECURITY_HEADERS)


async def cached_page(
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
    web = web_state(request)
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
        response = html_response(page.gzipped)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = html_response(page.html)
    response.headers["Vary"] = "Accept-Encoding, Cookie"
    return response


def sign_in_problem(request: AnyRequest, exc: SignInRefused) -> Response[Any]:
    if request.url.path.endswith(".json"):
        return Response(
            {"status": exc.status, "error": exc.title, "reason": exc.advice},
            status_code=exc.status,
            headers=SECURITY_HEADERS,
        )
    body = render_template(request, "problem.html", problem=exc, me=None)
    cookies = None
    if exc is SESSION_ENDED:  # forget a dead cookie
        cookies = [
            Cookie(key=SESSION_COOKIE, value="", max_age=0, httponly=True, samesite="strict")
        ]
    return html_response(body, exc.status, cookies)


def _not_found(request: AnyRequest, exc: Exception) -> Response[Any]:
    return sign_in_problem(
        request,
        SignInRefused(
            "Not found",
            "There is nothing here that you may see. Check the address, or go back to your "
            "team's board.",
            404,
        ),
    )


def _bad_parameter(request: AnyRequest, exc: InvalidParameter) -> Response[Any]:
    return sign_in_problem(
        request,
        SignInRefused("That address has a bad parameter", f"{exc.field}: {exc.reason}", 422),
    )


def http_error_page(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return _not_found(request, exc)
    if exc.status_code >= 500:
        return sign_in_problem(request, SignInRefused("Something went wrong", "Try again.", 500))
    return sign_in_problem(
        request, SignInRefused("That request could not be used", str(exc.detail), exc.status_code)
    )


def api_error_page(request: AnyRequest, exc: ApiError) -> Response[Any]:
    if isinstance(exc, InvalidParameter):
        return _bad_parameter(request, exc)
    if isinstance(exc, NotVisible):
        return _not_found(request, exc)
    return sign_in_problem(request, SignInRefused(exc.message, "Try again.", exc.status))


def common_context(me: SignedIn, ctx: ServerContext) -> dict[str, Any]:
    return {"me": me, "teams": sorted(ctx.directory.teams_of(me.person)), "now": ctx.clock()}


def check_csrf(me: SignedIn, given: str | None) -> None:
    if not same_secret(given, me.csrf):
        raise CSRF_REFUSED
