"""People and their credentials: a NATS password (bcrypt) and an HTTP API token (sha256).

Only hashes are stored. A token names its person (``<person>.<secret>``) so a
request finds the one stored hash to compare with ``hmac.compare_digest``.
Team membership is not kept here: it is events (``team.member_joined/left``)
in the event store, so every view follows it.
"""

from server.accounts.protocol import (
    RESERVED_NAMES,
    AccountStore,
    Credentials,
    InvalidName,
    Person,
    PersonExists,
    UnknownPerson,
    WebSession,
    check_name,
    hash_token,
    new_credentials,
    token_person,
    verify_token,
)

__all__ = [
    "RESERVED_NAMES",
    "AccountStore",
    "Credentials",
    "InvalidName",
    "Person",
    "PersonExists",
    "UnknownPerson",
    "WebSession",
    "check_name",
    "hash_token",
    "new_credentials",
    "open_accounts",
    "token_person",
    "verify_token",
]


def open_accounts(database: str) -> AccountStore:
    """An account store on ``database`` (a ``postgresql://`` URL or an SQLite path), not opened."""
    if database.startswith(("postgresql://", "postgres://")):
        from server.accounts.postgres import PostgresAccounts

        return PostgresAccounts(database)
    from server.accounts.sqlite import SqliteAccounts

    return SqliteAccounts(database.removeprefix("sqlite://"))
