"""The HTTP API (Litestar): health, goal trees, team board/feed/stream/drift, reviews."""

from server.http.app import create_app
from server.http.context import ServerContext, TokenVerifier

__all__ = ["ServerContext", "TokenVerifier", "create_app"]
