"""Bearer-token authentication backed by the store.

Token records live under ``_kumo/tokens/<id>`` (not served by the REST API): the user, the
groups, a SHA-256 of the secret, an optional expiry and a revoked flag.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Protocol

from kumo.auth import tokens
from kumo.auth.user import AUTHENTICATED, UserInfo
from kumo.model.meta import now_rfc3339, parse_time
from kumo.platform.store.sqlite import SQLiteStore

TOKEN_PREFIX = "_kumo/tokens/"


class TokenAuthenticator(Protocol):
    async def authenticate(self, token: str) -> UserInfo | None:
        """The user a token belongs to, or None when it is unknown, expired or revoked."""


class StoreTokens:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def authenticate(self, token: str) -> UserInfo | None:
        parts = tokens.split(token)
        if parts is None:
            return None
        token_id, secret = parts
        entry = self._store.get_entry(TOKEN_PREFIX + token_id)
        if entry is None:
            return None
        record = entry.obj
        if record.get("revoked") or not tokens.matches(secret, str(record.get("hash", ""))):
            return None
        expires = record.get("expires")
        if expires and parse_time(str(expires)) <= datetime.datetime.now(datetime.UTC):
            return None
        groups = tuple(record.get("groups") or ())
        if AUTHENTICATED not in groups:
            groups = (*groups, AUTHENTICATED)
        return UserInfo(name=str(record["user"]), uid=token_id, groups=groups)

    async def issue(
        self, user: str, groups: Sequence[str], *, expires: str | None = None, description: str = ""
    ) -> str:
        issued = tokens.issue()
        record: dict[str, Any] = {
            "user": user,
            "groups": list(groups),
            "hash": issued.secret_hash,
            "created": now_rfc3339(),
            "description": description,
        }
        if expires:
            record["expires"] = expires
        await self._store.create(TOKEN_PREFIX + issued.token_id, record)
        return issued.token


class Authenticators:
    """Tries each authenticator in turn; the first that knows the token wins."""

    def __init__(self, *chain: TokenAuthenticator) -> None:
        self._chain = list(chain)

    def add(self, authenticator: TokenAuthenticator) -> None:
        self._chain.append(authenticator)

    async def authenticate(self, token: str) -> UserInfo | None:
        for authenticator in self._chain:
            user = await authenticator.authenticate(token)
            if user is not None:
                return user
        return None
