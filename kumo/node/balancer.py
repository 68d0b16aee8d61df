"""Which endpoint of a Service port gets the next connection (TCP) or session (UDP):
kube-proxy userspace's round-robin balancer.

- Round-robin over the ready endpoints; the turn passes to the endpoint after the one
  chosen.
- ``sessionAffinity: ClientIP``: a client address that was sent to an endpoint within
  the affinity timeout goes there again (while it is an endpoint).
- An endpoint that failed (refused a connection, answered a datagram with ICMP port
  unreachable) goes last for ``eject_seconds``; one that worked since is trusted again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Backend", "Balancer"]

# Affinity records are pruned of expired ones once there are this many.
_AFFINITY_PRUNE_AT = 4096


@dataclass(frozen=True, slots=True)
class Backend:
    host: str
    port: int


class Balancer:
    def __init__(
        self, eject_seconds: float = 5.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.eject_seconds = eject_seconds
        self.clock = clock
        self.backends: list[Backend] = []
        self.affinity_seconds: int | None = None
        self._next = 0
        self._failed: dict[Backend, float] = {}  # backend -> skipped until
        self._affinity: dict[str, tuple[Backend, float]] = {}  # client IP -> (backend, at)

    def set_backends(self, backends: Sequence[Backend], affinity_seconds: int | None) -> None:
        wanted = list(backends)
        if wanted != self.backends:
            self.backends = wanted
            self._failed = {b: t for b, t in self._failed.items() if b in wanted}
            self._affinity = {c: v for c, v in self._affinity.items() if v[0] in wanted}
        self.affinity_seconds = affinity_seconds
        if affinity_seconds is None:
            self._affinity.clear()

    def candidates(self, client: str = "") -> list[Backend]:
        """Backends in the order to try them: the client's sticky one first (ClientIP
        affinity), then round-robin; ones that failed lately go last."""
        backends = list(self.backends)
        if not backends:
            return []
        start = self._next % len(backends)
        ordered = backends[start:] + backends[:start]
        now = self.clock()
        if self.affinity_seconds is not None and client in self._affinity:
            sticky, at = self._affinity[client]
            if now - at <= self.affinity_seconds and sticky in ordered:
                ordered.remove(sticky)
                ordered.insert(0, sticky)
        healthy = [b for b in ordered if self._failed.get(b, 0.0) <= now]
        result = healthy + [b for b in ordered if b not in healthy]
        # The turn passes to the backend after the one chosen (failed ones are skipped).
        self._next = (backends.index(result[0]) + 1) % len(backends)
        return result

    def failed(self, backend: Backend) -> None:
        """``backend`` refused: try it last for ``eject_seconds``."""
        if backend in self.backends:
            self._failed[backend] = self.clock() + self.eject_seconds

    def succeeded(self, backend: Backend) -> None:
        self._failed.pop(backend, None)

    def is_failed(self, backend: Backend) -> bool:
        return self._failed.get(backend, 0.0) > self.clock()

    def remember(self, client: str, backend: Backend) -> None:
        """``client`` was sent to ``backend`` (kept with ClientIP affinity only)."""
        if self.affinity_seconds is None or not client:
            return
        now = self.clock()
        if len(self._affinity) >= _AFFINITY_PRUNE_AT:
            limit = self.affinity_seconds
            self._affinity = {c: v for c, v in self._affinity.items() if now - v[1] <= limit}
        self._affinity[client] = (backend, now)
