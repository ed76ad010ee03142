"""An open profile: the store, who is writing, the clock, and the one way to record events."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from client import dates
from client.errors import Ambiguous, InvalidValue, NotFound
from client.home import load_profile
from client.store import Store
from events import CodecError, Event, HybridLogicalClock, decode_event, encode, new_event_id
from events import bodies as b
from projections.ownership import Referent, Refused, Waiting, judge, referenced_ids
from projections.settings import DriftSettings

BodyT = TypeVar("BodyT", bound=b.Body)
MIN_SUFFIX = 6
MIN_PREFIX = 4
SHORT_REF_LENGTH = 8

KIND_TYPES: dict[str, tuple[str, ...]] = {
    "objective": ("objective.created",),
    "key result": ("key_result.added",),
    "milestone": ("milestone.planned",),
    "task": ("task.added",),
    "indicator": ("indicator.defined",),
    "check-in subject": ("key_result.added", "milestone.planned"),
    "milestone parent": ("key_result.added", "objective.created"),
    "shareable item": (
        "objective.created",
        "milestone.planned",
        "indicator.defined",
        "observation.recorded",
    ),
    "event": (),
}


def short_ref(event_id: str) -> str:
    """What the CLI prints for an id: its last 8 hex digits (UUIDv7 prefixes are timestamps)."""
    return event_id.replace("-", "")[-SHORT_REF_LENGTH:]


def dashed(hex_prefix: str) -> str:
    """A prefix of a compact hex id in the dashed UUID form."""
    out = []
    for index, char in enumerate(hex_prefix):
        if index in (8, 12, 16, 20):
            out.append("-")
        out.append(char)
    return "".join(out)


@dataclass(frozen=True)
class Ref:
    """A resolved reference: one row of the refs view (``short``: ``m12``, if numbered)."""

    id: str
    type: str
    actor: str
    parent: str | None
    title: str
    retracted: bool
    short: str | None = None

    @property
    def label(self) -> str:
        """What to print for it: the short reference, or the 8-hex suffix."""
        return self.short or short_ref(self.id)


SHORT_REF = re.compile(r"^([a-z])([1-9][0-9]{0,6})$")
"""``m12``: a kind letter (``client.store.SHORT_KINDS``) and a number on this device."""
_KIND_LETTERS = {
    "o": "objective",
    "k": "key result",
    "m": "milestone",
    "t": "task",
    "i": "indicator",
    "j": "journal entry",
    "c": "check-in",
    "d": "completion",
    "p": "pause",
}
_COLUMNS = "r.id, r.type, r.actor, r.parent, r.title, r.retracted, s.kind || s.number"
_FROM = "FROM refs r LEFT JOIN short_refs s ON s.id = r.id"


def normalise_ref(text: str) -> str:
    """Lower-case hex without dashes; InvalidValue when it cannot be an id reference."""
    value = text.strip().lower().replace("-", "")
    if not value or any(c not in "0123456789abcdef" for c in value) or len(value) > 32:
        raise InvalidValue(
            f"not a reference: {text!r} (give a short ref such as m12, or an id's hex digits)"
        )
    return value


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _ref(row: Any) -> Ref:
    return Ref(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])


_HEX = re.compile(r"[0-9a-f]+")


async def _resolve_short(store: Store, text: str, kind: str) -> Ref | None:
    match = SHORT_REF.match(text.strip().lower())
    if match is None or match.group(1) not in _KIND_LETTERS:
        return None
    letter, number = match.group(1), int(match.group(2))
    # ``d2560081`` may be a printed id suffix as well as a short ref (c and d are hex
    # digits): when no such short ref fits, the id's hex digits are tried instead.
    hexlike = len(text.strip()) >= MIN_SUFFIX and _HEX.fullmatch(text.strip().lower()) is not None
    rows = await store.fetchall(
        f"SELECT {_COLUMNS} {_FROM} WHERE r.id = "
        "(SELECT id FROM short_refs WHERE kind = ? AND number = ?)",
        (letter, number),
    )
    if not rows:
        if hexlike:
            return None
        raise NotFound(f"no {_KIND_LETTERS[letter]} {text.strip()} on this device")
    ref = _ref(rows[0])
    types = KIND_TYPES[kind]
    if types and ref.type not in types:
        if hexlike:
            return None
        raise NotFound(f"{ref.short} is {_a(_KIND_LETTERS[letter])} ({ref.title}), not {_a(kind)}")
    if ref.retracted:
        raise NotFound(f"{kind} {ref.short} ({ref.title}) was retracted")
    return ref


async def resolve(store: Store, text: str, kind: str = "event") -> Ref:
    """The one item a short ref (``m12``), a full id, a unique prefix, or a unique
    suffix (≥ 6 hex) names."""
    short = await _resolve_short(store, text, kind)
    if short is not None:
        return short
    value = normalise_ref(text)
    if len(value) < MIN_PREFIX:
        raise InvalidValue(
            f"reference {text!r} is too short: give a short ref such as m12,"
            f" or {MIN_SUFFIX}+ hex digits of an id"
        )
    types = KIND_TYPES[kind]
    matches: dict[str, tuple[Any, ...]] = {}
    if len(value) >= MIN_PREFIX:
        pattern = dashed(value) + "*"
        for row in await store.fetchall(
            f"SELECT {_COLUMNS} {_FROM} WHERE r.id GLOB ? LIMIT 50", (pattern,)
        ):
            matches[row[0]] = row
    if len(value) >= MIN_SUFFIX:
        for row in await store.fetchall(
            f"SELECT {_COLUMNS} {_FROM} WHERE r.rhex GLOB ? LIMIT 50", (value[::-1] + "*",)
        ):
            matches[row[0]] = row
    if types:
        matches = {k: v for k, v in matches.items() if v[1] in types}
    live = {k: v for k, v in matches.items() if not v[5]}
    if len(live) > 1:
        listed = ", ".join(f"{v[6] or short_ref(k)} ({v[4]})" for k, v in sorted(live.items())[:5])
        raise Ambiguous(f"{kind} reference {text!r} is ambiguous: it matches {listed}")
    if not live:
        if matches:
            raise NotFound(f"{kind} {text!r} was retracted")
        raise NotFound(f"no {kind} matches {text!r}")
    return _ref(next(iter(live.values())))


_FIELD_WORDS = {
    "due_on": "due date",
    "starts_on": "start date",
    "ends_on": "end date",
    "occurred_at": "date (--at)",
    "recorded_at": "date",
    "key_result": "key result",
}
_FORMATS = {
    "cycle": "a cycle such as 2026, 2026-H1, 2026-Q1 or 2026-03",
    "actor": "a lowercase name (letters, digits, - and _, starting with a letter)",
    "person": "a lowercase name (letters, digits, - and _, starting with a letter)",
    "partners": "lowercase names (letters, digits, - and _, starting with a letter)",
    "device": "a lowercase name (letters, digits, - and _)",
    "team": "a lowercase name (letters, digits, - and _, starting with a letter)",
}
_LENGTH = re.compile(r"^Expected `?(str|array)`? of length (<=|>=) (\d+)")
_BOUND = re.compile(r"^Expected `?(float|int)`? (<=|>=|<|>) (-?[\d.e+]+)")


def product_words(field: str, reason: str) -> str:
    """A codec/validator reason about ``field`` said the way a person reads it:
    ``title must be at most 200 characters``, never ``Expected str of length <= 200``."""
    name = field.removeprefix("body.").removeprefix("body").split(".")[0].split("[")[0]
    words = _FIELD_WORDS.get(name, name.replace("_", " ")) or "value"
    reason = reason.replace("`", "")
    if (match := _LENGTH.match(reason)) is not None:
        kind, op, size = match.groups()
        if op == ">=":
            return f"{words} must not be empty"
        unit = "characters" if kind == "str" else "entries"
        return f"{words} must be at most {size} {unit}"
    if (match := _BOUND.match(reason)) is not None:
        _, op, bound = match.groups()
        number = f"{float(bound):g}"
        said = {
            "<=": f"at most {number}",
            ">=": f"at least {number}",
            "<": f"less than {number}",
            ">": f"greater than {number}",
        }
        return f"{words} must be {said[op]}"
    if reason.startswith("Expected str matching regex"):
        return f"{words} must be {_FORMATS.get(name, 'in the documented format')}"
    if reason.startswith("Invalid enum value"):
        return f"{words} has an unknown value {reason.split(' ', 3)[-1]}"
    if reason == "required field is missing":
        return f"{words} is required"
    return f"{words}: {reason}"


def _invalid(exc: CodecError | ValueError, what: str) -> InvalidValue:
    if isinstance(exc, CodecError):
        field = exc.field.removeprefix("body.").removeprefix("body")
        if field in ("", "$"):
            return InvalidValue(f"invalid {what}: {exc.reason}")
        return InvalidValue(f"invalid {product_words(field, exc.reason)}")
    return InvalidValue(f"invalid {what}: {exc}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ONE_LINE_FIELDS = ("title", "stages", "unit", "cycle")


def check_fields(fields: dict[str, Any]) -> None:
    """Refuse what the codec would store wrongly: a non-finite number (``1e309``,
    ``nan`` — JSON has no such numbers) or a line break in a one-line field."""
    for name, value in fields.items():
        words = _FIELD_WORDS.get(name, name.replace("_", " "))
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidValue(f"invalid {words}: {value} is not a finite number")
        if name in ONE_LINE_FIELDS:
            texts = value if isinstance(value, tuple) else (value,)
            for text in texts:
                if isinstance(text, str) and _CONTROL.search(text):
                    raise InvalidValue(
                        f"invalid {words}: it must be one line, without line breaks,"
                        " tabs or control characters"
                    )


class Session:
    """One command's view of the profile: call ``await Session.open()``, then ``close``."""

    def __init__(self, store: Store, meta: dict[str, str], now: datetime) -> None:
        self.store = store
        self.meta = meta
        self.now = now
        self.person = meta["person"]
        self.device = meta["device"]

    @classmethod
    async def open(cls, *, direct: bool = True) -> Session:
        """Open the current profile's database (NotInitialised before ``init``).
        ``direct``: statements in this thread (a one-shot command; see ``Store``)."""
        _, path = load_profile()
        return await cls.open_path(path, direct=direct)

    @classmethod
    async def open_path(cls, path: Path, *, direct: bool = True) -> Session:
        """Open a given database."""
        current = dates.now()
        store = await Store.open(path, direct=direct)
        try:
            meta = await store.meta()
        except BaseException:
            await store.close()
            raise
        if "person" not in meta or "device" not in meta:
            await store.close()
            raise NotFound(f"{path} has no profile; run `milepost init` again")
        return cls(store, meta, current)

    async def close(self) -> None:
        """Release the database."""
        await self.store.close()

    # --- settings ----------------------------------------------------------------------

    @property
    def settings(self) -> DriftSettings:
        """The drift thresholds configured for this profile."""
        raw = self.meta.get("drift")
        if not raw:
            return DriftSettings()
        return msgspec.json.decode(raw, type=DriftSettings)

    @property
    def default_visibility(self) -> str:
        """Visibility given to new items when none is named."""
        return self.meta.get("default_visibility", "private")

    # --- references --------------------------------------------------------------------

    async def resolve(self, text: str, kind: str = "event", *, own: bool = True) -> Ref:
        """Resolve a reference; with ``own``, it must be the person's own item."""
        ref = await resolve(self.store, text, kind)
        if own and ref.actor != self.person:
            raise InvalidValue(f"{kind} {ref.label} belongs to {ref.actor}, not to you")
        return ref

    async def short_refs(self, ids: Iterable[str]) -> dict[str, str]:
        """The short references (``m12``) of these ids, where they have one."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = await self.store.fetchall(
                "SELECT id, kind || number FROM short_refs"
                f" WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            out.update((str(i), str(s)) for i, s in rows)
        return out

    # --- recording ---------------------------------------------------------------------

    def build(self, body: b.Body, occurred_at: datetime | None, clock: int) -> Event:
        """An event by this person and device, validated by the codec."""
        event = Event(
            id=new_event_id(),
            actor=self.person,
            device=self.device,
            clock=clock,
            recorded_at=self.now,
            occurred_at=occurred_at or self.now,
            body=body,  # type: ignore[arg-type]
        )
        what = str(body.__struct_config__.tag).replace("_", " ").split(".")[0]
        try:
            return decode_event(encode(event))
        except (CodecError, ValueError) as exc:
            raise _invalid(exc, what) from None

    async def _judge(self, event: Event) -> None:
        """Refuse, in the product's words, what the server would refuse (the ownership rule)."""
        known: dict[str, Referent] = {}
        for ref in referenced_ids(event):
            rows = await self.store.fetchall("SELECT actor, type FROM refs WHERE id = ?", (ref,))
            if rows:
                known[ref] = Referent(str(rows[0][0]), str(rows[0][1]))
        verdict = judge(event, known.get)
        if isinstance(verdict, Refused):
            reason = verdict.reason
            for ref in known:
                reason = reason.replace(ref, short_ref(ref))
            raise InvalidValue(reason)
        if isinstance(verdict, Waiting):
            raise InvalidValue(f"{short_ref(verdict.missing)} is not on this device")

    async def record(self, body: b.Body, occurred_at: datetime | None = None) -> Event:
        """Validate, append and update the views in one transaction; the stored event."""
        from client.views import on_append

        probe = self.build(body, occurred_at, 0)  # validate before taking the write lock
        await self._judge(probe)
        async with self.store.write():
            last = await self.store.scalar("SELECT value FROM meta WHERE key = 'clock'")
            wall = int(self.now.timestamp() * 1000)
            clock = HybridLogicalClock(int(last or 0), wall=lambda: wall).now()
            event = self.build(body, occurred_at, clock)
            seq = await self.store.append(event)
            assert seq is not None
            await self.store.set_meta("clock", str(clock))
            await on_append(self.store, seq, event, self.now)
        return event


def config_json(meta: dict[str, str]) -> dict[str, Any]:
    """The profile's settings as shown by ``milepost config``."""
    drift = json.loads(meta["drift"]) if meta.get("drift") else {}
    return {
        "person": meta.get("person"),
        "device": meta.get("device"),
        "team": meta.get("team") or None,
        "server": meta.get("server") or None,
        "credentials": meta.get("credentials") or None,
        "default_visibility": meta.get("default_visibility", "private"),
        "drift": msgspec.to_builtins(msgspec.convert(drift, DriftSettings)),
    }


def make(cls: type[BodyT], **fields: Any) -> BodyT:
    """Build a body; a cross-field rule it breaks becomes one clear InvalidValue."""
    check_fields(fields)
    try:
        return cls(**fields)
    except (ValueError, TypeError) as exc:
        what = str(cls.__struct_config__.tag).split(".")[0].replace("_", " ")
        raise InvalidValue(f"invalid {what}: {exc}") from None
