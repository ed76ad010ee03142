"""The team page's routes: sign-in, board, feed (live), kudos, drift, charts, a person's page.

Every page reads the same cached view objects as the JSON API (the same
``ctx.cached`` keys, so the bytes are literally shared) and has a JSON twin
(``….json``) over the page's data. Reading works without JavaScript; the
script only makes the feed live and kudos instant.

The routes live in ``signin`` (sign-in, one-time links, sign-out), ``pages`` (board,
feed, drift, charts, a person's page and their JSON twins) and ``live`` (the live feed
and kudos); ``plumbing`` holds what they share. This module gathers them into a router.
"""

from __future__ import annotations

from litestar import Router
from litestar.exceptions import HTTPException

from projections.drift import DriftSignal
from server.http.errors import ApiError
from server.web.live import feed_live, give_kudos
from server.web.pages import (
    board,
    board_json,
    burnup_json,
    burnup_svg,
    drift,
    drift_json,
    feed,
    feed_json,
    key_result_page,
    person_json,
    person_page,
    person_review_json,
    person_review_markdown,
)
from server.web.plumbing import WebState, api_error_page, http_error_page, sign_in_problem
from server.web.sessions import SignInRefused
from server.web.signin import (
    SignInLink,
    favicon,
    home,
    new_signin_link,
    signin_page,
    signin_with_link,
    signin_with_token,
    signout,
)

WEB_ROUTES = [
    favicon,
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
            SignInRefused: sign_in_problem,
            ApiError: api_error_page,
            HTTPException: http_error_page,
        },
        include_in_schema=False,
        request_max_body_size=64 * 1024,  # forms only: a token, a CSRF token, an id
    )


__all__ = ["DriftSignal", "SignInLink", "WebState", "new_signin_link", "web_router"]
