"""The SQLite store on a real database file: revisions, compare-and-swap, watches from the
in-memory ring and from the change log, compaction, paging at a revision, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kumo.platform.store import (
    AlreadyExists,
    Change,
    Conflict,
    Gone,
    NotFound,
    Progress,
    StoreError,
    WatchOverflow,
)
from kumo.platform.store.sqlite import SQLiteStore, decode_continue, encode_continue


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(tmp_path / "store.db")
    try:
        yield opened
    finally:
        await opened.close()


def doc(name: str, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, **fields}


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def collect(
    stream: AsyncIterator[Change | Progress], count: int, within: float = 5.0
) -> list[Change]:
    out: list[Change] = []
    async with asyncio.timeout(within):
        async for item in stream:
            if isinstance(item, Change):
                out.append(item)
                if len(out) == count:
                    break
    await stream.aclose()  # type: ignore[attr-defined]
    return out


async def test_revisions_grow_and_cas_guards_updates(store: SQLiteStore) -> None:
    a = await store.create("k/a", doc("a", v=1))
    b = await store.create("k/b", doc("b", v=1))
    assert rv(b) == rv(a) + 1 == store.revision
    with pytest.raises(AlreadyExists):
        await store.create("k/a", doc("a"))
    updated = await store.update("k/a", doc("a", v=2), expected_revision=rv(a))
    assert rv(updated) == rv(b) + 1
    with pytest.raises(Conflict) as conflict:
        await store.update("k/a", doc("a", v=3), expected_revision=rv(a))
    assert conflict.value.current_revision == rv(updated)
    with pytest.raises(NotFound):
        await store.update("k/missing", doc("x"))
    with pytest.raises(Conflict):
        await store.delete("k/a", expected_revision=rv(a))
    deleted = await store.delete("k/a", expected_revision=rv(updated))
    assert deleted["v"] == 2 and rv(deleted) == rv(updated) + 1
    assert await store.get("k/a") is None
    with pytest.raises(NotFound):
        await store.delete("k/a")


async def test_objects_handed_out_are_copies(store: SQLiteStore) -> None:
    await store.create("k/a", doc("a", items=[1]))
    first = await store.get("k/a")
    assert first is not None
    first["items"].append(2)
    again = await store.get("k/a")
    assert again is not None and again["items"] == [1]


async def test_batched_writes_in_one_transaction_each_get_their_revision(
    store: SQLiteStore,
) -> None:
    results = await asyncio.gather(*(store.create(f"k/{i:03d}", doc(str(i))) for i in range(200)))
    revisions = sorted(rv(r) for r in results)
    assert revisions == list(range(revisions[0], revisions[0] + 200))
    assert store.batches < 200  # group commit: fewer transactions than writes
    same_key = await asyncio.gather(
        *(store.update("k/000", doc("0", n=i), expected_revision=rv(results[0])) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in same_key) == 1
    assert sum(isinstance(r, Conflict) for r in same_key) == 4


async def test_list_with_prefix_limit_and_predicate(store: SQLiteStore) -> None:
    for i in range(10):
        await store.create(f"a/{i}", doc(str(i), even=i % 2 == 0))
    await store.create("b/0", doc("other"))
    everything = await store.list("a/")
    assert [e.key for e in everything.items] == [f"a/{i}" for i in range(10)]
    assert everything.continue_key is None
    page = await store.list("a/", limit=3)
    assert [e.key for e in page.items] == ["a/0", "a/1", "a/2"]
    assert page.continue_key == "a/2" and page.remaining == 7
    rest = await store.list("a/", limit=3, start_after=page.continue_key)
    assert [e.key for e in rest.items] == ["a/3", "a/4", "a/5"]
    evens = await store.list("a/", predicate=lambda o: bool(o["even"]))
    assert [e.key for e in evens.items] == ["a/0", "a/2", "a/4", "a/6", "a/8"]


async def test_list_at_an_older_revision_is_that_snapshot(store: SQLiteStore) -> None:
    for i in range(5):
        await store.create(f"a/{i}", doc(str(i), v=0))
    then = store.revision
    await store.update("a/1", doc("1", v=1))
    await store.delete("a/2")
    await store.create("a/5", doc("5", v=0))
    old = await store.list("a/", revision=then)
    assert old.revision == then
    assert [(e.key, e.obj["v"]) for e in old.items] == [(f"a/{i}", 0) for i in range(5)]
    first = await store.list("a/", revision=then, limit=2)
    assert [e.key for e in first.items] == ["a/0", "a/1"]
    assert first.continue_key == "a/1"
    second = await store.list("a/", revision=then, limit=10, start_after="a/1")
    assert [e.key for e in second.items] == ["a/2", "a/3", "a/4"]
    with pytest.raises(StoreError):
        await store.list("a/", revision=store.revision + 5)


async def test_watch_replays_history_then_follows_live_changes(store: SQLiteStore) -> None:
    start = store.revision
    a = await store.create("w/a", doc("a", v=1))
    await store.create("x/ignored", doc("ignored"))
    b = await store.update("w/a", doc("a", v=2))
    stream = store.watch("w/", start)
    replay_and_live = asyncio.create_task(collect(stream, 3))
    await asyncio.sleep(0.05)
    c = await store.delete("w/a")
    events = await replay_and_live
    assert [(e.type, e.revision) for e in events] == [
        ("ADDED", rv(a)),
        ("MODIFIED", rv(b)),
        ("DELETED", rv(c)),
    ]
    assert events[1].prev is not None and events[1].prev["v"] == 1
    assert events[2].prev is not None and events[2].prev["v"] == 2


@pytest.mark.parametrize("history_size", [3, 20_000], ids=["from-the-log", "from-the-ring"])
async def test_watch_from_every_revision_is_exact(tmp_path: Path, history_size: int) -> None:
    store = await SQLiteStore.open(tmp_path / "w.db", history_size=history_size)
    try:
        base = store.revision
        revisions = []
        for i in range(30):
            key = f"w/{i % 4}"
            if await store.get(key) is None:
                revisions.append(rv(await store.create(key, doc(key, i=i))))
            elif i % 5 == 0:
                revisions.append(rv(await store.delete(key)))
            else:
                revisions.append(rv(await store.update(key, doc(key, i=i))))
        for start in range(base, store.revision):
            expected = [r for r in revisions if r > start]
            events = await collect(store.watch("w/", start), len(expected))
            assert [e.revision for e in events] == expected, start
    finally:
        await store.close()


async def test_compaction_makes_old_revisions_gone(store: SQLiteStore) -> None:
    for i in range(5):
        await store.create(f"c/{i}", doc(str(i)))
    old = store.revision
    await store.update("c/0", doc("0", v=1))
    await store.delete("c/1")
    await store.compact(store.revision)
    assert store.compacted_revision == store.revision
    with pytest.raises(Gone):
        await collect(store.watch("c/", old), 1)
    with pytest.raises(Gone):
        await store.list("c/", revision=old)
    # The current state is untouched and watches from now work.
    assert [e.key for e in (await store.list("c/")).items] == ["c/0", "c/2", "c/3", "c/4"]
    now = store.revision
    stream = store.watch("c/", now)
    task = asyncio.create_task(collect(stream, 1))
    await asyncio.sleep(0.05)
    created = await store.create("c/9", doc("9"))
    assert [e.revision for e in await task] == [rv(created)]
    # A list at the compaction point still sees every live key.
    snapshot = await store.list("c/", revision=now)
    assert [e.key for e in snapshot.items] == ["c/0", "c/2", "c/3", "c/4"]


async def test_state_and_revisions_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = await SQLiteStore.open(path)
    await store.create("r/a", doc("a"))
    updated = await store.update("r/a", doc("a", v=2))
    await store.create("r/b", doc("b"))
    last = store.revision
    await store.compact(rv(updated))
    await store.close()

    reopened = await SQLiteStore.open(path)
    try:
        assert reopened.revision == last
        assert reopened.compacted_revision == rv(updated)
        got = await reopened.get("r/a")
        assert got is not None and got["v"] == 2 and rv(got) == rv(updated)
        created = await reopened.create("r/c", doc("c"))
        assert rv(created) == last + 1
        events = await collect(reopened.watch("r/", rv(updated)), 2)
        assert [(e.key, e.type) for e in events] == [("r/b", "ADDED"), ("r/c", "ADDED")]
    finally:
        await reopened.close()


async def test_idle_watch_with_progress_reports_bookmarks(store: SQLiteStore) -> None:
    await store.create("p/a", doc("a"))
    stream = store.watch("p/", store.revision, progress_interval=0.05)
    async with asyncio.timeout(5):
        first = await anext(stream)
    assert isinstance(first, Progress)
    assert first.revision == store.revision
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_watcher_that_falls_behind_overflows(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "o.db", watch_buffer=5)
    try:
        stream = store.watch("o/", store.revision)
        idle: asyncio.Task[Change | Progress] = asyncio.create_task(_next(stream))
        await asyncio.sleep(0.05)  # the watcher is registered and waiting
        await asyncio.gather(*(store.create(f"o/{i}", doc(str(i))) for i in range(20)))
        with pytest.raises(WatchOverflow):
            async with asyncio.timeout(5):
                await idle
                async for _ in stream:
                    pass
    finally:
        await store.close()


async def _next(stream: AsyncIterator[Change | Progress]) -> Change | Progress:
    return await anext(stream)


def test_continue_tokens_round_trip_and_reject_garbage() -> None:
    token = encode_continue(42, "registry/core/configmaps/ns/a")
    assert decode_continue(token) == (42, "registry/core/configmaps/ns/a")
    for bad in ("", "!!!", encode_continue(1, "x")[:-4] + "AAAA", "eyJydiI6ICJ4In0"):
        with pytest.raises(ValueError):
            decode_continue(bad)
