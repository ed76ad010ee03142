"""Signing in to the team page: the form (an API token), one-time links, signing out."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath
from litestar.response import Redirect

from server.http.context import context_of
from server.web.plumbing import (
    SECURITY_HEADERS,
    AnyRequest,
    check_csrf,
    html_response,
    is_secure,
    maybe_signed_in,
    render_template,
    require_signed_in,
    web_state,
)
from server.web.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_REFUSED,
    LINK_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGNIN_COOKIE,
    SignInRefused,
    same_secret,
)


@get("/", include_in_schema=False)
async def home(request: AnyRequest) -> Response[Any]:
    """Signed in: your first team's board (or your own page). Otherwise: the sign-in form."""
    me = await maybe_signed_in(request)
    if me is None:
        return _signin_form(request)
    ctx = context_of(request)
    teams = sorted(ctx.directory.teams_of(me.person))
    target = f"/t/{quote(teams[0])}" if teams else f"/p/{quote(me.person)}"
    return Redirect(target, status_code=303, headers=SECURITY_HEADERS)


_FAVICON = (Path(__file__).parent / "static" / "favicon.svg").read_bytes()


@get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response[bytes]:
    """The page's icon where a browser asks for it by the old name (a JSON twin, a file)."""
    return Response(
        _FAVICON,
        media_type="image/svg+xml",
        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"},
    )


def _signin_form(request: AnyRequest, error: str | None = None, status: int = 200) -> Response[Any]:
    nonce = secrets.token_urlsafe(16)
    body = render_template(request, "signin.html", nonce=nonce, error=error, me=None)
    cookie = Cookie(
        key=SIGNIN_COOKIE,
        value=nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
        path="/signin",
    )
    return html_response(body, status, [cookie])


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
        secure=is_secure(request),
        path="/",
    )


def _signed_in_page(request: AnyRequest, person: str, cookie: str) -> Response[Any]:
    """A same-site page that moves on to ``/`` (a redirect from a cross-site link would
    arrive without the SameSite=Strict cookie)."""
    body = render_template(request, "signed_in.html", person=person, me=None)
    return html_response(body, 200, [_session_cookie(request, cookie)])


@post("/signin", include_in_schema=False, status_code=200)
async def signin_with_token(request: AnyRequest) -> Response[Any]:
    """Sign in with an API token posted from the form."""
    form = await request.form()
    nonce = request.cookies.get(SIGNIN_COOKIE)
    if not nonce or not same_secret(str(form.get("signin", "")), nonce):
        raise CSRF_REFUSED
    web, ctx = web_state(request), context_of(request)
    try:
        person = await web.sessions.person_for_token(str(form.get("token", "")))
    except SignInRefused as refused:
        return _signin_form(request, f"{refused.title}. {refused.advice}", 401)
    cookie, _ = await web.sessions.start(person, ctx.clock())
    return _signed_in_page(request, person, cookie)


@get("/signin/{token:str}", include_in_schema=False)
async def signin_with_link(request: AnyRequest, token: FromPath[str]) -> Response[Any]:
    """Redeem a one-time link from ``milepost web``: a session, or a page saying why not."""
    web, ctx = web_state(request), context_of(request)
    person = await web.sessions.redeem_link(token, ctx.clock())
    cookie, _ = await web.sessions.start(person, ctx.clock())
    return _signed_in_page(request, person, cookie)


@post("/signout", include_in_schema=False, status_code=200)
async def signout(request: AnyRequest) -> Response[Any]:
    """End this browser's session."""
    me = await require_signed_in(request)
    form = await request.form()
    check_csrf(me, str(form.get(CSRF_FIELD, "")) or request.headers.get(CSRF_HEADER))
    await web_state(request).sessions.end(me)
    body = render_template(request, "signed_out.html", me=None)
    return html_response(
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
    token = await web_state(request).sessions.new_link(request.user, now)
    base = str(request.base_url).rstrip("/")
    return SignInLink(f"{base}/signin/{token}", now + timedelta(seconds=LINK_SECONDS))
