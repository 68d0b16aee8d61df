"""The store's transformer hook on a real SQLite file: Secret values are encrypted in both
tables (and so in the WAL), while reads, watches from the change log, paged lists at a
revision and compaction all see plaintext; ``retransform`` moves stored values to a new key."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from kumo.platform.store import Change
from kumo.platform.store.encryption import PREFIX, SECRETS_PREFIX, EncryptionError, KeyFile
from kumo.platform.store.sqlite import SQLiteStore

SECRET = SECRETS_PREFIX + "ns/"
CONFIG = "registry/core/configmaps/ns/"


def disk(path: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def doc(name: str, value: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"v": value}}


async def test_values_are_encrypted_on_disk_and_plain_everywhere_else(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    keys = KeyFile.load_or_create(tmp_path / "keys.yaml")
    store = await SQLiteStore.open(path, transformer=keys.transformer(), history_size=2)
    values = [f"value-{i}-{secrets.token_hex(8)}" for i in range(4)]
    visible = f"visible-{secrets.token_hex(8)}"
    try:
        first = await store.create(SECRET + "a", doc("a", values[0]))
        await store.update(SECRET + "a", doc("a", values[1]))
        await store.create(SECRET + "b", doc("b", values[2]))
        await store.update(SECRET + "b", doc("b", values[3]))
        await store.delete(SECRET + "b")
        await store.create(CONFIG + "c", doc("c", visible))
        on_disk = disk(path)
        assert visible.encode() in on_disk
        assert all(v.encode() not in on_disk for v in values)
        assert on_disk.count(PREFIX + b"key1:") >= 6  # objects and every change, the delete too
        assert (await store.get(SECRET + "a"))["data"]["v"] == values[1]
        # The ring holds 2 changes: a watch from the first revision reads the change log.
        revision = int(first["metadata"]["resourceVersion"])
        changes: list[Change] = []
        watch = store.watch(SECRETS_PREFIX, revision - 1)
        async for change in watch:
            assert isinstance(change, Change)
            changes.append(change)
            if len(changes) == 5:
                break
        await watch.aclose()  # type: ignore[attr-defined]
        assert [c.obj["data"]["v"] for c in changes] == [
            values[0],
            values[1],
            values[2],
            values[3],
            values[3],
        ]
        assert changes[1].prev is not None and changes[1].prev["data"]["v"] == values[0]
        past = await store.list(SECRETS_PREFIX, revision=revision)
        assert [e.obj["data"]["v"] for e in past.items] == [values[0]]

        # Rotate: a new write key; retransform moves every stored value to it.
        keys.add_key()
        store.set_transformer(keys.transformer())
        assert await store.retransform(SECRETS_PREFIX) == 6  # 1 object + 5 changes
        assert await store.retransform(SECRETS_PREFIX) == 0
        stored = await store.stored_bytes(SECRETS_PREFIX)
        assert stored and all(blob.startswith(PREFIX + b"key2:") for _, _, blob in stored)
        keys.drop_old_keys()
        store.set_transformer(keys.transformer())
        await store.compact(store.revision)
    finally:
        await store.close()
    reopened = await SQLiteStore.open(path, transformer=keys.transformer())
    try:
        assert (await reopened.get(SECRET + "a"))["data"]["v"] == values[1]
        assert (await reopened.get(CONFIG + "c"))["data"]["v"] == visible
    finally:
        await reopened.close()


async def test_a_store_written_before_encryption_is_encrypted_by_retransform(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    plain = await SQLiteStore.open(path)
    value = f"legacy-{secrets.token_hex(8)}"
    try:
        await plain.create(SECRET + "old", doc("old", value))
    finally:
        await plain.close()
    assert value.encode() in disk(path)
    keys = KeyFile.load_or_create(tmp_path / "keys.yaml")
    store = await SQLiteStore.open(path, transformer=keys.transformer())
    try:
        assert (await store.get(SECRET + "old"))["data"]["v"] == value
        assert await store.retransform(SECRETS_PREFIX) == 2
        rows = await store.stored_bytes(SECRETS_PREFIX)
        assert all(blob.startswith(PREFIX) for _, _, blob in rows)
    finally:
        await store.close()
    # Old plaintext may linger in free pages until SQLite reuses them; what is live is not.
    reopened = await SQLiteStore.open(path, transformer=keys.transformer())
    try:
        assert (await reopened.get(SECRET + "old"))["data"]["v"] == value
    finally:
        await reopened.close()


async def test_without_the_key_the_store_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    keys = KeyFile.load_or_create(tmp_path / "keys.yaml")
    store = await SQLiteStore.open(path, transformer=keys.transformer())
    await store.create(SECRET + "x", doc("x", "v"))
    await store.close()
    other = KeyFile.load_or_create(tmp_path / "other.yaml")
    with pytest.raises(EncryptionError):
        await SQLiteStore.open(path, transformer=other.transformer())
