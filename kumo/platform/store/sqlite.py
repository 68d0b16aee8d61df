"""SQLite backend of the Store protocol.

Durability: WAL with synchronous=FULL; a write's coroutine returns only after its
transaction committed. One writer thread takes every queued write in one transaction
(group commit), so 50 concurrent writers cost one fsync per batch, not one each.

Reads are served from an in-memory copy of the current state that is updated, in revision
order, after each commit. History (watches from an old revision, paged lists at an old
revision) comes from a ring of recent changes or from the ``changes`` table, an MVCC log that
keeps every change after the compaction point and the latest change of each key before it.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from sortedcontainers import SortedDict

from kumo.platform.store import (
    AlreadyExists,
    Change,
    Conflict,
    Entry,
    EventType,
    Gone,
    ListResult,
    NotFound,
    Predicate,
    Progress,
    Stats,
    StoreError,
    WatchOverflow,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,
    rv INTEGER NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    rv INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_key_rv ON changes(key, rv);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_END = "\U0010ffff"


class Transformer(Protocol):
    """What the bytes of a value look like on disk (``kumo.platform.store.encryption``
    encrypts Secrets). The in-memory state, watches and reads see ``data``; only what SQLite
    writes, in both tables, is ``to_disk(key, data)``."""

    def to_disk(self, key: str, data: bytes) -> bytes: ...

    def from_disk(self, key: str, blob: bytes) -> bytes: ...

    def stale(self, key: str, blob: bytes) -> bool:
        """Whether ``blob`` should be rewritten (``SQLiteStore.retransform``)."""
        ...


class _Identity:
    def to_disk(self, key: str, data: bytes) -> bytes:
        return data

    def from_disk(self, key: str, blob: bytes) -> bytes:
        return blob

    def stale(self, key: str, blob: bytes) -> bool:
        return False


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass(slots=True)
class _Write:
    kind: str  # "create" | "update" | "delete" | "compact" | "retransform"
    key: str
    obj: dict[str, Any] | None
    expected: int | None
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Outcome:
    write: _Write
    change: tuple[EventType, int, bytes] | None = None
    error: Exception | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A change as the history ring keeps it: bytes only. Parsed, the old versions would
    stay alive as many small containers that every full garbage collection walks, for the
    rare watcher that resumes from history."""

    type: EventType
    key: str
    revision: int
    data: bytes
    prev: bytes | None

    def change(self) -> Change:
        prev = orjson.loads(self.prev) if self.prev is not None else None
        return Change(self.type, self.key, self.revision, self.data, orjson.loads(self.data), prev)


@dataclass(eq=False, slots=True)
class _Watcher:
    prefix: str
    limit: int
    pending: deque[Change] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return
        if len(self.pending) >= self.limit:
            self.overflowed = True
            self.pending.clear()
        else:
            self.pending.append(change)
        self.wakeup.set()


class SQLiteStore:
    """See ``kumo.platform.store.Store``. Create with ``await SQLiteStore.open(path)``."""

    def __init__(
        self,
        path: Path,
        *,
        watch_buffer: int = 100_000,
        history_size: int = 20_000,
        transformer: Transformer | None = None,
    ) -> None:
        self._path = path
        self._transformer: Transformer = transformer or _Identity()
        self._watch_buffer = watch_buffer
        self._cache: SortedDict[str, Entry] = SortedDict()
        self._revision = 0
        self._compacted = 0
        self._ring: deque[_Recorded] = deque(maxlen=history_size)
        self._ring_floor = 0
        self._watchers: set[_Watcher] = set()
        self._observers: builtins.list[tuple[str, Callable[[Change], None]]] = []
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # writer-thread state
        self._w_revisions: dict[str, int] = {}
        self._w_revision = 0
        self.batches = 0
        self.batched_writes = 0
        # The revision of the last change under each two-segment prefix ("registry/apps/"),
        # so caches over a prefix (RBAC rules) can tell cheaply whether anything changed.
        self._prefix_revisions: dict[str, int] = {}

    @classmethod
    async def open(cls, path: str | os.PathLike[str], **options: Any) -> SQLiteStore:
        store = cls(Path(path), **options)
        await asyncio.to_thread(store._load)
        store._loop = asyncio.get_running_loop()
        store._writer = threading.Thread(
            target=store._writer_main, name="kumo-store-writer", daemon=True
        )
        store._writer.start()
        return store

    # ---- startup ------------------------------------------------------------------

    def _load(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self._path)
        try:
            conn.executescript(_SCHEMA)
            rows = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            self._revision = int(rows.get("revision", 0))
            self._compacted = int(rows.get("compacted", 0))
            for key, rv, data in conn.execute("SELECT key, rv, data FROM objects"):
                blob = self._transformer.from_disk(key, bytes(data))
                self._cache[key] = Entry(key, rv, blob, orjson.loads(blob))
                self._w_revisions[key] = rv
                bucket = _bucket(key)
                self._prefix_revisions[bucket] = max(rv, self._prefix_revisions.get(bucket, 0))
        finally:
            conn.close()
        self._w_revision = self._revision
        self._ring_floor = self._revision

    # ---- properties -----------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    # ---- reads --------------------------------------------------------------------------

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._cache.get(key)
        return None if entry is None else orjson.loads(entry.data)

    def get_entry(self, key: str) -> Entry | None:
        entry: Entry | None = self._cache.get(key)
        return entry

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        revision: int | None = None,
        predicate: Predicate | None = None,
    ) -> ListResult:
        if revision is not None and revision != self._revision:
            if revision > self._revision:
                raise StoreError(f"revision {revision} is newer than the store's {self._revision}")
            return await self._list_at(prefix, limit, start_after, revision, predicate)
        items: builtins.list[Entry] = []
        keys = self._cache.irange(
            start_after if start_after is not None else prefix,
            prefix + _END,
            inclusive=(start_after is None, False),
        )
        last: str | None = None
        more = False
        for key in keys:
            entry = self._cache[key]
            if predicate is not None and not predicate(entry.obj):
                continue
            if limit and len(items) >= limit:
                more = True
                break
            items.append(entry)
            last = key
        result = ListResult(items, self._revision)
        if more and last is not None:
            result.continue_key = last
            if predicate is None:
                lo = self._cache.bisect_right(last)
                hi = self._cache.bisect_left(prefix + _END)
                result.remaining = hi - lo
        return result

    async def _list_at(
        self,
        prefix: str,
        limit: int,
        start_after: str | None,
        revision: int,
        predicate: Predicate | None,
    ) -> ListResult:
        if revision < self._compacted:
            raise Gone(
                f"revision {revision} has been compacted (oldest is {self._compacted})",
                self._compacted,
            )

        def read() -> tuple[builtins.list[Entry], bool]:
            # Rows stream in key order and stop one match past the page: a page of a big
            # list does not read the rest of it. One statement is one consistent snapshot.
            conn = _connect(self._path)
            try:
                lower = "c.key > ?" if start_after is not None else "c.key >= ?"
                sql = f"""SELECT c.key, c.rv, c.type, c.data FROM changes c
                           WHERE {lower} AND c.key < ?
                             AND c.rv = (SELECT MAX(rv) FROM changes WHERE key = c.key AND rv <= ?)
                           ORDER BY c.key"""
                start = start_after if start_after is not None else prefix
                found: builtins.list[Entry] = []
                for key, rv, kind, raw in conn.execute(sql, (start, prefix + _END, revision)):
                    if kind == "DELETED" or not key.startswith(prefix):
                        continue
                    data = self._transformer.from_disk(key, bytes(raw))
                    obj = orjson.loads(data)
                    if predicate is not None and not predicate(obj):
                        continue
                    if limit and len(found) >= limit:
                        return found, True
                    found.append(Entry(key, rv, data, obj))
                return found, False
            finally:
                conn.close()

        items, more = await asyncio.to_thread(read)
        if revision < self._compacted:
            raise Gone(
                f"revision {revision} has been compacted (oldest is {self._compacted})",
                self._compacted,
            )
        result = ListResult(items, revision)
        if more and items:
            result.continue_key = items[-1].key
        return result

    # ---- writes -------------------------------------------------------------------------

    async def _submit(
        self, kind: str, key: str, obj: dict[str, Any] | None, expected: int | None
    ) -> Any:
        if self._closed:
            raise StoreError("store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writes.put(_Write(kind, key, obj, expected, future))
        return await asyncio.shield(future)

    async def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._submit("create", key, obj, None)
        return result

    async def update(
        self, key: str, obj: dict[str, Any], expected_revision: int | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._submit("update", key, obj, expected_revision)
        return result

    async def delete(self, key: str, expected_revision: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._submit("delete", key, None, expected_revision)
        return result

    async def compact(self, revision: int) -> None:
        await self._submit("compact", "", None, revision)

    @property
    def transformer(self) -> Transformer:
        return self._transformer

    def set_transformer(self, transformer: Transformer) -> None:
        """Writes committed from now on use ``transformer`` (it must still read every value
        on disk; see ``retransform``)."""
        self._transformer = transformer

    async def retransform(self, prefix: str) -> int:
        """Rewrite what is stored under ``prefix`` that the transformer calls stale (after a
        key rotation, with the new write key); the number of rows rewritten. Runs between
        write batches, so no write interleaves with it."""
        result: int = await self._submit("retransform", prefix, None, None)
        return result

    async def stored_bytes(self, prefix: str) -> builtins.list[tuple[str, str, bytes]]:
        """(table, key, bytes on disk) of every row under ``prefix`` in both tables: what
        key rotation reports on and tests inspect."""

        def read() -> builtins.list[tuple[str, str, bytes]]:
            conn = _connect(self._path)
            try:
                out: builtins.list[tuple[str, str, bytes]] = []
                for table in ("objects", "changes"):
                    rows = conn.execute(
                        f"SELECT key, data FROM {table} WHERE key >= ? AND key < ?",
                        (prefix, prefix + _END),
                    )
                    out.extend((table, key, bytes(data)) for key, data in rows)
                return out
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    # ---- the writer thread ------------------------------------------------------------------

    def _writer_main(self) -> None:
        conn = _connect(self._path)
        try:
            while True:
                first = self._writes.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < 1000:
                    try:
                        nxt = self._writes.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                upkeep = [w for w in batch if w.kind in ("compact", "retransform")]
                writes = [w for w in batch if w.kind not in ("compact", "retransform")]
                if writes:
                    self._commit(conn, writes)
                for write in upkeep:
                    if write.kind == "compact":
                        self._compact(conn, write)
                    else:
                        self._retransform(conn, write)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: builtins.list[_Write]) -> None:
        revision = self._w_revision
        staged: dict[str, int | None] = {}
        outcomes: builtins.list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write in batch:
                current = (
                    staged[write.key] if write.key in staged else self._w_revisions.get(write.key)
                )
                if write.kind == "create":
                    if current is not None:
                        outcomes.append(_Outcome(write, error=AlreadyExists(write.key)))
                        continue
                elif current is None:
                    outcomes.append(_Outcome(write, error=NotFound(write.key)))
                    continue
                elif write.expected is not None and write.expected != current:
                    outcomes.append(
                        _Outcome(
                            write,
                            error=Conflict(
                                f"{write.key}: expected revision {write.expected}, found {current}",
                                current,
                            ),
                        )
                    )
                    continue
                revision += 1
                if write.kind == "delete":
                    row = conn.execute(
                        "SELECT data FROM objects WHERE key = ?", (write.key,)
                    ).fetchone()
                    last = orjson.loads(self._transformer.from_disk(write.key, bytes(row[0])))
                    last.setdefault("metadata", {})["resourceVersion"] = str(revision)
                    data = orjson.dumps(last)
                    conn.execute("DELETE FROM objects WHERE key = ?", (write.key,))
                    conn.execute(
                        "INSERT INTO changes (rv, key, type, data) VALUES (?, ?, 'DELETED', ?)",
                        (revision, write.key, self._transformer.to_disk(write.key, data)),
                    )
                    staged[write.key] = None
                    outcomes.append(_Outcome(write, change=("DELETED", revision, data)))
                    continue
                assert write.obj is not None
                obj = dict(write.obj)
                obj["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(revision)}
                data = orjson.dumps(obj)
                kind: EventType = "ADDED" if write.kind == "create" else "MODIFIED"
                stored = self._transformer.to_disk(write.key, data)
                conn.execute(
                    "INSERT OR REPLACE INTO objects (key, rv, data) VALUES (?, ?, ?)",
                    (write.key, revision, stored),
                )
                conn.execute(
                    "INSERT INTO changes (rv, key, type, data) VALUES (?, ?, ?, ?)",
                    (revision, write.key, kind, stored),
                )
                staged[write.key] = revision
                outcomes.append(_Outcome(write, change=(kind, revision, data)))
            if revision != self._w_revision:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('revision', ?)", (revision,)
                )
            conn.execute("COMMIT")
        except Exception as exc:  # the disk failed us: nothing of this batch happened
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.exception("store commit failed")
            failed = [_Outcome(w, error=StoreError(f"write failed: {exc}")) for w in batch]
            self._post(failed)
            return
        for key, rv in staged.items():
            if rv is None:
                self._w_revisions.pop(key, None)
            else:
                self._w_revisions[key] = rv
        self._w_revision = revision
        self.batches += 1
        self.batched_writes += len(batch)
        self._post(outcomes)

    def _compact(self, conn: sqlite3.Connection, write: _Write) -> None:
        target = min(write.expected or 0, self._w_revision)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                """DELETE FROM changes WHERE rv <= :c AND (type = 'DELETED' OR rv <
                     (SELECT MAX(c2.rv) FROM changes c2 WHERE c2.key = changes.key AND c2.rv <= :c))""",
                {"c": target},
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?)", (target,)
            )
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._post([_Outcome(write, error=StoreError(f"compaction failed: {exc}"))])
            return
        self._post([_Outcome(write, change=None)], compacted=target)

    def _retransform(self, conn: sqlite3.Connection, write: _Write) -> None:
        """Rewrite, in place and in one transaction, every stored value under the prefix that
        the transformer calls stale (both tables; revisions and the cache do not change)."""
        prefix = write.key
        transformer = self._transformer
        rewritten = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for table, ident in (("objects", "key"), ("changes", "rv")):
                rows = conn.execute(
                    f"SELECT {ident}, key, data FROM {table} WHERE key >= ? AND key < ?",
                    (prefix, prefix + _END),
                ).fetchall()
                for row_id, key, data in rows:
                    blob = bytes(data)
                    if not transformer.stale(key, blob):
                        continue
                    fresh = transformer.to_disk(key, transformer.from_disk(key, blob))
                    conn.execute(
                        f"UPDATE {table} SET data = ? WHERE {ident} = ?",
                        (fresh, row_id),
                    )
                    rewritten += 1
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.warning("rewriting stored values under %s failed: %s", prefix, exc)
            self._post([_Outcome(write, error=StoreError(f"rewrite failed: {exc}"))])
            return
        self._post([_Outcome(write, result=rewritten)])

    def _post(self, outcomes: builtins.list[_Outcome], compacted: int | None = None) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._apply, outcomes, compacted)

    # ---- back on the event loop ------------------------------------------------------------

    def _apply(self, outcomes: builtins.list[_Outcome], compacted: int | None) -> None:
        if compacted is not None:
            self._compacted = max(self._compacted, compacted)
        for outcome in outcomes:
            write = outcome.write
            if outcome.error is not None:
                if not write.future.done():
                    write.future.set_exception(outcome.error)
                continue
            if outcome.change is None:
                if not write.future.done():
                    write.future.set_result(outcome.result)
                continue
            kind, revision, data = outcome.change
            obj = orjson.loads(data)
            previous = self._cache.get(write.key)
            change = Change(
                kind, write.key, revision, data, obj, previous.obj if previous else None
            )
            if kind == "DELETED":
                self._cache.pop(write.key, None)
            else:
                self._cache[write.key] = Entry(write.key, revision, data, obj)
            self._revision = revision
            self._prefix_revisions[_bucket(write.key)] = revision
            if len(self._ring) == self._ring.maxlen:
                self._ring_floor = self._ring[0].revision
            self._ring.append(
                _Recorded(kind, write.key, revision, data, previous.data if previous else None)
            )
            for prefix, observer in self._observers:
                if write.key.startswith(prefix):
                    try:
                        observer(change)
                    except Exception:
                        log.exception("store observer of %s failed on %s", prefix, write.key)
            for watcher in self._watchers:
                if write.key.startswith(watcher.prefix):
                    watcher.offer(change)
            if not write.future.done():
                write.future.set_result(orjson.loads(data))

    def observe(self, prefix: str, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` with every change under ``prefix`` as it reaches the in-memory
        state, before any watcher sees it: an index kept by the callback agrees with
        ``get_entry`` at every moment. The callback runs on the event loop; it must be quick
        and must not write. Returns the function that stops the calls."""
        subscription = (prefix, callback)
        self._observers.append(subscription)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(subscription)

        return stop

    # ---- watch --------------------------------------------------------------------------

    async def watch(
        self, prefix: str, revision: int, progress_interval: float | None = None
    ) -> AsyncIterator[Change | Progress]:
        batches = self.watch_batches(prefix, revision, progress_interval)
        try:
            async for batch in batches:
                if isinstance(batch, Progress):
                    yield batch
                else:
                    for change in batch:
                        yield change
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def watch_batches(
        self, prefix: str, revision: int, progress_interval: float | None = None
    ) -> AsyncIterator[builtins.list[Change] | Progress]:
        """``watch``, with the changes that are ready at one wakeup together in one list (in
        order), so a consumer can pass them on in one piece."""
        if revision < self._compacted:
            raise Gone(f"too old resource version: {revision} ({self._compacted})", self._compacted)
        watcher = _Watcher(prefix, self._watch_buffer)
        self._watchers.add(watcher)
        current = self._revision
        try:
            if revision < current:
                history = await self._history(prefix, revision, current)
                for start in range(0, len(history), 1000):
                    yield history[start : start + 1000]
            while True:
                if progress_interval is None:
                    await watcher.wakeup.wait()
                else:
                    try:
                        async with asyncio.timeout(progress_interval):  # no task per wait
                            await watcher.wakeup.wait()
                    except TimeoutError:
                        if not watcher.pending and not watcher.overflowed:
                            # Nothing is queued, so every change up to here was delivered.
                            yield Progress(self._revision)
                        continue
                watcher.wakeup.clear()
                if watcher.overflowed:
                    raise WatchOverflow("watcher fell behind; resume from the last revision seen")
                if watcher.pending:
                    batch = builtins.list(watcher.pending)
                    watcher.pending.clear()
                    yield batch
                    if watcher.overflowed:
                        raise WatchOverflow(
                            "watcher fell behind; resume from the last revision seen"
                        )
        finally:
            self._watchers.discard(watcher)

    async def _history(self, prefix: str, after: int, upto: int) -> builtins.list[Change]:
        if after >= self._ring_floor:
            return [
                r.change()
                for r in self._ring
                if after < r.revision <= upto and r.key.startswith(prefix)
            ]

        def read() -> builtins.list[Change]:
            conn = _connect(self._path)
            try:
                rows = conn.execute(
                    """SELECT rv, key, type, data,
                         (SELECT p.data FROM changes p WHERE p.key = c.key AND p.rv < c.rv
                          ORDER BY p.rv DESC LIMIT 1)
                       FROM changes c WHERE rv > ? AND rv <= ? AND key >= ? AND key < ?
                       ORDER BY rv""",
                    (after, upto, prefix, prefix + _END),
                ).fetchall()
            finally:
                conn.close()
            out = []
            decode = self._transformer.from_disk
            for rv, key, kind, data, prev in rows:
                prev_obj = (
                    orjson.loads(decode(key, bytes(prev)))
                    if prev is not None and kind != "ADDED"
                    else None
                )
                blob = decode(key, bytes(data))
                out.append(Change(kind, key, rv, blob, orjson.loads(blob), prev_obj))
            return out

        changes = await asyncio.to_thread(read)
        if after < self._compacted:
            raise Gone(f"too old resource version: {after} ({self._compacted})", self._compacted)
        return changes

    # ---- upkeep ---------------------------------------------------------------------------

    async def stats(self) -> Stats:
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += (await asyncio.to_thread(os.stat, str(self._path) + suffix)).st_size
        return Stats(
            objects=len(self._cache),
            revision=self._revision,
            compacted=self._compacted,
            watchers=len(self._watchers),
            extra={
                "db_bytes": float(size),
                "batches": float(self.batches),
                "batched_writes": float(self.batched_writes),
            },
        )

    def entries(self, prefix: str) -> builtins.list[Entry]:
        """Every current entry under ``prefix``, in key order (from memory)."""
        return [
            self._cache[key]
            for key in self._cache.irange(prefix, prefix + _END, inclusive=(True, False))
        ]

    def prefix_revision(self, prefix: str) -> int:
        """A revision that changes whenever anything under ``prefix`` changes: the revision
        of the last change under the two-segment prefix that holds it (so a change to a
        sibling under the same group may change it too). Cheap; for cache invalidation."""
        if prefix.count("/") == 2 and prefix.endswith("/"):  # exactly one bucket
            return self._prefix_revisions.get(prefix, 0)
        found = 0
        for bucket, revision in self._prefix_revisions.items():
            if (bucket.startswith(prefix) or prefix.startswith(bucket)) and revision > found:
                found = revision
        return found

    def count(self, prefix: str) -> int:
        return int(self._cache.bisect_left(prefix + _END) - self._cache.bisect_left(prefix))

    async def run_compaction(self, interval: float) -> None:
        """Every ``interval`` seconds, compact away history older than one interval."""
        previous = self._revision
        while True:
            await asyncio.sleep(interval)
            if previous > self._compacted:
                started = time.monotonic()
                await self.compact(previous)
                log.info(
                    "compacted store to revision %d in %.3fs", previous, time.monotonic() - started
                )
            previous = self._revision

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writes.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)


def _bucket(key: str) -> str:
    first, sep, rest = key.partition("/")
    second, sep2, _ = rest.partition("/")
    return f"{first}/{second}/" if sep and sep2 else key


def encode_continue(revision: int, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": revision, "start": key})).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        revision, key = raw["rv"], raw["start"]
        if not isinstance(revision, int) or not isinstance(key, str):
            raise TypeError
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
        raise ValueError("continue key is not valid") from exc
    return revision, key
