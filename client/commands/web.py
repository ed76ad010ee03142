"""``web``: a one-time sign-in link to the team page."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from cyclopts import Parameter

from client import render
from client.commands._common import Json, with_session
from client.errors import InvalidValue, MilepostError
from client.session import Session

HTTP_ENV = "MILEPOST_HTTP_URL"
TOKEN_ENV = "MILEPOST_API_TOKEN"


class WebError(MilepostError):
    """The server could not give a sign-in link (unreachable, refused the token...)."""


def _credentials(session: Session) -> tuple[str, str]:
    """The server's HTTP URL and the person's API token, from the credentials file (or env)."""
    http_url = os.environ.get(HTTP_ENV) or ""
    token = os.environ.get(TOKEN_ENV) or ""
    creds = session.meta.get("credentials") or ""
    if creds and not (http_url and token):
        path = Path(creds).expanduser()
        try:
            data: Any = json.loads(path.read_text())
        except OSError as exc:
            raise WebError(f"cannot read credentials file {path}: {exc.strerror}") from None
        except ValueError:
            data = None
        if isinstance(data, dict):
            http_url = http_url or str(data.get("http_url") or "")
            token = token or str(data.get("api_token") or "")
    if not token:
        raise WebError(
            "no API token: `milepost config credentials FILE` with the JSON of "
            f"`milepost-server person add {session.person} --json` (or set ${TOKEN_ENV})"
        )
    if not http_url:
        raise WebError(f"no server HTTP URL in the credentials file (or set ${HTTP_ENV})")
    parts = urlsplit(http_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"the server's HTTP URL {http_url!r} is not an http(s):// URL")
    return http_url.rstrip("/"), token


def _request_link(http_url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{http_url}/auth/links",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            found: dict[str, Any] = json.loads(response.read())
            return found
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise WebError(
                "the server refused the API token (rotated? run `milepost-server person rotate` "
                "and update the credentials file)"
            ) from None
        raise WebError(f"the server at {http_url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebError(f"cannot reach the server at {http_url}: {reason}") from None


def web(
    *,
    print_only: Annotated[
        bool, Parameter(name="--print", negative=(), help="Print the link; do not open it.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Open the team page in your browser, signed in by a one-time link (five minutes, once).

    Example: milepost web --print
    """

    async def go(session: Session) -> tuple[str, str]:
        return _credentials(session)

    http_url, token = with_session(go)
    link = _request_link(http_url, token)
    url = str(link.get("url", ""))
    if not url.startswith(("http://", "https://")):
        raise WebError("the server's answer held no sign-in link")
    if as_json:
        render.out(json.dumps({"url": url, "expires_at": link.get("expires_at")}))
        return
    render.out(url)
    if not print_only:
        import webbrowser

        if not webbrowser.open(url):
            render.out("(no browser found: open the link above yourself)")
