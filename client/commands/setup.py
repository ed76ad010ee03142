"""``init``, ``config``, ``rebuild`` and ``completion``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from cyclopts import Parameter

from client import render
from client.commands._common import Json, with_session
from client.errors import InvalidValue, UsageError
from client.session import Session, config_json
from events import bodies as b


def init(
    *,
    person: Annotated[str, Parameter(help="Your handle, e.g. ava.")],
    device: Annotated[str, Parameter(help="This device's name.")] = "laptop",
    team: Annotated[str | None, Parameter(help="Your team, for team visibility.")] = None,
    server: Annotated[str | None, Parameter(help="Sync server URL (for `sync`).")] = None,
    credentials: Annotated[
        str | None,
        Parameter(
            help="The credentials file `milepost-server person add --json` wrote (for `sync`);"
            " copied into your profile, readable by you only."
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Create your local database and make it the current profile.

    Example: milepost init --person ava --device laptop --team web
    """
    from client.home import Profile, database_name, home_dir, make_private_home, save_profile
    from client.store import Store

    for what, value, pattern in (
        ("person", person, b.PersonId),
        ("device", device, b.DeviceId),
    ):
        try:
            msgspec.convert(value, pattern)
        except msgspec.ValidationError:
            raise InvalidValue(
                f"invalid {what} {value!r}: use lower-case letters, digits, '-' or '_'"
            ) from None
    if team is not None:
        try:
            msgspec.convert(team, b.TeamId)
        except msgspec.ValidationError:
            raise InvalidValue(f"invalid team {team!r}") from None
    home = home_dir()
    try:
        make_private_home(home)
    except OSError as exc:
        raise InvalidValue(f"cannot create {home}: {exc.strerror}") from None
    name = database_name(person, device)
    path = home / name
    stored_credentials = (
        str(install_credentials(home, person, device, credentials)) if credentials else None
    )

    async def go() -> dict[str, object]:
        store = await Store.open(path, create=True)
        try:
            async with store.write():
                meta = await store.meta()
                if meta.get("person") not in (None, person):
                    raise UsageError(f"{path} belongs to {meta['person']}")
                for key, value in (
                    ("person", person),
                    ("device", device),
                    ("team", team or meta.get("team", "")),
                    ("server", server or meta.get("server", "")),
                    ("credentials", stored_credentials or meta.get("credentials", "")),
                ):
                    await store.set_meta(key, value)
                meta = await store.meta()
            return config_json(meta)
        finally:
            await store.close()

    shown = asyncio.run(go())
    save_profile(home, Profile(person, device, name))
    if as_json:
        render.emit_json({**shown, "database": str(path)})
    else:
        render.out(f"milepost ready for {person} on {device}: {path}")


def install_credentials(home: Path, person: str, device: str, source: str) -> Path:
    """Check a credentials file and copy it into the profile, readable by its owner only
    (mode 0600), so ``sync`` works from any folder; returns the copy's path."""
    given = Path(source).expanduser()
    try:
        text = given.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InvalidValue(f"credentials file {source} does not exist") from None
    except IsADirectoryError:
        raise InvalidValue(f"credentials file {source} is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not text"
        raise InvalidValue(f"cannot read credentials file {source}: {reason}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        password = data.get("nats_password") or data.get("password")
        if not isinstance(password, str) or not password:
            raise InvalidValue(
                f"credentials file {source} has no nats_password: use the JSON that"
                f" `milepost-server person add {person} --json` prints"
            )
        owner = data.get("person") or data.get("user")
        if isinstance(owner, str) and owner and owner != person:
            raise InvalidValue(f"credentials file {source} is for {owner}, not for {person}")
    elif not text or "\n" in text or " " in text:
        raise InvalidValue(
            f"credentials file {source} is not milepost credentials: use the JSON that"
            f" `milepost-server person add {person} --json` prints"
        )
    target = home / f"{person}@{device}.credentials"
    tmp = target.with_suffix(".tmp")
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise InvalidValue(f"cannot store the credentials in {home}: {exc.strerror}") from None
    return target.resolve()


def config(
    key: Annotated[
        str | None,
        Parameter(
            help="Setting: default-visibility, team, server, credentials, or drift.<threshold>."
        ),
    ] = None,
    value: Annotated[str | None, Parameter(help="New value (omit to show).")] = None,
    *,
    as_json: Json = False,
) -> None:
    """Show or change settings: default visibility, drift thresholds, sync server.

    Example: milepost config drift.behind_pace_points 15
    Example: milepost config default-visibility team
    """

    async def go(session: Session) -> None:
        if key is not None and value is not None:
            await _set(session, key, value)
            session.meta = await session.store.meta()
        shown = config_json(session.meta)
        if key is not None and value is None:
            shown = {key: _lookup(shown, key)}
        if as_json:
            render.emit_json(shown)
            return
        for name, item in shown.items():
            if isinstance(item, dict):
                for sub, subvalue in item.items():
                    render.out(f"{name}.{sub} = {subvalue}")
            else:
                render.out(f"{name} = {'' if item is None else item}")

    with_session(go)


def _lookup(shown: dict[str, object], key: str) -> object:
    name = key.replace("-", "_")
    if name.startswith("drift."):
        drift = shown["drift"]
        assert isinstance(drift, dict)
        if name[6:] not in drift:
            raise UsageError(f"unknown setting {key!r}")
        return drift[name[6:]]
    if name not in shown:
        raise UsageError(f"unknown setting {key!r}")
    return shown[name]


async def _set(session: Session, key: str, value: str) -> None:
    from projections.settings import DriftSettings

    name = key.replace("-", "_")
    if name == "default_visibility":
        if value not in ("private", "partners", "team"):
            raise InvalidValue(f"invalid default visibility {value!r}: private, partners or team")
        stored = value
    elif name == "credentials":
        from client.home import home_dir

        stored = str(install_credentials(home_dir(), session.person, session.device, value))
    elif name in ("team", "server"):
        stored = value
    elif name.startswith("drift."):
        field = name[6:]
        if field not in DriftSettings.__struct_fields__:
            raise UsageError(
                f"unknown drift threshold {field!r}: " + ", ".join(DriftSettings.__struct_fields__)
            )
        current = msgspec.to_builtins(session.settings)
        try:
            number: float = float(value)
        except ValueError:
            raise InvalidValue(f"invalid {key}: {value!r} is not a number") from None
        current[field] = int(number) if number.is_integer() else number
        try:
            settings = msgspec.convert(current, DriftSettings)
        except (msgspec.ValidationError, ValueError) as exc:
            reason, _, where = str(exc).partition(" - at `$")
            if where:
                from client.session import product_words

                raise InvalidValue(
                    f"invalid drift threshold: {product_words(field, reason)}"
                ) from None
            raise InvalidValue(f"invalid {key}: {exc}") from None
        name = "drift"
        stored = json.dumps(msgspec.to_builtins(settings))
    else:
        raise UsageError(f"unknown setting {key!r}")
    async with session.store.write():
        await session.store.set_meta(name, stored)


def rebuild(
    *,
    check: Annotated[
        bool, Parameter(negative=(), help="Only compare the stored views with a rebuild.")
    ] = False,
    as_json: Json = False,
) -> int:
    """Recompute every view from the event log (with --check: compare, change nothing).

    Example: milepost rebuild --check
    """
    from client.views import check_views, rebuild_views

    async def go(session: Session) -> int:
        count = await session.store.scalar("SELECT count(*) FROM events")
        if check:
            problems = await check_views(session.store, session.now)
            if as_json:
                render.emit_json({"events": count, "agree": not problems, "mismatches": problems})
            elif problems:
                for problem in problems:
                    render.out(f"mismatch: {problem}")
            else:
                render.out(f"views agree with a rebuild of {count} events")
            if problems:
                raise InvalidValue(
                    f"stored views differ from a rebuild ({len(problems)} mismatches); "
                    "run `milepost rebuild` to repair"
                )
            return 0
        async with session.store.write():
            roots = await rebuild_views(session.store, session.now)
        if as_json:
            render.emit_json({"events": count, "roots": roots})
        else:
            render.out(f"rebuilt views from {count} events ({roots} goal roots)")
        return 0

    return with_session(go)


def completion(
    shell: Annotated[Literal["bash", "zsh", "fish"], Parameter(help="Your shell.")],
) -> None:
    """Print the shell completion script (commands, options, choices).

    For example:
        milepost completion bash > ~/.local/share/bash-completion/completions/milepost
        milepost completion zsh > "${fpath[1]}/_milepost"
        milepost completion fish > ~/.config/fish/completions/milepost.fish
    """
    from client.cli import build_app

    script = build_app().generate_completion(shell=shell, prog_name="milepost")
    sys.stdout.write(script if script.endswith("\n") else script + "\n")
