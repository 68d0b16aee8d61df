"""Secrets encrypted at rest: AES-GCM over the bytes the store writes for Secrets.

The key file (``<data-dir>/encryption-keys.yaml``, mode 0600, made at first start)::

    kind: EncryptionKeys
    keys:            # the first key encrypts; every key listed decrypts
    - name: key2
      secret: <base64 of 32 random bytes>
    - name: key1
      secret: ...

What SQLite stores for a Secret (in the ``objects`` table and in the ``changes`` log) is,
as in Kubernetes' aesgcm provider::

    k8s:enc:aesgcm:v1:<key name>:<12-byte nonce><ciphertext and 16-byte tag>

with the object's storage key as additional authenticated data, so a stored value cannot be
moved to another key. Bytes without the prefix are read as they are (a store written before
encryption was on); rewriting them (``SQLiteStore.retransform``) encrypts them.

Rotation: ``add_key`` puts a new key first (it becomes the write key; the old ones still
decrypt), the store re-encrypts every Secret with it, then ``drop_old_keys`` removes the rest.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = b"k8s:enc:aesgcm:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
SECRETS_PREFIX = "registry/core/secrets/"
KEY_FILE = "encryption-keys.yaml"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$")


class EncryptionError(Exception):
    """A stored value cannot be decrypted (unknown key, tampered bytes) or a key file is bad."""


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    secret: bytes


class AesGcmTransformer:
    """The store hook: encrypts values under ``prefixes`` on their way to disk, decrypts on
    their way back. Everything else passes through unchanged."""

    def __init__(self, keys: Iterable[Key], prefixes: tuple[str, ...] = (SECRETS_PREFIX,)) -> None:
        self.keys = list(keys)
        if not self.keys:
            raise EncryptionError("at least one encryption key is needed")
        self.prefixes = prefixes
        self._write = self.keys[0]
        self._write_cipher = AESGCM(self._write.secret)
        self._write_prefix = PREFIX + self._write.name.encode() + b":"
        self._ciphers = {k.name.encode(): AESGCM(k.secret) for k in self.keys}

    @property
    def write_key(self) -> str:
        return self._write.name

    def applies(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def to_disk(self, key: str, data: bytes) -> bytes:
        if not self.applies(key):
            return data
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._write_cipher.encrypt(nonce, data, key.encode())
        return self._write_prefix + nonce + sealed

    def key_name(self, blob: bytes) -> str | None:
        """The name of the key ``blob`` was encrypted with; None for unencrypted bytes."""
        if not blob.startswith(PREFIX):
            return None
        name, sep, _ = blob[len(PREFIX) :].partition(b":")
        return name.decode(errors="replace") if sep else None

    def from_disk(self, key: str, blob: bytes) -> bytes:
        if not blob.startswith(PREFIX):
            return blob
        name, sep, rest = blob[len(PREFIX) :].partition(b":")
        cipher = self._ciphers.get(name) if sep else None
        if cipher is None:
            known = ", ".join(k.name for k in self.keys)
            raise EncryptionError(
                f"{key}: encrypted with key {name.decode(errors='replace')!r}, which the key"
                f" file does not have (it has: {known})"
            )
        nonce, sealed = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, sealed, key.encode())
        except InvalidTag as exc:
            raise EncryptionError(
                f"{key}: the stored value does not decrypt with key"
                f" {name.decode(errors='replace')!r} (a different key file, or changed bytes)"
            ) from exc

    def stale(self, key: str, blob: bytes) -> bool:
        """Whether ``blob`` should be rewritten: not encrypted with the write key."""
        return self.applies(key) and not blob.startswith(self._write_prefix)


class KeyFile:
    """The named keys in ``<data-dir>/encryption-keys.yaml``; the first one is the write key."""

    def __init__(self, path: Path, keys: list[Key]) -> None:
        self.path = path
        self.keys = keys

    @classmethod
    def load_or_create(cls, path: Path) -> KeyFile:
        """Read the key file, or make one with a fresh key (mode 0600) if there is none."""
        if path.exists():
            return cls(path, _parse(path))
        key_file = cls(path, [Key("key1", secrets.token_bytes(KEY_BYTES))])
        key_file.save()
        return key_file

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    @property
    def write_key(self) -> str:
        return self.keys[0].name

    def transformer(self) -> AesGcmTransformer:
        return AesGcmTransformer(self.keys)

    def add_key(self) -> str:
        """A new key, first in the file: it encrypts from now on. Saved before it is used."""
        numbers = [int(m.group(1)) for k in self.keys if (m := re.match(r"^key(\d+)$", k.name))]
        name = f"key{max(numbers, default=0) + 1}"
        while name in self.names:
            name += "x"
        self.keys = [Key(name, secrets.token_bytes(KEY_BYTES)), *self.keys]
        self.save()
        return name

    def drop_old_keys(self) -> list[str]:
        """Keep only the write key; return the names dropped. Call only once nothing stored
        is encrypted with the others."""
        dropped = self.names[1:]
        self.keys = self.keys[:1]
        self.save()
        return dropped

    def save(self) -> None:
        """Atomically: a private temp file, fsync, rename, fsync the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(
            {
                "kind": "EncryptionKeys",
                "keys": [
                    {"name": k.name, "secret": base64.b64encode(k.secret).decode()}
                    for k in self.keys
                ],
            },
            sort_keys=False,
        )
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        os.chmod(self.path, 0o600)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _parse(path: Path) -> list[Key]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EncryptionError(f"{path}: cannot read the encryption key file: {exc}") from exc
    entries = raw.get("keys") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise EncryptionError(f"{path}: expected 'keys:' with at least one key")
    keys: list[Key] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise EncryptionError(f"{path}: keys[{i}] must be a mapping with name and secret")
        name, secret = entry.get("name"), entry.get("secret")
        if not isinstance(name, str) or not _KEY_NAME.match(name):
            raise EncryptionError(f"{path}: keys[{i}].name must be a short name ([A-Za-z0-9-_.])")
        if name in (k.name for k in keys):
            raise EncryptionError(f"{path}: key name {name!r} appears twice")
        try:
            material = base64.b64decode(str(secret), validate=True)
        except ValueError as exc:
            raise EncryptionError(f"{path}: keys[{i}].secret is not base64") from exc
        if len(material) not in (16, 24, 32):
            raise EncryptionError(
                f"{path}: keys[{i}].secret must be 16, 24 or 32 bytes, not {len(material)}"
            )
        keys.append(Key(name, material))
    return keys
