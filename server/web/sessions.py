"""Sign-in for the team page: one-time links, browser sessions, CSRF tokens.

Rules:

- A sign-in link is a random token shown once; only its sha256 is stored, with
  an expiry (``LINK_SECONDS``). Redeeming it marks it used in the same statement
  that checks it, so a second use finds nothing (``use_signin_link``).
- A session is a random cookie value; only its sha256 is stored, with the
  person, a CSRF token, an expiry (``SESSION_SECONDS``) and the person's API
  token hash at sign-in (*credential*). A session is valid while it is stored,
  unexpired, and its credential is still the person's current one: ``person
  rotate`` (and ``person remove``) both delete the person's sessions and change
  that hash, so a cookie from before a rotation signs nobody in.
- The cookie is HttpOnly and SameSite=Strict (Secure over https). Every write
  carries the session's CSRF token (a form field or the ``X-CSRF-Token``
  header), compared in constant time.

Lookups are cached for ``ttl`` seconds per process (as bearer tokens are), so a
sign-out or rotation takes effect on other replicas within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.accounts import AccountStore, WebSession, token_person
from server.http.context import TokenVerifier

SESSION_COOKIE = "milepost_session"
SIGNIN_COOKIE = "milepost_signin"
"""A pre-session cookie whose value the sign-in form echoes (login CSRF)."""
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LINK_SECONDS = 300
"""A sign-in link works for five minutes, once."""
SESSION_SECONDS = 12 * 3600
"""A browser session lasts twelve hours."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, in constant time (None: never)."""
    if not given:
        hmac.compare_digest(expected, expected)
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The person a valid session belongs to and the CSRF token of that session."""

    person: str
    csrf: str
    session_hash: str


class SignInRefused(Exception):
    """Why a sign-in or a session was refused: a title and what to do, for a page."""

    def __init__(self, title: str, advice: str, status: int = 401) -> None:
        super().__init__(title)
        self.title = title
        self.advice = advice
        self.status = status


LINK_REFUSED = SignInRefused(
    "This sign-in link cannot be used",
    "It was already used or it has expired (links work once, for five minutes). "
    "Run `milepost web` on your device for a new one, or sign in with your API token.",
)
TOKEN_REFUSED = SignInRefused(
    "That API token is not valid",
    "Paste the api_token from your credentials file (as printed by `milepost-server person "
    "add` or `person rotate`), or run `milepost web` on your device.",
)
SESSION_ENDED = SignInRefused(
    "You are signed out",
    "Your session ended: it expired, you signed out, or your credentials were rotated. "
    "Run `milepost web` on your device, or sign in with your API token.",
)
CSRF_REFUSED = SignInRefused(
    "This form could not be accepted",
    "It did not carry this session's security token (it may come from another site or an "
    "old tab). Nothing was written. Reload the page and try again.",
    403,
)


class SessionKeeper:
    """Issues links and sessions and checks them; state lives in the account store."""

    def __init__(self, tokens: TokenVerifier, ttl: float = 1.0) -> None:
        self._tokens = tokens
        self._ttl = ttl
        self._cache: dict[str, tuple[float, WebSession | None]] = {}
        self._reading: dict[str, asyncio.Future[WebSession | None]] = {}

    @property
    def _accounts(self) -> AccountStore:
        return self._tokens.accounts

    async def new_link(self, person: str, now: datetime) -> str:
        """A fresh one-time sign-in token for ``person`` (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        await self._accounts.add_signin_link(
            _hash(token), person, now + timedelta(seconds=LINK_SECONDS)
        )
        return token

    async def redeem_link(self, token: str, now: datetime) -> str:
        """The person of an unused, unexpired link (now used); LINK_REFUSED otherwise."""
        if not 20 <= len(token) <= 100:
            raise LINK_REFUSED
        person = await self._accounts.use_signin_link(_hash(token), now)
        if person is None or await self._tokens.credential_of(person) is None:
            raise LINK_REFUSED
        return str(person)

    async def person_for_token(self, token: str) -> str:
        """The person an API token belongs to; TOKEN_REFUSED otherwise."""
        token = token.strip()
        person = await self._tokens.person_for(token) if token_person(token) else None
        if person is None:
            raise TOKEN_REFUSED
        return person

    async def start(self, person: str, now: datetime) -> tuple[str, SignedIn]:
        """A new session for ``person``: the cookie value and what it signs in."""
        credential = await self._tokens.credential_of(person)
        if credential is None:
            raise SESSION_ENDED
        cookie = secrets.token_urlsafe(32)
        session = WebSession(
            session_hash=_hash(cookie),
            person=person,
            csrf=secrets.token_urlsafe(24),
            credential=credential,
            expires_at=now + timedelta(seconds=SESSION_SECONDS),
        )
        await self._accounts.add_web_session(session)
        return cookie, SignedIn(person, session.csrf, session.session_hash)

    async def check(self, cookie: str | None, now: datetime) -> SignedIn | None:
        """Who a session cookie signs in, or None (missing, unknown, expired, rotated)."""
        if not cookie or len(cookie) > 100:
            return None
        key = _hash(cookie)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            session = hit[1]
        else:
            session = await self._read(key)
        if session is None or session.expires_at <= now:
            return None
        current = await self._tokens.credential_of(session.person)
        if current is None or not hmac.compare_digest(current, session.credential):
            return None
        return SignedIn(session.person, session.csrf, key)

    async def _read(self, key: str) -> WebSession | None:
        """The stored session, read once for all the requests that ask at the same time."""
        pending = self._reading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[WebSession | None] = asyncio.get_running_loop().create_future()
        self._reading[key] = future
        try:
            session = await self._accounts.web_session(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._reading.pop(key, None)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self._ttl, session)
        future.set_result(session)
        return session

    async def end(self, signed_in: SignedIn) -> None:
        """Sign out: forget the session here and in the store."""
        self._cache.pop(signed_in.session_hash, None)
        await self._accounts.end_web_session(signed_in.session_hash)
