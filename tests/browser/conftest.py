"""A real Chromium (Debian's ``chromium``, driven by Playwright) against the real server and
the real CLI. Playwright's own browser download cannot work here: we point it at
/usr/bin/chromium, and install that package (as root, with apt-get) when it is missing,
so the README's test command runs these tests on a fresh machine instead of skipping them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from milepost_testkit import PEOPLE
from milepost_testkit.sync_world import Device, World
from server import home as server_home
from server.accounts import new_credentials, open_accounts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installed with apt-get when missing (needs root)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            "the browser tests need Debian's chromium: run `apt-get install -y chromium` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {done.stderr[-1000:]}")
    assert CHROMIUM.exists(), "apt-get installed chromium, but /usr/bin/chromium is missing"
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (Playwright's sync API). Not for the session:
    while Playwright runs, its event loop is this thread's running loop, and the tests
    after these (``asyncio.run``, pytest-asyncio) need it gone."""
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class WebWorld(World):
    """The sync world of the e2e tests, with API tokens and the server's HTTP URL in each
    device's credentials file (as `milepost-server person add --json` prints them)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.api_tokens: dict[str, str] = {}
        self.now = datetime.now(UTC).replace(microsecond=0).isoformat()

    async def _register(self) -> None:
        self.server.home.mkdir(parents=True, exist_ok=True)
        accounts = open_accounts(self.server.database)
        await accounts.open()
        try:
            for person in PEOPLE:
                creds = new_credentials(person, bcrypt_rounds=4)
                self.api_tokens[person] = creds.api_token
                await accounts.add(person, self.nats_hashes[person], creds.token_hash)
        finally:
            await accounts.close()

    def start(self) -> None:
        """As ``World.start``; the accounts are written from a thread, since Playwright's
        sync API keeps an event loop running in this one."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._register()).result()
        self.nats.start()
        self.server.start()

    @property
    def http_url(self) -> str:
        running = server_home.running_server(self.server.home)
        assert running is not None, "the server is not running"
        return running.http_url

    def device(self, person: str, name: str, *, team: str | None = None) -> Device:
        device = super().device(person, name, team=team)
        device.now = self.now
        creds = device.home / "credentials.json"
        creds.write_text(
            json.dumps(
                {
                    "person": person,
                    "nats_password": self.passwords[person],
                    "api_token": self.api_tokens[person],
                    "http_url": self.http_url,
                }
            )
        )
        # ``init`` copied the first file into the profile: install this one the same way.
        device.ok("config", "credentials", str(creds))
        return device

    def admin(self, *args: str) -> str:
        return self.server.admin(*args)


@contextlib.contextmanager
def web_world(root: Path) -> Iterator[WebWorld]:
    """A started ``WebWorld`` (nats-server and ``milepost-server run``), stopped by pid."""
    w = WebWorld(root)
    try:
        w.start()
        yield w
    finally:
        w.close()


def screenshot(page: Any, name: str, **options: Any) -> Path:
    """Save a screenshot under docs/screenshots/ (kept in the repository)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path


__all__ = ["browser"]
