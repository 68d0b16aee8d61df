"""Opaque bearer tokens: ``kumo_<id>.<secret>``; only a hash of the secret is ever stored.

A token names its record by id, so checking it is one lookup and one constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "kumo_"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    secret_hash: str
    token: str  # shown once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue() -> IssuedToken:
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return IssuedToken(token_id, hash_secret(secret), f"{PREFIX}{token_id}.{secret}")


def split(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed kumo token, else None."""
    if not token.startswith(PREFIX):
        return None
    token_id, dot, secret = token[len(PREFIX) :].partition(".")
    if not dot or not token_id or not secret or len(token) > 512:
        return None
    return token_id, secret


def matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
