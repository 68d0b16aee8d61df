"""OpenID Connect ID tokens as bearer tokens, with Kubernetes' --oidc-* semantics.

A token is accepted when its signature verifies against the issuer's keys (a JWKS file, or
the ``jwks_uri`` of ``<issuer>/.well-known/openid-configuration``, fetched with httpx), its
``iss`` is the configured issuer, its ``aud`` contains the client id and it has not expired.
The user name comes from ``username_claim`` (default ``sub``), prefixed with
``username_prefix``; when no prefix is given, claims other than ``email`` are prefixed with
``<issuer>#`` (so an OIDC user cannot pose as a local one), and ``-`` means no prefix. With
``email`` as the claim, ``email_verified`` must not be false. Groups come from
``groups_claim`` (a list or one string), prefixed with ``groups_prefix``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from kumo.auth.user import AUTHENTICATED, UserInfo

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
REFRESH_INTERVAL = 30.0  # at most one refetch of the keys per interval, on an unknown key id


@dataclass(frozen=True, slots=True)
class OIDCOptions:
    issuer_url: str
    client_id: str
    username_claim: str = "sub"
    username_prefix: str | None = None
    groups_claim: str | None = None
    groups_prefix: str = ""
    jwks_file: Path | None = None
    ca_file: Path | None = None


class OIDCAuthenticator:
    def __init__(self, options: OIDCOptions) -> None:
        self.options = options
        self._keys: KeySet | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    @property
    def prefix(self) -> str:
        prefix = self.options.username_prefix
        if prefix == "-":
            return ""
        if prefix is None:
            return "" if self.options.username_claim == "email" else self.options.issuer_url + "#"
        return prefix

    async def _load_keys(self) -> KeySet:
        options = self.options
        if options.jwks_file is not None:
            data = json.loads(await asyncio.to_thread(options.jwks_file.read_text))
            return KeySet.import_key_set(data)
        verify: Any = True
        if options.ca_file is not None:
            import ssl

            verify = ssl.create_default_context(cafile=str(options.ca_file))
        async with httpx.AsyncClient(verify=verify, timeout=10.0, trust_env=False) as http:
            discovery_url = options.issuer_url.rstrip("/") + "/.well-known/openid-configuration"
            document = (await http.get(discovery_url)).raise_for_status().json()
            if document.get("issuer") != options.issuer_url:
                raise ValueError(
                    f"the discovery document names issuer {document.get('issuer')!r}, "
                    f"not {options.issuer_url!r}"
                )
            jwks = (await http.get(str(document["jwks_uri"]))).raise_for_status().json()
        return KeySet.import_key_set(jwks)

    async def keys(self, *, refresh: bool = False) -> KeySet | None:
        async with self._lock:
            stale = time.monotonic() - self._fetched > REFRESH_INTERVAL
            if self._keys is None or (refresh and stale):
                try:
                    self._keys = await self._load_keys()
                except (OSError, ValueError, KeyError, httpx.HTTPError, JoseError) as exc:
                    log.warning("OIDC: cannot load the issuer's keys: %s", exc)
                finally:
                    self._fetched = time.monotonic()
            return self._keys

    async def authenticate(self, token: str) -> UserInfo | None:
        if token.count(".") != 2 or len(token) > 16_384:
            return None
        keys = await self.keys()
        if keys is None:
            return None
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
        except (JoseError, ValueError, TypeError):
            # perhaps a key the issuer rotated in since we fetched
            keys = await self.keys(refresh=True)
            if keys is None:
                return None
            try:
                decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            except (JoseError, ValueError, TypeError):
                return None
        return self.user_of(decoded.claims)

    def user_of(self, claims: dict[str, Any], now: float | None = None) -> UserInfo | None:
        options = self.options
        moment = time.time() if now is None else now
        if claims.get("iss") != options.issuer_url:
            return None
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        if options.client_id not in audiences:
            return None
        try:
            if float(claims["exp"]) <= moment:
                return None
            if "nbf" in claims and float(claims["nbf"]) > moment + 60:
                return None
        except (KeyError, TypeError, ValueError):
            return None
        name = claims.get(options.username_claim)
        if not isinstance(name, str) or not name:
            return None
        if options.username_claim == "email" and claims.get("email_verified") is False:
            return None
        groups: list[str] = []
        if options.groups_claim:
            raw = claims.get(options.groups_claim)
            values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
            groups = [options.groups_prefix + str(g) for g in values if isinstance(g, str)]
        return UserInfo(
            name=self.prefix + name,
            uid=str(claims.get("sub", "")),
            groups=(*groups, AUTHENTICATED),
        )
