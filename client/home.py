"""Where the client keeps its databases: ``$MILEPOST_HOME``, else the user data folder.

One database per person and device (``<person>@<device>.sqlite3``); the file
``profile.json`` names the current one (written by ``milepost init``).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import msgspec

from client.errors import NotInitialised, StoreCorrupt

HOME_ENV = "MILEPOST_HOME"
PROFILE_FILE = "profile.json"


class Profile(msgspec.Struct, frozen=True):
    """The current person and device, and their database file (relative to home)."""

    person: str
    device: str
    database: str


def home_dir() -> Path:
    """The client's home folder (not created here)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs  # only when no home is given: it costs start-up time

    return Path(platformdirs.user_data_dir("milepost", appauthor=False))


def database_name(person: str, device: str) -> str:
    """The file name of one person's database on one device."""
    return f"{person}@{device}.sqlite3"


def load_profile(home: Path | None = None) -> tuple[Profile, Path]:
    """The current profile and its database path; NotInitialised before ``init``."""
    home = home_dir() if home is None else home
    path = home / PROFILE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotInitialised(
            f"no milepost profile in {home}: run `milepost init --person NAME` first"
        ) from None
    except OSError as exc:
        raise StoreCorrupt(f"cannot read {path}: {exc.strerror}") from None
    try:
        profile = msgspec.json.decode(raw, type=Profile)
    except msgspec.MsgspecError:
        raise StoreCorrupt(f"{path} is not a milepost profile; run `milepost init` again") from None
    return profile, home / profile.database


def make_private_home(home: Path) -> None:
    """Create ``home`` readable by its owner only (0700); tighten an existing one (the
    databases hold the person's private goals and everything their teams share)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)


def restrict_database(path: Path) -> None:
    """``chmod 0600`` a database and the files SQLite keeps beside it, where they exist."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(path) + suffix).chmod(0o600)


def save_profile(home: Path, profile: Profile) -> None:
    """Write the profile atomically (temp file created 0600, then rename)."""
    make_private_home(home)
    tmp = home / (PROFILE_FILE + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(msgspec.to_builtins(profile), indent=2) + "\n")
    os.replace(tmp, home / PROFILE_FILE)
