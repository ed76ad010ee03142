"""App assembly: one ``create_app`` made of small ``_configure_*`` steps."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from server.http.auth import SECURITY_SCHEME, auth_middleware
from server.http.context import ServerContext
from server.http.controllers.people import PeopleController
from server.http.controllers.system import SystemController
from server.http.controllers.teams import TeamsController
from server.http.docs import LocalDocsRenderPlugin
from server.http.errors import EXCEPTION_HANDLERS


def _provide_ctx(state: State) -> ServerContext:
    ctx: ServerContext = state.ctx
    return ctx


def _configure_routes(config: AppConfig) -> None:
    config.route_handlers.extend([SystemController, PeopleController, TeamsController])
    config.dependencies["ctx"] = Provide(_provide_ctx, sync_to_thread=False)


def _configure_auth(config: AppConfig) -> None:
    config.middleware.append(auth_middleware())


def _configure_web(config: AppConfig) -> None:
    from server.web import configure_web  # the team page (server/web/)

    configure_web(config)


def _configure_errors(config: AppConfig) -> None:
    config.exception_handlers.update(EXCEPTION_HANDLERS)


def _configure_openapi(config: AppConfig) -> None:
    config.openapi_config = OpenAPIConfig(
        title="Milepost",
        version="0.1.0",
        description=(
            "Goal trees, team board, feed (paged and live), drift and reviews. Every data "
            "route needs `Authorization: Bearer <token>` (issued by `milepost-server person "
            "add`); what the caller may not see answers 404."
        ),
        path="/schema",
        # Pages that work offline: the local docs page and the documents themselves
        # (Litestar's stock UIs load their scripts from a CDN).
        render_plugins=[
            LocalDocsRenderPlugin(path=["/", "/docs"]),
            JsonRenderPlugin(path="/openapi.json"),
            YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
        ],
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="http", scheme="bearer", description="A person's API token."
                )
            }
        ),
    )


def create_app(ctx: ServerContext, **overrides: Any) -> Litestar:
    """The Litestar application serving ``ctx``."""
    config = AppConfig(state=State({"ctx": ctx}), debug=False, **overrides)
    for step in (
        _configure_routes,
        _configure_web,
        _configure_auth,
        _configure_errors,
        _configure_openapi,
    ):
        step(config)
    return Litestar.from_config(config)
