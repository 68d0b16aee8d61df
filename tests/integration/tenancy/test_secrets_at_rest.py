"""Secrets encrypted at rest, on a private API server: the bytes SQLite writes (database
and WAL, objects and change log) never hold a Secret's value; key rotation re-encrypts every
Secret, old keys can then be dropped, and everything still reads back after restarts."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import secrets
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumo.client import Client
from kumo.platform.api.authn import StoreTokens
from kumo.platform.store.encryption import KEY_FILE, PREFIX, KeyFile
from kumo.platform.store.sqlite import SQLiteStore
from tests.conftest import KUMO, ApiServerFactory, ApiServerProcess

from .conftest import CONFIGMAP, SECRET


def disk_bytes(data_dir: Path) -> bytes:
    """Everything SQLite has written: the database file and its write-ahead log."""
    out = b""
    for name in ("store.db", "store.db-wal"):
        path = data_dir / name
        if path.exists():
            out += path.read_bytes()
    return out


def secret(name: str, values: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v).decode() for k, v in values.items()},
    }


def forms(value: bytes) -> list[bytes]:
    """A value as it could appear on disk: raw, base64 (as in the JSON), JSON-escaped."""
    return [value, base64.b64encode(value), base64.b64encode(value).rstrip(b"=")]


def read_all(client: Client, names: dict[str, bytes]) -> None:
    for name, value in names.items():
        got = client.get_raw(SECRET, name, "default")
        assert base64.b64decode(got["data"]["value"]) == value, name


def list_at(client: Client, revision: str) -> dict[str, Any]:
    """The Secrets in ``default`` as they were at ``revision`` (read from the change log)."""
    params = {"resourceVersion": revision, "resourceVersionMatch": "Exact"}
    response = client.request("GET", SECRET.path("default"), params=params)
    result: dict[str, Any] = response.json()
    return result


def seed_token(data_dir: Path, user: str) -> str:
    """A token for a user outside system:masters, written while the server is stopped."""

    async def seed() -> str:
        keys = KeyFile.load_or_create(data_dir / KEY_FILE)
        store = await SQLiteStore.open(data_dir / "store.db", transformer=keys.transformer())
        try:
            return await StoreTokens(store).issue(user, ["developers"], description="test")
        finally:
            await store.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, seed()).result()


def kumo(server: ApiServerProcess, *args: str) -> str:
    env = dict(os.environ, KUMOCONFIG=str(server.kubeconfig_path))
    done = subprocess.run(
        [str(KUMO), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_secret_values_never_reach_the_disk_and_survive_key_rotation(
    api_server_factory: ApiServerFactory,
) -> None:
    server = api_server_factory.start()
    data_dir = server.data_dir
    key_file = data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [k["name"] for k in yaml.safe_load(key_file.read_text())["keys"]] == ["key1"]

    first, second = (
        b"first-" + secrets.token_hex(12).encode(),
        b"second-" + secrets.token_hex(12).encode(),
    )
    token_text = "token-" + secrets.token_hex(12)
    visible = "plain-" + secrets.token_hex(12)
    with Client(server.client_config()) as client:
        created = client.create_raw(
            {**secret("db", {"value": first}), "stringData": {"token": token_text}}, "default"
        )
        old_revision = created["metadata"]["resourceVersion"]
        client.patch_raw(
            SECRET, "db", {"data": {"value": base64.b64encode(second).decode()}}, "default"
        )
        # A ConfigMap is not encrypted: its value is on disk, so the search below can see.
        client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"k": visible},
            },
            "default",
        )
        on_disk = disk_bytes(data_dir)
        assert visible.encode() in on_disk
        for value in (first, second, token_text.encode()):
            for form in forms(value):
                assert form not in on_disk, value
        assert PREFIX + b"key1:" in on_disk

        others = {f"s{i}": secrets.token_hex(8).encode() for i in range(5)}
        for name, value in others.items():
            client.create_raw(secret(name, {"value": value}), "default")
        names = {"db": second, **others}

        # Rotate: key2 becomes the write key, every stored value moves to it.
        result = client.request("POST", "/kumo/admin/rotate-key").json()
        assert result["writeKey"] == "key2"
        assert [k["name"] for k in result["keys"]] == ["key2", "key1"]
        assert {k["name"]: k["storedValues"] for k in result["keys"]}["key1"] == 0
        assert result["unencryptedValues"] == 0
        assert result["reencrypted"] >= 8  # objects and change log
        read_all(client, names)
        # History (the change log) decrypts with the new key too.
        past = list_at(client, old_revision)
        (db_then,) = [i for i in past["items"] if i["metadata"]["name"] == "db"]
        assert base64.b64decode(db_then["data"]["value"]) == first
        later = {"late": secrets.token_hex(8).encode()}
        client.create_raw(secret("late", {"value": later["late"]}), "default")
        names.update(later)
        on_disk = disk_bytes(data_dir)
        assert PREFIX + b"key2:" in on_disk
        for value in names.values():
            for form in forms(value):
                assert form not in on_disk

    # After a restart every Secret still reads back (both keys are in the key file).
    server.stop()
    viewer = seed_token(data_dir, "jane")
    server.start()
    with Client(server.client_config()) as client:
        read_all(client, names)
        # Only administrators may rotate.
        with server.http(token=viewer) as http:
            response = http.post("/kumo/admin/rotate-key")
            assert response.status_code == 403
            assert response.json()["kind"] == "Status"
    # The second step, from the CLI: drop the old key.
    output = kumo(server, "admin", "drop-old-keys")
    assert "write key: key2" in output and "dropped keys: key1" in output
    assert [k["name"] for k in yaml.safe_load(key_file.read_text())["keys"]] == ["key2"]

    server.restart()
    with Client(server.client_config()) as client:
        read_all(client, names)
        past = list_at(client, old_revision)
        assert any(i["metadata"]["name"] == "db" for i in past["items"])
        status = client.request("GET", "/kumo/admin/encryption").json()
        assert [k["name"] for k in status["keys"]] == ["key2"]
        assert status["keys"][0]["storedValues"] >= 9
        # Rotate and drop in one go, from the CLI.
        output = kumo(server, "admin", "rotate-key", "--drop-old")
        assert "write key: key3" in output and "dropped keys: key2" in output
        read_all(client, names)
        assert client.get_raw(CONFIGMAP, "c", "default")["data"]["k"] == visible
    server.restart()
    with Client(server.client_config()) as client:
        read_all(client, names)


def test_a_server_without_the_key_refuses_to_start(api_server_factory: ApiServerFactory) -> None:
    server = api_server_factory.start()
    with Client(server.client_config()) as client:
        client.create_raw(secret("db", {"value": b"x"}), "default")
    server.stop()
    key_file = server.data_dir / KEY_FILE
    key_file.unlink()  # a fresh key is made, which cannot read what key1 encrypted
    with pytest.raises(RuntimeError, match="does not decrypt with key 'key1'"):
        server.start()
