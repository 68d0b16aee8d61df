"""Encryption at rest, pure parts: the AES-GCM transformer and the key file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from kumo.platform.store.encryption import (
    PREFIX,
    AesGcmTransformer,
    EncryptionError,
    Key,
    KeyFile,
)

SECRET_KEY = "registry/core/secrets/ns/db"
OTHER_KEY = "registry/core/configmaps/ns/db"


def keys(*names: str) -> list[Key]:
    return [Key(name, bytes([i + 1]) * 32) for i, name in enumerate(names)]


def test_secrets_are_encrypted_with_the_write_key_and_read_back() -> None:
    transformer = AesGcmTransformer(keys("k2", "k1"))
    data = b'{"data":{"password":"aHVudGVyMg=="}}'
    blob = transformer.to_disk(SECRET_KEY, data)
    assert blob.startswith(PREFIX + b"k2:")
    assert b"aHVudGVyMg" not in blob and b"hunter2" not in blob
    assert len(blob) == len(PREFIX) + len(b"k2:") + 12 + len(data) + 16
    assert transformer.from_disk(SECRET_KEY, blob) == data
    # A fresh nonce every time.
    assert transformer.to_disk(SECRET_KEY, data) != blob
    assert transformer.key_name(blob) == "k2"
    assert not transformer.stale(SECRET_KEY, blob)


def test_other_values_pass_through_and_plaintext_reads_as_is() -> None:
    transformer = AesGcmTransformer(keys("k1"))
    assert transformer.to_disk(OTHER_KEY, b"{}") == b"{}"
    assert transformer.from_disk(SECRET_KEY, b'{"old":1}') == b'{"old":1}'
    assert transformer.stale(SECRET_KEY, b'{"old":1}')
    assert not transformer.stale(OTHER_KEY, b"{}")
    assert transformer.key_name(b"{}") is None


def test_old_keys_decrypt_and_mark_values_stale() -> None:
    old = AesGcmTransformer(keys("k1"))
    blob = old.to_disk(SECRET_KEY, b"v")
    rotated = AesGcmTransformer([Key("k2", b"\x09" * 32), *keys("k1")])
    assert rotated.from_disk(SECRET_KEY, blob) == b"v"
    assert rotated.stale(SECRET_KEY, blob)
    dropped = AesGcmTransformer([Key("k2", b"\x09" * 32)])
    with pytest.raises(EncryptionError, match="encrypted with key 'k1'"):
        dropped.from_disk(SECRET_KEY, blob)


def test_a_value_is_bound_to_its_storage_key_and_tampering_is_caught() -> None:
    transformer = AesGcmTransformer(keys("k1"))
    blob = transformer.to_disk(SECRET_KEY, b"value")
    with pytest.raises(EncryptionError, match="does not decrypt"):
        transformer.from_disk("registry/core/secrets/ns/other", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(EncryptionError):
        transformer.from_disk(SECRET_KEY, tampered)


def test_key_file_is_made_private_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "data" / "encryption-keys.yaml"
    created = KeyFile.load_or_create(path)
    assert created.names == ["key1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = yaml.safe_load(path.read_text())
    assert len(base64.b64decode(raw["keys"][0]["secret"])) == 32
    assert KeyFile.load_or_create(path).keys == created.keys
    assert created.add_key() == "key2"
    assert KeyFile.load_or_create(path).names == ["key2", "key1"]
    assert created.transformer().write_key == "key2"
    assert created.drop_old_keys() == ["key1"]
    reread = KeyFile.load_or_create(path)
    assert reread.names == ["key2"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["encryption-keys.yaml"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("keys: []", "at least one key"),
        ("keys:\n- name: a\n  secret: '!!'", "not base64"),
        ("keys:\n- name: a\n  secret: " + base64.b64encode(b"short").decode(), "16, 24 or 32"),
        ("keys:\n- name: 'bad name'\n  secret: x", "short name"),
        (
            "keys:\n"
            + "".join(
                f"- name: a\n  secret: {base64.b64encode(bytes(32)).decode()}\n" for _ in range(2)
            ),
            "appears twice",
        ),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "encryption-keys.yaml"
    path.write_text(text)
    with pytest.raises(EncryptionError, match=problem):
        KeyFile.load_or_create(path)
