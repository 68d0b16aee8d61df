"""Service-account tokens: JWTs signed with the cluster's service-account key (ES256).

The key pair is made at first start (``<pki>/sa.key``, mode 0600, and ``sa.pub``). A token
carries Kubernetes' claims::

    iss  the issuer (default https://kubernetes.default.svc.cluster.local)
    sub  system:serviceaccount:<namespace>:<name>
    aud  the audiences it is good for (default: the issuer, which the API server accepts)
    exp, iat, nbf, jti
    kubernetes.io: {namespace, serviceaccount: {name, uid}, pod: {name, uid}?}

``TokenSigner.verify`` checks the signature, the issuer, the time window and the audience;
that the ServiceAccount (and the Pod it is bound to) still exists with that uid is the
caller's check (``kumo.platform.api.authn.ServiceAccountTokens``), so deleting the account
revokes its tokens.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ALGORITHM = "ES256"
KEY_FILE = "sa.key"
PUBLIC_FILE = "sa.pub"
# TokenRequest limits, as Kubernetes validates them.
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 2**32
DEFAULT_EXPIRATION_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class BoundPod:
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class ServiceAccountClaims:
    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires: int
    issued: int
    token_id: str
    pod: BoundPod | None = None


def load_or_create_key(pki_dir: Path) -> ECKey:
    """The signing key under ``pki_dir``, made (P-256) on first use."""
    key_path, public_path = pki_dir / KEY_FILE, pki_dir / PUBLIC_FILE
    if key_path.exists():
        key = ECKey.import_key(key_path.read_bytes())
        if not public_path.exists():
            public_path.write_bytes(key.as_pem(private=False))
        return key
    key = ECKey.generate_key("P-256", private=True)
    pki_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.as_pem(private=True))
    public_path.write_bytes(key.as_pem(private=False))
    return key


class TokenSigner:
    def __init__(self, key: ECKey, issuer: str = DEFAULT_ISSUER) -> None:
        self.key = key
        self.issuer = issuer
        self.key_id = key.thumbprint()

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK set (what /openid/v1/jwks serves)."""
        public = ECKey.import_key(self.key.as_pem(private=False))
        data = dict(public.as_dict(private=False))
        data.update({"kid": self.key_id, "use": "sig", "alg": ALGORITHM})
        return {"keys": [data]}

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        *,
        audiences: list[str],
        seconds: int,
        pod: BoundPod | None = None,
        now: int | None = None,
    ) -> tuple[str, int]:
        """(token, expiry as Unix seconds)."""
        issued = int(time.time()) if now is None else now
        expires = issued + seconds
        kubernetes: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        }
        if pod is not None:
            kubernetes["pod"] = {"name": pod.name, "uid": pod.uid}
        claims = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": list(audiences),
            "exp": expires,
            "iat": issued,
            "nbf": issued,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": kubernetes,
        }
        header = {"alg": ALGORITHM, "kid": self.key_id, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM]), expires

    def verify(
        self, token: str, audiences: list[str], now: int | None = None
    ) -> ServiceAccountClaims | None:
        """The claims of a valid token meant for one of ``audiences``, else None."""
        if token.count(".") != 2 or len(token) > 16_384:
            return None
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError):
            return None
        if decoded.header.get("kid") not in (None, self.key_id):
            return None
        claims = decoded.claims
        moment = int(time.time()) if now is None else now
        try:
            if claims.get("iss") != self.issuer:
                return None
            expires, not_before = int(claims["exp"]), int(claims.get("nbf", 0))
            if expires <= moment or not_before > moment + CLOCK_SKEW_SECONDS:
                return None
            aud = claims.get("aud")
            token_audiences = [aud] if isinstance(aud, str) else list(aud or [])
            if not set(token_audiences) & set(audiences):
                return None
            info = claims["kubernetes.io"]
            account = info["serviceaccount"]
            pod_info = info.get("pod")
            pod = BoundPod(str(pod_info["name"]), str(pod_info["uid"])) if pod_info else None
            return ServiceAccountClaims(
                namespace=str(info["namespace"]),
                name=str(account["name"]),
                uid=str(account["uid"]),
                audiences=tuple(str(a) for a in token_audiences),
                expires=expires,
                issued=int(claims.get("iat", 0)),
                token_id=str(claims.get("jti", "")),
                pod=pod,
            )
        except (KeyError, TypeError, ValueError):
            return None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")
