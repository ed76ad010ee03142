"""Bearer-token authentication: every data route knows its caller (the *viewer*)."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware

from server.http.context import ServerContext
from server.http.errors import Unauthorized

PUBLIC_PATHS = ("^/health$", "^/metrics$", "^/schema")
"""Routes that need no token: liveness, metrics and the OpenAPI documents."""

SECURITY_SCHEME = "BearerToken"


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolve ``Authorization: Bearer <token>`` to a person, or answer 401."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """The viewer for this request; Unauthorized when the token is missing or wrong."""
        header = ""
        for name, value in connection.scope["headers"]:  # lower-case names (ASGI)
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized()
        ctx: ServerContext = connection.app.state.ctx
        person = await ctx.tokens.person_for(token)
        if person is None:
            raise Unauthorized("the bearer token is not valid")
        return AuthenticationResult(user=person, auth=token)


def auth_middleware() -> DefineMiddleware:
    """The middleware, with the public paths excluded."""
    from server.web import WEB_PATHS  # the team page signs in with its own session cookie

    return DefineMiddleware(BearerAuthMiddleware, exclude=[*PUBLIC_PATHS, *WEB_PATHS])
