"""The team page: server-rendered pages from templates and assets inside this package.

Nothing is built at install and nothing is fetched at run time: Jinja templates in
``templates/``, one stylesheet and one small script in ``static/``. Every page has
a JSON twin over the same view data as the HTTP API. ``routes`` gathers the routes of
``signin`` (sign-in form, one-time links, sign-out), ``pages`` (board, feed, drift,
charts, a person's page) and ``live`` (the live feed and kudos), which share
``plumbing``; sessions are in ``sessions``; the SVG charts in ``charts``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar.config.app import AppConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

WEB_PATHS = ("^/$", "^/signin", "^/signout$", "^/static/", "^/t/", "^/p/", "^/favicon.ico$")
"""Paths signed in by the page's session cookie, not by a bearer token."""

HEALTH_ICONS = {
    "on-track": "●",
    "at-risk": "▲",
    "off-track": "✖",
    "done": "✔",
    "dropped": "–",
}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


def _day(value: date | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def environment() -> Environment:
    """The Jinja environment of the page (autoescaping on, a few filters)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = _percent
    env.filters["day"] = _day
    env.globals["health_icons"] = HEALTH_ICONS
    return env


def configure_web(config: AppConfig) -> None:
    """Mount the page: its routes, the bearer-free paths, templates and static files."""
    from server.web.routes import WebState, new_signin_link, web_router

    config.state["web"] = WebState(config.state["ctx"])
    config.route_handlers.extend(
        [
            web_router(),
            new_signin_link,
            create_static_files_router(
                path="/static", directories=[STATIC], include_in_schema=False, name="web-static"
            ),
        ]
    )
    config.template_config = TemplateConfig(
        instance=JinjaTemplateEngine.from_environment(environment())
    )
