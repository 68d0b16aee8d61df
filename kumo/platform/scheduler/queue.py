"""The scheduling queue: active, backoff and unschedulable pods (Kubernetes' PriorityQueue).

What callers may rely on:
- ``pop`` returns the active pod with the highest priority, oldest first among equals;
- a pod that failed is parked as *unschedulable* with the plugins that rejected it; only a
  cluster event that one of those plugins registered for (``interest``: event -> plugins)
  moves it back — to the backoff queue while its backoff (initial x 2^(attempts-1), capped)
  has not expired, else to the active queue; a pod failing with an error, or rejected by no
  plugin in particular, goes straight to backoff;
- a pod parked longer than ``max_unschedulable`` is retried anyway (Kubernetes'
  podMaxInUnschedulablePodsDuration);
- a pod is in at most one place; ``delete`` removes it wherever it is.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from kumo.platform.scheduler.podinfo import PodInfo

ACTIVE = "active"
BACKOFF = "backoff"
UNSCHEDULABLE = "unschedulable"


@dataclass(eq=False, slots=True)
class QueuedPodInfo:
    pod: PodInfo
    timestamp: float
    attempts: int = 0
    initial_attempt: float | None = None
    unschedulable_plugins: frozenset[str] = field(default_factory=frozenset)
    backoff_expiry: float = 0.0
    where: str = ""
    seq: int = 0


class SchedulingQueue:
    def __init__(
        self,
        *,
        interest: Mapping[str, Iterable[str]] | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interest = {event: frozenset(names) for event, names in (interest or {}).items()}
        self.initial_backoff = initial_backoff
        self.max_backoff = max(max_backoff, initial_backoff)
        self.max_unschedulable = max_unschedulable
        self.clock = clock
        self._active: list[tuple[int, float, int, QueuedPodInfo]] = []
        self._backoff: list[tuple[float, int, QueuedPodInfo]] = []
        self._parked: dict[str, QueuedPodInfo] = {}
        self._parked_at: dict[str, float] = {}
        self._by_plugin: dict[str, set[str]] = {}
        self._queued: dict[str, QueuedPodInfo] = {}  # key -> pod in any of the three
        self._seq = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._next_leftover_check = 0.0
        self.moves = 0

    # ---- sizes -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queued)

    def __contains__(self, key: str) -> bool:
        return key in self._queued

    def where(self, key: str) -> str:
        qpi = self._queued.get(key)
        return qpi.where if qpi is not None else ""

    def counts(self) -> dict[str, int]:
        out = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0}
        for qpi in self._queued.values():
            out[qpi.where] += 1
        return out

    def backoff_duration(self, attempts: int) -> float:
        duration = self.initial_backoff
        for _ in range(1, attempts):
            duration *= 2
            if duration >= self.max_backoff:
                return self.max_backoff
        return duration

    # ---- placing ---------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _push_active(self, qpi: QueuedPodInfo) -> None:
        qpi.where = ACTIVE
        qpi.seq = self._next_seq()
        heapq.heappush(self._active, (-qpi.pod.priority, qpi.timestamp, qpi.seq, qpi))
        self._queued[qpi.pod.key] = qpi
        self._wake.set()

    def _push_backoff(self, qpi: QueuedPodInfo) -> None:
        qpi.where = BACKOFF
        qpi.seq = self._next_seq()
        heapq.heappush(self._backoff, (qpi.backoff_expiry, qpi.seq, qpi))
        self._queued[qpi.pod.key] = qpi
        self._wake.set()

    def _park(self, qpi: QueuedPodInfo) -> None:
        key = qpi.pod.key
        qpi.where = UNSCHEDULABLE
        self._parked[key] = qpi
        self._parked_at[key] = self.clock()
        self._queued[key] = qpi
        for plugin in qpi.unschedulable_plugins:
            self._by_plugin.setdefault(plugin, set()).add(key)

    def _unpark(self, key: str) -> QueuedPodInfo | None:
        qpi = self._parked.pop(key, None)
        if qpi is None:
            return None
        self._parked_at.pop(key, None)
        for plugin in qpi.unschedulable_plugins:
            keys = self._by_plugin.get(plugin)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_plugin[plugin]
        return qpi

    def _remove(self, key: str) -> QueuedPodInfo | None:
        qpi = self._queued.pop(key, None)
        if qpi is None:
            return None
        if qpi.where == UNSCHEDULABLE:
            self._unpark(key)
        qpi.where = ""  # its heap entry, if any, is now stale
        return qpi

    def _requeue(self, qpi: QueuedPodInfo) -> None:
        """Back from unschedulable: to backoff while backing off, else active."""
        self.moves += 1
        if qpi.backoff_expiry > self.clock():
            self._push_backoff(qpi)
        else:
            self._push_active(qpi)

    # ---- the informer's side ---------------------------------------------------------------

    def add(self, pod: PodInfo) -> None:
        """A new pending pod (or one seen again): active at once."""
        if pod.key in self._queued:
            self.update(pod, relevant=False)
            return
        self._push_active(QueuedPodInfo(pod, self.clock()))

    def update(self, pod: PodInfo, *, relevant: bool) -> None:
        """The pending pod changed; ``relevant`` (its spec or labels changed) gives a parked
        pod another try."""
        qpi = self._queued.get(pod.key)
        if qpi is None:
            self.add(pod)
            return
        old_priority = qpi.pod.priority
        qpi.pod = pod
        if qpi.where == ACTIVE and pod.priority != old_priority:
            self._push_active(qpi)  # re-sort; the old entry goes stale
        elif qpi.where == UNSCHEDULABLE and relevant:
            self._unpark(pod.key)
            self._requeue(qpi)

    def delete(self, key: str) -> None:
        self._remove(key)

    # ---- the scheduler's side --------------------------------------------------------------

    def add_unschedulable(self, qpi: QueuedPodInfo, plugins: Iterable[str]) -> None:
        """After a failed attempt: park (rejected by ``plugins``) or back off (no plugin)."""
        if qpi.pod.key in self._queued:
            return  # a newer version arrived meanwhile and is queued already
        now = self.clock()
        qpi.timestamp = now
        qpi.backoff_expiry = now + self.backoff_duration(qpi.attempts)
        qpi.unschedulable_plugins = frozenset(plugins)
        if qpi.unschedulable_plugins:
            self._park(qpi)
        else:
            self._push_backoff(qpi)

    def add_backoff(self, qpi: QueuedPodInfo) -> None:
        """After an error (bind failed, plugin error): retry after the backoff."""
        if qpi.pod.key in self._queued:
            return
        now = self.clock()
        qpi.timestamp = now
        qpi.backoff_expiry = now + self.backoff_duration(qpi.attempts)
        qpi.unschedulable_plugins = frozenset()
        self._push_backoff(qpi)

    def move_for_event(self, event: str) -> int:
        """Requeue parked pods rejected by a plugin interested in ``event``; how many moved."""
        if not self._parked:
            return 0
        plugins = self.interest.get(event)
        if not plugins:
            return 0
        keys: set[str] = set()
        for plugin in plugins:
            found = self._by_plugin.get(plugin)
            if found:
                keys |= found
        for key in keys:
            qpi = self._unpark(key)
            if qpi is not None:
                self._requeue(qpi)
        return len(keys)

    def move_all(self) -> int:
        keys = list(self._parked)
        for key in keys:
            qpi = self._unpark(key)
            if qpi is not None:
                self._requeue(qpi)
        return len(keys)

    def flush(self) -> None:
        """Backoff pods whose time has come go active; pods parked too long are requeued."""
        now = self.clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, qpi = heapq.heappop(self._backoff)
            if qpi.where == BACKOFF and qpi.seq == seq:
                self._push_active(qpi)
        if self._parked and now >= self._next_leftover_check:
            self._next_leftover_check = now + min(30.0, self.max_unschedulable)
            stale = [k for k, t in self._parked_at.items() if now - t >= self.max_unschedulable]
            for key in stale:
                parked = self._unpark(key)
                if parked is not None:
                    self._requeue(parked)

    def pop_nowait(self) -> QueuedPodInfo | None:
        self.flush()
        while self._active:
            _, _, seq, qpi = heapq.heappop(self._active)
            if qpi.where != ACTIVE or qpi.seq != seq:
                continue
            del self._queued[qpi.pod.key]
            qpi.where = ""
            qpi.attempts += 1
            if qpi.initial_attempt is None:
                qpi.initial_attempt = self.clock()
            return qpi
        return None

    def _next_wakeup(self) -> float | None:
        waits = []
        while self._backoff:
            _, seq, head = self._backoff[0]
            if head.where == BACKOFF and head.seq == seq:
                break
            heapq.heappop(self._backoff)  # a stale entry
        if self._backoff:
            waits.append(self._backoff[0][0] - self.clock())
        if self._parked:
            waits.append(self._next_leftover_check - self.clock())
        return max(min(waits), 0.0) if waits else None

    async def pop(self) -> QueuedPodInfo | None:
        """The next pod to schedule; waits while none is active. None once closed."""
        while not self._closed:
            qpi = self.pop_nowait()
            if qpi is not None:
                return qpi
            self._wake.clear()
            timeout = self._next_wakeup()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
        return None

    def close(self) -> None:
        self._closed = True
        self._wake.set()
