"""Shared informers: one list + watch per kind, a local indexed cache, event handlers.

What callers may rely on:
- after ``has_synced``, the cache holds every object of the kind as of some resourceVersion
  at or after the first list, and follows the watch from there;
- handlers run in the informer's task, in event order, after the cache has been updated, so a
  handler (and anything it enqueues) sees the cache at least as new as the event;
- a watch that ends is resumed from the last resourceVersion seen (BOOKMARK events keep it
  fresh); a 410 Gone (or a resourceVersion the server does not know) triggers a re-list, whose
  differences against the cache are delivered as add / update / delete events;
- ``last_resource_version`` only grows while the store's revision history is intact; as kumo's
  resourceVersion is one global revision, ``synced_to(rv)`` tells whether the cache has seen
  every change of this kind up to ``rv``.

Objects are raw API dicts and must be treated as read-only.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import httpx

from kumo.client import ApiException, AsyncClient, RawEvent
from kumo.model.base import Resource
from kumo.model.registry import ResourceInfo, for_model

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]


def object_key(obj: Obj) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = str(meta.get("name") or "")
    return f"{namespace}/{name}" if namespace else name


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name); the namespace is "" for cluster-scoped keys."""
    namespace, _, name = key.rpartition("/")
    return namespace, name


def resource_version(obj: Obj) -> int:
    text = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(text or 0)
    except (TypeError, ValueError):
        return 0


def by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def by_owner_uid(obj: Obj) -> list[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [str(ref.get("uid")) for ref in refs if isinstance(ref, dict) and ref.get("uid")]


NAMESPACE_INDEX = "namespace"
OWNER_UID_INDEX = "owner-uid"


class Indexer:
    """The informer's cache: objects by key plus secondary indexes (index name -> value ->
    keys)."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {NAMESPACE_INDEX: by_namespace}
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}

    def add_index(self, name: str, func: IndexFunc) -> None:
        if name in self._index_funcs:
            return
        self._index_funcs[name] = func
        index: dict[str, set[str]] = {}
        for key, obj in self._items.items():
            for value in func(obj):
                index.setdefault(value, set()).add(key)
        self._indices[name] = index

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def list(self, namespace: str | None = None) -> builtins.list[Obj]:
        if namespace is None:
            return list(self._items.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        keys = self._indices[name].get(value, ())
        return [self._items[key] for key in keys]

    def __len__(self) -> int:
        return len(self._items)

    def upsert(self, key: str, obj: Obj) -> Obj | None:
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, func in self._index_funcs.items():
            for value in func(obj):
                self._indices[name].setdefault(value, set()).add(key)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._index_funcs.items():
            index = self._indices[name]
            for value in func(obj):
                members = index.get(value)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del index[value]


@dataclass(slots=True)
class EventHandler:
    """Callbacks; each is optional. They must be quick (typically: enqueue a key)."""

    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None

    @classmethod
    def for_each(cls, callback: Callable[[Obj], None]) -> EventHandler:
        """``callback`` with the object on add, update (the new version) and delete."""
        return cls(on_add=callback, on_update=lambda old, new: callback(new), on_delete=callback)


@dataclass(slots=True)
class InformerStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    errors: int = 0


class SharedInformer:
    """List + watch of one kind (all namespaces, or one) into an ``Indexer``."""

    def __init__(
        self,
        client: AsyncClient,
        info: ResourceInfo,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = 500,
        watch_timeout: tuple[int, int] = (300, 600),
        min_backoff: float = 0.2,
        max_backoff: float = 5.0,
        idle_timeout: float = 150.0,
    ) -> None:
        self.client = client
        self.info = info
        self.namespace = namespace if info.namespaced else None
        self.label_selector = label_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.idle_timeout = idle_timeout
        self.indexer = Indexer()
        self.stats = InformerStats()
        self.last_resource_version = ""
        self._handlers: builtins.list[EventHandler] = []
        self._revision_waiters: builtins.list[tuple[int, asyncio.Future[None]]] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SharedInformer({self.info.group_resource})"

    # ---- reading ----------------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> Obj | None:
        if self.info.namespaced:
            return self.indexer.get(f"{namespace}/{name}")
        return self.indexer.get(name)

    def list(self, namespace: str | None = None) -> builtins.list[Obj]:
        return self.indexer.list(namespace)

    def add_index(self, name: str, func: IndexFunc) -> None:
        self.indexer.add_index(name, func)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        return self.indexer.by_index(name, value)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    def synced_to(self, revision: int) -> bool:
        """Whether every change of this kind up to ``revision`` is in the cache."""
        return self.has_synced and int(self.last_resource_version or 0) >= revision

    async def wait_synced_to(self, revision: int) -> None:
        """Until ``synced_to(revision)``: after writing an object of this kind, wait with its
        new resourceVersion to read your own write from the cache. (For a revision of another
        kind this may take until the next bookmark.)"""
        if self.synced_to(revision):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._revision_waiters.append((revision, waiter))
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def _set_version(self, version: str) -> None:
        self.last_resource_version = version
        if not self._revision_waiters or not self.has_synced:
            return
        current = int(version or 0)
        pending = []
        for revision, waiter in self._revision_waiters:
            if waiter.done():
                continue
            if revision <= current:
                waiter.set_result(None)
            else:
                pending.append((revision, waiter))
        self._revision_waiters = pending

    # ---- handlers ---------------------------------------------------------------------------

    def add_event_handler(self, handler: EventHandler) -> None:
        """Register callbacks. A handler added after the first list gets ``on_add`` for every
        cached object at once, so late handlers see the same world as early ones."""
        self._handlers.append(handler)
        if self.has_synced and handler.on_add is not None:
            for obj in self.indexer.list():
                self._call(handler.on_add, obj)

    def _call(self, func: Callable[..., None], *args: Obj) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("%r: event handler failed", self)

    def _added(self, obj: Obj) -> None:
        for handler in self._handlers:
            if handler.on_add is not None:
                self._call(handler.on_add, obj)

    def _updated(self, old: Obj, new: Obj) -> None:
        for handler in self._handlers:
            if handler.on_update is not None:
                self._call(handler.on_update, old, new)

    def _deleted(self, obj: Obj) -> None:
        for handler in self._handlers:
            if handler.on_delete is not None:
                self._call(handler.on_delete, obj)

    # ---- running ----------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"informer {self.info.group_resource}"
            )
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """List, then watch, forever; see the module docstring for the recovery rules."""
        needs_list = True
        backoff = self.min_backoff
        while True:
            try:
                if needs_list:
                    await self._list()
                    needs_list = False
                await self._watch()
                backoff = self.min_backoff
                continue
            except ApiException as exc:
                self.stats.errors += 1
                if exc.gone or exc.code == 504:
                    # The resourceVersion is compacted away (or unknown): start over.
                    log.info("%r: %s; listing again", self, exc.message)
                    needs_list = True
                    continue
                log.warning("%r: %s; retrying in %.1fs", self, exc, backoff)
            except (httpx.HTTPError, OSError, json.JSONDecodeError, TimeoutError) as exc:
                self.stats.errors += 1
                log.info("%r: %s: %s; retrying in %.1fs", self, type(exc).__name__, exc, backoff)
            except Exception:
                # Not expected; start from a clean list rather than die and never sync.
                self.stats.errors += 1
                log.exception("%r: unexpected error; listing again in %.1fs", self, backoff)
                needs_list = True
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.max_backoff)

    async def _list(self) -> None:
        items: builtins.list[Obj] = []
        token: str | None = None
        version = ""
        while True:
            page = await self.client.list_raw(
                self.info,
                self.namespace,
                all_namespaces=self.namespace is None,
                label_selector=self.label_selector,
                limit=self.page_size,
                continue_token=token,
            )
            items.extend(page.get("items") or [])
            version = version or str((page.get("metadata") or {}).get("resourceVersion") or "")
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        self.stats.lists += 1
        self._replace(items, version)

    def _replace(self, items: builtins.list[Obj], version: str) -> None:
        fresh: dict[str, Obj] = {}
        for obj in items:
            obj.setdefault("apiVersion", self.info.api_version)
            obj.setdefault("kind", self.info.kind)
            fresh[object_key(obj)] = obj
        for key in self.indexer.keys():  # noqa: SIM118 (a copy: we remove while iterating)
            if key not in fresh:
                old = self.indexer.remove(key)
                if old is not None:
                    self._deleted(old)
        for key, obj in fresh.items():
            old = self.indexer.upsert(key, obj)
            if old is None:
                self._added(obj)
            elif resource_version(old) != resource_version(obj):
                self._updated(old, obj)
        self._synced.set()
        self._set_version(version)

    async def _watch(self) -> None:
        self.stats.watches += 1
        low, high = self.watch_timeout
        events = self.client.watch_raw(
            self.info,
            self.namespace,
            all_namespaces=self.namespace is None,
            resource_version=self.last_resource_version,
            label_selector=self.label_selector,
            timeout_seconds=random.randint(low, high),
            bookmarks=True,
        )
        loop = asyncio.get_running_loop()
        async with contextlib.aclosing(cast(AsyncGenerator[RawEvent, None], events)):
            # Bookmarks arrive while the stream is idle, so a long silence means the connection
            # is dead even if TCP has not noticed. The deadline moves with the events, but not
            # on every one (a timer per event costs more than the event): a silence of at least
            # 90% of ``idle_timeout`` ends the watch.
            step = min(1.0, self.idle_timeout / 10)
            async with asyncio.timeout(self.idle_timeout) as idle:
                moved = loop.time()
                while True:
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        return
                    now = loop.time()
                    if now - moved >= step:
                        idle.reschedule(now + self.idle_timeout)
                        moved = now
                    self._apply(event.type, event.object)

    def _apply(self, kind: str, obj: Obj) -> None:
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
            if version:
                self._set_version(version)
            return
        self.stats.events += 1
        key = object_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            old = self.indexer.upsert(key, obj)
            if version:
                self._set_version(version)
            if old is None:
                self._added(obj)
            else:
                self._updated(old, obj)
        elif kind == "DELETED":
            old = self.indexer.remove(key)
            if version:
                self._set_version(version)
            if old is not None:
                self._deleted(obj)
        else:
            log.warning("%r: unexpected watch event type %r", self, kind)


class InformerFactory:
    """One ``SharedInformer`` per kind, shared by every controller of a manager."""

    def __init__(self, client: AsyncClient, **informer_options: Any) -> None:
        self.client = client
        self.options = informer_options
        self._informers: dict[tuple[str, str], SharedInformer] = {}

    def informer(self, kind: ResourceInfo | type[Resource]) -> SharedInformer:
        info = kind if isinstance(kind, ResourceInfo) else for_model(kind)
        key = (info.api_version, info.kind)
        found = self._informers.get(key)
        if found is None:
            found = SharedInformer(self.client, info, **self.options)
            self._informers[key] = found
        return found

    @property
    def informers(self) -> builtins.list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer asked for so far (idempotent; call again after adding more)."""
        for informer in self._informers.values():
            informer.start()

    @property
    def has_synced(self) -> bool:
        return all(i.has_synced for i in self._informers.values())

    async def wait_for_sync(self) -> None:
        await asyncio.gather(*(i.wait_for_sync() for i in self._informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
