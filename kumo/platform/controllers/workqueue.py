"""A deduplicating, delaying, rate-limited queue of keys for controller workers.

Semantics callers may rely on (the same as client-go's workqueue):
- a key is handed to at most one worker at a time;
- adding a key that is already waiting does nothing; adding a key that a worker is processing
  marks it dirty, and it is queued again when the worker calls ``done(key)``;
- ``add_after(key, delay)`` adds the key once the delay has passed; of several pending delayed
  adds for one key the earliest wins;
- ``add_rate_limited(key)`` adds after a per-key exponential backoff (``forget(key)`` resets it);
- after ``shut_down()``, ``get()`` raises ``QueueShutDown`` once the queue is empty (or at once
  when ``drain=False``), and later adds are ignored.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """The queue was shut down; the worker should exit."""


@dataclass(slots=True)
class ExponentialBackoff(Generic[K]):
    """Per-key delay: ``base * 2**failures``, capped at ``cap`` seconds."""

    base: float = 0.005
    cap: float = 300.0
    _failures: dict[K, int] = field(default_factory=dict)

    def when(self, key: K) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:  # 2**64 overflows any sensible cap
            return self.cap
        return float(min(self.base * (2**failures), self.cap))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)


@dataclass(slots=True)
class QueueStats:
    adds: int = 0
    retries: int = 0
    processed: int = 0


class WorkQueue(Generic[K]):
    def __init__(self, name: str = "", backoff: ExponentialBackoff[K] | None = None) -> None:
        self.name = name
        self.backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self.stats = QueueStats()
        self._queue: collections.deque[K] = collections.deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False
        self._drain = True

    # ---- adding -----------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue ``key`` unless it is already waiting; see the module docstring."""
        if self._shutting_down or key in self._dirty:
            return
        self.stats.adds += 1
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = time.monotonic() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        handle = loop.call_later(delay, self._fire, key)
        self._waiting[key] = (ready_at, handle)

    def add_rate_limited(self, key: K) -> None:
        self.stats.retries += 1
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        """Stop tracking the key's failures (its next rate-limited add starts from ``base``)."""
        self.backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.backoff.failures(key)

    def _fire(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _wake(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    # ---- taking -----------------------------------------------------------------------------

    async def get(self) -> K:
        """The next key; the caller must call ``done(key)`` when finished with it."""
        while True:
            if self._shutting_down and (not self._drain or not self._queue):
                raise QueueShutDown(self.name)
            if self._queue:
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
                return key
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                # Pass a wake-up we were given on to another worker.
                if getter.done() and not getter.cancelled() and self._queue:
                    self._wake()
                raise

    def done(self, key: K) -> None:
        self.stats.processed += 1
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    # ---- state -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out (not those being processed or delayed)."""
        return len(self._queue)

    @property
    def processing(self) -> int:
        return len(self._processing)

    @property
    def delayed(self) -> int:
        return len(self._waiting)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self, *, drain: bool = False) -> None:
        """Stop accepting keys and wake every waiting worker. With ``drain``, workers get the
        keys already queued before they see ``QueueShutDown``."""
        self._shutting_down = True
        self._drain = drain
        if not drain:
            self._queue.clear()
            self._dirty.clear()
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
