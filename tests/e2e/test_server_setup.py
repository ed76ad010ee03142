"""``milepost-server run`` as a person starts it: a banner that says what to do next,
a busy port is an error, Ctrl-C in the terminal stops everything without a traceback."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from server.home import choose_port

BIN = Path(sys.executable).parent / "milepost-server"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out and time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_ctrl_c_in_the_terminal_stops_server_and_nats_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "server-home"
    env = {**os.environ, "MILEPOST_SERVER_HOME": str(home)}
    pid, fd = pty.fork()
    if pid == 0:  # the child: milepost-server in the foreground of a terminal
        os.execve(str(BIN), [str(BIN), "run", "--port", "0", "--nats-port", "0"], env)
    try:
        shown = _read_until(fd, b"--credentials ava.json", 60).decode(errors="replace")
        assert "milepost-server 0.1.0 is running" in shown, shown
        assert f"data:      {home}" in shown
        assert "Stop it with Ctrl-C" in shown
        assert "milepost-server person add ava --output ava.json" in shown
        info = json.loads((home / "run.json").read_text())
        _api_docs_work_offline(info["http_url"])
        nats_pid = info["nats_pid"]
        assert _alive(nats_pid)
        os.write(fd, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
        rest = _read_until(fd, b"\x00never", 30).decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, rest
        assert rest.replace("^C", "").strip() == "", rest  # no warning, error or traceback
        deadline = time.monotonic() + 10
        while _alive(nats_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(nats_pid)
        assert not (home / "run.json").exists()
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def _api_docs_work_offline(http_url: str) -> None:
    """The docs page needs nothing but this server: no script, no CDN."""
    page = httpx.get(f"{http_url}/schema", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    document = httpx.get(f"{http_url}/schema/openapi.json", timeout=10).json()
    links = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert links == ["/schema/openapi.json"], links
    assert "<script" not in page.text
    for path in document["paths"]:
        assert f"<code>{path}</code>" in page.text, path
    assert httpx.get(f"{http_url}/schema/swagger", timeout=10).status_code == 404


def test_a_busy_port_is_an_error_not_another_port(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        env = {**os.environ, "MILEPOST_SERVER_HOME": str(tmp_path / "home")}
        for args in (["--port", str(busy), "--nats-port", "0"],
                     ["--port", "0", "--nats-port", str(busy)]):  # fmt: skip
            done = subprocess.run(
                [str(BIN), "run", *args], env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 1, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "in use" in lines[0], done.stderr
            assert "--port 0" in lines[0] or "--nats-port 0" in lines[0]
        # Without --port: the default (or the remembered one), never a random fallback.
        assert choose_port(tmp_path, "http", None, busy, "127.0.0.1") == busy
        assert choose_port(tmp_path, "http", 0, busy, "127.0.0.1") == 0
    finally:
        holder.close()
