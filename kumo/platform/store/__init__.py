"""The Store protocol: versioned key/value storage with watches.

Contract callers may rely on:
- every successful write gets a new global ``revision`` (an int that only grows, also across
  restarts) and the object stored carries it as ``metadata.resourceVersion``;
- a write is acknowledged (its coroutine returns) only after it is durable;
- ``update``/``delete`` with ``expected_revision`` are compare-and-swap: they raise
  ``Conflict`` if the key changed since;
- ``watch(prefix, revision)`` yields every change after ``revision`` exactly once, in revision
  order; a revision older than the compaction point raises ``Gone``;
- objects handed out are fresh copies; ``Entry.obj`` in list results and watch events is
  shared and must be treated as read-only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The key's revision is not the one expected."""

    def __init__(self, message: str, current_revision: int) -> None:
        super().__init__(message)
        self.current_revision = current_revision


class Gone(StoreError):
    """The revision asked for has been compacted away."""

    def __init__(self, message: str, compacted: int) -> None:
        super().__init__(message)
        self.compacted = compacted


class WatchOverflow(StoreError):
    """A watcher fell too far behind; it must resume from its last revision."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    revision: int
    data: bytes  # the JSON document, exactly as stored
    obj: dict[str, Any]  # parsed ``data``; shared, read-only


@dataclass(frozen=True, slots=True)
class Change:
    type: EventType
    key: str
    revision: int
    data: bytes
    obj: dict[str, Any]
    prev: dict[str, Any] | None = None  # the object before this change (None for ADDED)


@dataclass(frozen=True, slots=True)
class Progress:
    """Yielded by a watch with a progress interval when it is idle: every change up to
    ``revision`` under the watched prefix has been delivered (a bookmark)."""

    revision: int


@dataclass(slots=True)
class ListResult:
    items: list[Entry]
    revision: int
    continue_key: str | None = None  # last key returned when more remain
    remaining: int | None = None


Predicate = Callable[[dict[str, Any]], bool]


@dataclass(slots=True)
class Stats:
    objects: int = 0
    revision: int = 0
    compacted: int = 0
    watchers: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Store(Protocol):
    @property
    def revision(self) -> int:
        """The latest committed revision."""

    @property
    def compacted_revision(self) -> int:
        """Watches and paged lists must start at or after this revision."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 0,
        start_after: str | None = None,
        revision: int | None = None,
        predicate: Predicate | None = None,
    ) -> ListResult:
        """Keys under ``prefix`` in key order; ``revision`` asks for the state at an older
        revision (paging consistency), which raises ``Gone`` once compacted."""

    async def create(self, key: str, obj: dict[str, Any]) -> dict[str, Any]: ...

    async def update(
        self, key: str, obj: dict[str, Any], expected_revision: int | None = None
    ) -> dict[str, Any]: ...

    async def delete(self, key: str, expected_revision: int | None = None) -> dict[str, Any]:
        """Returns the object as it was, with the deletion's revision."""

    def watch(
        self, prefix: str, revision: int, progress_interval: float | None = None
    ) -> AsyncIterator[Change | Progress]:
        """Changes after ``revision``; raises ``Gone`` on first iteration if compacted. With
        ``progress_interval``, an idle watch yields ``Progress`` that often."""

    async def compact(self, revision: int) -> None: ...

    async def stats(self) -> Stats: ...

    async def close(self) -> None: ...
