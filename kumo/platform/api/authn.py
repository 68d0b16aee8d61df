"""Bearer-token authentication.

- ``StoreTokens``: user tokens (``kumo_<id>.<secret>``) that an administrator issued. Records
  live under ``_kumo/tokens/<id>`` (not served by the REST API): the user, the groups, a
  SHA-256 of the secret, an optional expiry and a revoked flag. The secret is never stored.
- ``ServiceAccountTokens``: JWTs signed by ``kumo.auth.service_accounts.TokenSigner``, valid
  while the ServiceAccount (and the Pod they are bound to) exists with the uid in the token.
- ``kumo.auth.oidc.OIDCAuthenticator``: ID tokens of a configured OpenID Connect issuer.

``Authenticators`` tries them in turn. Tokens are checked against audiences, as Kubernetes
does: the API server's own audiences for requests, those a TokenReview names for reviews.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kumo.auth import tokens
from kumo.auth.rbac import service_account_user
from kumo.auth.service_accounts import TokenSigner, looks_like_jwt
from kumo.auth.user import AUTHENTICATED, UserInfo
from kumo.model.meta import now_rfc3339, parse_time
from kumo.platform.store import AlreadyExists, Conflict, NotFound
from kumo.platform.store.sqlite import SQLiteStore

TOKEN_PREFIX = "_kumo/tokens/"
SERVICE_ACCOUNTS = "system:serviceaccounts"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
CREDENTIAL_ID_EXTRA = "authentication.kubernetes.io/credential-id"


class TokenAuthenticator(Protocol):
    async def authenticate(self, token: str) -> UserInfo | None:
        """The user a token belongs to, or None when it is unknown, expired or revoked."""


class AudienceAuthenticator(Protocol):
    """An authenticator whose tokens name their audiences (service-account JWTs)."""

    async def authenticate_for(
        self, token: str, audiences: Sequence[str]
    ) -> tuple[UserInfo, list[str]] | None:
        """(user, the audiences of ``audiences`` the token is good for), or None."""


def _expired(record: dict[str, Any], now: datetime.datetime | None = None) -> bool:
    expires = record.get("expires")
    if not expires:
        return False
    moment = now or datetime.datetime.now(datetime.UTC)
    return parse_time(str(expires)) <= moment


@dataclass(frozen=True, slots=True)
class IssuedUserToken:
    token_id: str
    token: str  # shown once
    record: dict[str, Any]


def public_record(token_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """A token record without its hash: what listing shows."""
    out = {k: v for k, v in record.items() if k not in ("hash", "metadata")}
    out["id"] = token_id
    out["expired"] = _expired(record)
    out["revoked"] = bool(record.get("revoked"))
    return out


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
        if _expired(record):
            return None
        groups = tuple(record.get("groups") or ())
        if AUTHENTICATED not in groups:
            groups = (*groups, AUTHENTICATED)
        return UserInfo(name=str(record["user"]), uid=token_id, groups=groups)

    async def issue(
        self, user: str, groups: Sequence[str], *, expires: str | None = None, description: str = ""
    ) -> str:
        return (await self.create(user, groups, expires=expires, description=description)).token

    async def create(
        self,
        user: str,
        groups: Sequence[str],
        *,
        expires: str | None = None,
        description: str = "",
        created_by: str = "",
    ) -> IssuedUserToken:
        for _ in range(5):
            issued = tokens.issue()
            record: dict[str, Any] = {
                "user": user,
                "groups": list(groups),
                "hash": issued.secret_hash,
                "created": now_rfc3339(),
                "description": description,
            }
            if created_by:
                record["createdBy"] = created_by
            if expires:
                record["expires"] = expires
            try:
                await self._store.create(TOKEN_PREFIX + issued.token_id, record)
            except AlreadyExists:
                continue
            return IssuedUserToken(issued.token_id, issued.token, record)
        raise RuntimeError("could not find a free token id")

    def get(self, token_id: str) -> dict[str, Any] | None:
        entry = self._store.get_entry(TOKEN_PREFIX + token_id)
        return None if entry is None else public_record(token_id, entry.obj)

    def list(self) -> list[dict[str, Any]]:
        return [
            public_record(entry.key[len(TOKEN_PREFIX) :], entry.obj)
            for entry in self._store.entries(TOKEN_PREFIX)
        ]

    async def revoke(self, token_id: str) -> dict[str, Any] | None:
        """Mark a token revoked (it stays listed as such); None when there is no such token."""
        key = TOKEN_PREFIX + token_id
        for _ in range(10):
            entry = self._store.get_entry(key)
            if entry is None:
                return None
            if entry.obj.get("revoked"):
                return public_record(token_id, entry.obj)
            record = dict(entry.obj)
            record["revoked"] = True
            record["revokedAt"] = now_rfc3339()
            record.pop("metadata", None)
            try:
                await self._store.update(key, record, entry.revision)
            except NotFound:
                return None
            except Conflict:
                continue  # a concurrent change: read it again
            return public_record(token_id, record)
        return None


class ServiceAccountTokens:
    """Service-account JWTs, checked against the store: the account (and the pod, for a
    bound token) must still exist with the uid the token names."""

    def __init__(self, store: SQLiteStore, signer: TokenSigner, audiences: Sequence[str]) -> None:
        self._store = store
        self.signer = signer
        self.audiences = list(audiences)

    async def authenticate(self, token: str) -> UserInfo | None:
        found = await self.authenticate_for(token, self.audiences)
        return None if found is None else found[0]

    async def authenticate_for(
        self, token: str, audiences: Sequence[str]
    ) -> tuple[UserInfo, list[str]] | None:
        if not looks_like_jwt(token):
            return None
        claims = self.signer.verify(token, list(audiences))
        if claims is None:
            return None
        account = self._store.get_entry(
            f"registry/core/serviceaccounts/{claims.namespace}/{claims.name}"
        )
        if account is None or account.obj.get("metadata", {}).get("uid") != claims.uid:
            return None
        extra: dict[str, tuple[str, ...]] = {}
        if claims.pod is not None:
            pod = self._store.get_entry(f"registry/core/pods/{claims.namespace}/{claims.pod.name}")
            if pod is None or pod.obj.get("metadata", {}).get("uid") != claims.pod.uid:
                return None
            extra[POD_NAME_EXTRA] = (claims.pod.name,)
            extra[POD_UID_EXTRA] = (claims.pod.uid,)
        if claims.token_id:
            extra[CREDENTIAL_ID_EXTRA] = (f"JTI={claims.token_id}",)
        user = UserInfo(
            name=service_account_user(claims.namespace, claims.name),
            uid=claims.uid,
            groups=(SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{claims.namespace}", AUTHENTICATED),
            extra=extra,
        )
        return user, [a for a in audiences if a in claims.audiences]


class Authenticators:
    """Tries each authenticator in turn; the first that knows the token wins.

    ``api_audiences`` are the audiences the API server itself accepts. Authenticators whose
    tokens carry no audience (user tokens, OIDC ID tokens) answer a review only when the
    review's audiences include one of them, as Kubernetes does."""

    def __init__(self, *chain: TokenAuthenticator, api_audiences: Sequence[str] = ()) -> None:
        self._chain: list[TokenAuthenticator] = list(chain)
        self.api_audiences = list(api_audiences)

    def add(self, authenticator: TokenAuthenticator) -> None:
        self._chain.append(authenticator)

    async def authenticate(self, token: str) -> UserInfo | None:
        for authenticator in self._chain:
            user = await authenticator.authenticate(token)
            if user is not None:
                return user
        return None

    async def review(
        self, token: str, audiences: Sequence[str] = ()
    ) -> tuple[UserInfo, list[str]] | None:
        """(user, audiences) for a TokenReview; ``audiences`` default to the API's own."""
        wanted = list(audiences) or list(self.api_audiences)
        for authenticator in self._chain:
            aware = getattr(authenticator, "authenticate_for", None)
            if aware is not None:
                found: tuple[UserInfo, list[str]] | None = await aware(token, wanted)
                if found is not None:
                    return found
                continue
            common = [a for a in wanted if a in self.api_audiences] if wanted else []
            if self.api_audiences and not common:
                continue
            user = await authenticator.authenticate(token)
            if user is not None:
                return user, common
        return None
