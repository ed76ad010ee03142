"""Child processes: started with their output in a log file, stopped by pid.

Used by the embedded nats-server and by the test fixtures that run real
nats-server and milepost-server processes, so that every child is started and
stopped the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def spawn_logged(
    command: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` with stdout and stderr appended to ``log_path`` and no stdin.

    The child gets its own session (process group): Ctrl-C in the terminal reaches
    only the parent, which stops the child by pid in its own order (an embedded
    nats-server must outlive the server's last acknowledgements)."""
    # 0600: a log names users and addresses. ``chmod`` too: an older version made it 0644.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(log_path, 0o600)
    with os.fdopen(fd, "ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_by_pid(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when it has not exited within ``timeout``; always reaped."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def kill_by_pid(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL (a crash: no clean shutdown) and reap."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()


def log_tail(log_path: Path, size: int = 2000) -> str:
    """The last ``size`` characters of a log, for error messages."""
    try:
        return log_path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"
