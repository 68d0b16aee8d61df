"""The SQLite store's batched watch: the changes committed together arrive together, in
revision order, each once; the per-change ``watch`` sees the same sequence."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kumo.platform.store import Change, Progress
from kumo.platform.store.sqlite import SQLiteStore

PREFIX = "registry/core/configmaps/ns/"


async def test_changes_committed_together_arrive_as_one_batch_in_order(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "store.db")
    try:
        start = store.revision
        batches = store.watch_batches(PREFIX, start)
        single = store.watch(PREFIX, start)
        first = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0)
        # 30 writes in flight at once: one group commit (or a few), far fewer batches than writes.
        await asyncio.gather(
            *(
                store.create(f"{PREFIX}cm-{i:02d}", {"metadata": {"name": f"cm-{i:02d}"}})
                for i in range(30)
            )
        )
        await store.update(f"{PREFIX}cm-00", {"metadata": {"name": "cm-00"}, "data": {"a": "b"}})
        seen: list[Change] = []
        got = await first
        rounds = 1
        while True:
            assert not isinstance(got, Progress)
            seen.extend(got)
            if len(seen) >= 31:
                break
            got = await anext(batches)
            rounds += 1
        assert rounds < 31
        assert [c.revision for c in seen] == list(range(start + 1, start + 32))
        assert [c.type for c in seen] == ["ADDED"] * 30 + ["MODIFIED"]
        one_by_one = [await anext(single) for _ in range(31)]
        assert [(c.revision, c.key) for c in one_by_one] == [(c.revision, c.key) for c in seen]  # type: ignore[union-attr]
        await batches.aclose()  # type: ignore[attr-defined]
        await single.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_a_resumed_batched_watch_replays_history_first(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "store.db")
    try:
        start = store.revision
        for i in range(5):
            await store.create(f"{PREFIX}cm-{i}", {"metadata": {"name": f"cm-{i}"}})
        batches = store.watch_batches(PREFIX, start + 2)
        history = await anext(batches)
        assert not isinstance(history, Progress)
        assert [c.revision for c in history] == [start + 3, start + 4, start + 5]
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()
