"""`milepost web` without what it needs: one clear line and exit 1, never a traceback."""

from __future__ import annotations

import json
import socket

from milepost_testkit.cli import Cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_web_needs_a_token_a_url_and_a_server(ready: Cli) -> None:
    assert "no API token" in ready.fails("web", "--print")
    creds = ready.home / "creds.json"

    def use(fields: dict[str, str]) -> None:
        # `config credentials` keeps its own copy: set it again after each change.
        creds.write_text(json.dumps({"person": "ava", "nats_password": "pw", **fields}))
        ready.ok("config", "credentials", str(creds))

    use({"api_token": "ava.secret"})
    assert "no server HTTP URL" in ready.fails("web", "--print")
    use({"api_token": "ava.secret", "http_url": f"http://127.0.0.1:{free_port()}"})
    assert "cannot reach the server" in ready.fails("web", "--print")
    use({"api_token": "ava.secret", "http_url": "ftp://x"})
    assert "not an http(s):// URL" in ready.fails("web", "--print")
