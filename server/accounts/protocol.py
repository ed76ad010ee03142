"""The account store port, the values it speaks in, and the credential rules."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import msgspec

from server.nats_embedded import SERVICE_USER, hash_password, new_password

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
"""A person's handle: the same rule as ``events.bodies.PersonId`` (also a NATS subject token)."""

RESERVED_NAMES = frozenset({"admin", SERVICE_USER})
"""Names no person may take: ``admin`` is the actor of membership events."""

_NAME_RE = re.compile(NAME_PATTERN)


class InvalidName(ValueError):
    """A person or team handle that does not match ``NAME_PATTERN`` or is reserved."""


class PersonExists(ValueError):
    """``add`` for a person already registered."""


class UnknownPerson(LookupError):
    """An operation on a person not registered."""


def check_name(name: str, what: str = "person") -> str:
    """``name`` if it is a valid handle; InvalidName (with the rule) otherwise."""
    if not _NAME_RE.match(name):
        raise InvalidName(
            f"invalid {what} name {name!r}: use a lowercase letter, then up to 62 "
            "lowercase letters, digits, '-' or '_'"
        )
    if what == "person" and name in RESERVED_NAMES:
        raise InvalidName(f"the name {name!r} is reserved")
    return name


class Person(msgspec.Struct, frozen=True):
    """A registered person as stored: hashes only."""

    name: str
    nats_password_hash: str
    token_hash: str
    created_at: datetime
    rotated_at: datetime | None = None


class WebSession(msgspec.Struct, frozen=True):
    """A signed-in browser session as stored: the hash of its cookie, never the cookie."""

    session_hash: str
    person: str
    csrf: str
    credential: str
    """The person's API token hash when the session began: a rotation ends the session."""
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """Fresh secrets for a person (shown once) and their stored hashes."""

    nats_password: str
    api_token: str
    nats_password_hash: str
    token_hash: str


def hash_token(token: str) -> str:
    """The stored form of an API token: sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_credentials(person: str, *, bcrypt_rounds: int = 10) -> Credentials:
    """A new NATS password and API token for ``person`` (``<person>.<32 random bytes>``)."""
    password = new_password()
    token = f"{person}.{secrets.token_urlsafe(32)}"
    return Credentials(password, token, hash_password(password, bcrypt_rounds), hash_token(token))


def token_person(token: str) -> str | None:
    """The person a token names, or None when it is not shaped like one of ours."""
    person, dot, secret = token.partition(".")
    if not dot or not secret or not _NAME_RE.match(person):
        return None
    return person


_DUMMY_HASH = hash_token("")


def verify_token(token: str, stored_hash: str | None) -> bool:
    """Whether ``token`` matches ``stored_hash``, in constant time (None: always False)."""
    candidate = hash_token(token)
    if stored_hash is None:
        hmac.compare_digest(candidate, _DUMMY_HASH)
        return False
    return hmac.compare_digest(candidate, stored_hash)


class AccountStore(Protocol):
    """Registered people and their credential hashes (one row per person)."""

    async def open(self) -> None:
        """Connect and run pending versioned migrations (each exactly once)."""
        ...

    async def close(self) -> None:
        """Release connections; the store can be opened again."""
        ...

    async def add(self, person: str, nats_password_hash: str, token_hash: str) -> Person:
        """Register ``person``; PersonExists if already registered."""
        ...

    async def remove(self, person: str) -> None:
        """Forget ``person``'s credentials (their events stay); UnknownPerson if absent."""
        ...

    async def rotate(self, person: str, nats_password_hash: str, token_hash: str) -> Person:
        """Replace both credential hashes; the old ones stop working. UnknownPerson if absent."""
        ...

    async def get(self, person: str) -> Person | None:
        """The registered person, or None."""
        ...

    async def people(self) -> list[Person]:
        """Every registered person, by name."""
        ...

    async def teams(self) -> dict[str, list[str]]:
        """Current team memberships from the event store's index (person → teams, sorted)."""
        ...

    async def add_signin_link(self, link_hash: str, person: str, expires_at: datetime) -> None:
        """Remember a one-time sign-in link (its hash); expired links are pruned."""
        ...

    async def use_signin_link(self, link_hash: str, now: datetime) -> str | None:
        """The link's person if it is unused and unexpired, marking it used atomically
        (a second use, or a use after ``expires_at``, gives None)."""
        ...

    async def add_web_session(self, session: WebSession) -> None:
        """Store a browser session; expired sessions are pruned."""
        ...

    async def web_session(self, session_hash: str) -> WebSession | None:
        """The stored session with this hash (expired or not), or None."""
        ...

    async def end_web_session(self, session_hash: str) -> None:
        """Forget one session (signing out); absent is fine."""
        ...

    async def end_web_sessions(self, person: str) -> int:
        """Forget every session and unused link of ``person`` (rotation, removal)."""
        ...
