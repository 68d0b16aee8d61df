"""Per-key exponential back-off, the way the kubelet delays container restarts and
image pulls.

A key (pod uid + container name) that fails for the first time is retried at once;
after that each retry waits ``initial``, then twice as long, up to ``maximum``. The
wait of the current step is counted from the time of the failure (a container's
``finishedAt``). ``reset`` forgets a key (a container that ran long enough); keys
nobody touched for ``2 * maximum`` seconds are forgotten too, like Kubernetes'
``flowcontrol.Backoff``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(slots=True)
class _Entry:
    delay: float
    updated: float


class Backoff:
    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("back-off needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}

    def _entry(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.updated > 2 * self.maximum:
            del self._entries[key]
            return None
        return entry

    def delay(self, key: Hashable) -> float:
        """The current wait of ``key`` (0 when it has none)."""
        entry = self._entry(key)
        return entry.delay if entry else 0.0

    def in_backoff(self, key: Hashable, since: float) -> bool:
        """Whether a retry must still wait: the failure at ``since`` (epoch seconds) was
        less than the current delay ago."""
        entry = self._entry(key)
        return entry is not None and self._clock() - since < entry.delay

    def retry_at(self, key: Hashable, since: float) -> float:
        """When the wait for the failure at ``since`` ends (epoch seconds)."""
        return since + self.delay(key)

    def next(self, key: Hashable) -> float:
        """Record a retry: the first retry of a key sets the delay to ``initial``, each
        later one doubles it (up to ``maximum``). Returns the new delay."""
        now = self._clock()
        entry = self._entry(key)
        if entry is None:
            entry = _Entry(self.initial, now)
            self._entries[key] = entry
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.updated = now
        return entry.delay

    def reset(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def forget(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drop every key for which ``predicate`` is true (e.g. keys of a removed pod)."""
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]
