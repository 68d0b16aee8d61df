"""Upstreams (one per backend address), passive ejection, and the load-balancing policies.

What callers may rely on:
- an ``Upstream`` is shared by every route that lists its address, so its outstanding-request
  count and ejection state describe the backend, not one Service's view of it;
- ``pick`` never returns an upstream in ``exclude``; it prefers upstreams that are not ejected
  and falls back to the one whose ejection ends first when every candidate is ejected (a
  request then still has a chance, instead of failing because of an old error);
- ``pick`` returns None only when there is no candidate at all.
"""

from __future__ import annotations

import random
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kumo.platform.gateway.upstream import UpstreamConnection

ROUND_ROBIN = "round-robin"
LEAST_REQUEST = "least-request"
POLICIES = (ROUND_ROBIN, LEAST_REQUEST)

# Above this many endpoints least-request samples two at random instead of scanning them all.
_FULL_SCAN_LIMIT = 32


class Upstream:
    """A backend address, its pool of idle keep-alive connections and its ejection state."""

    __slots__ = (
        "address",
        "ejected_until",
        "ejections",
        "host",
        "idle",
        "outstanding",
        "port",
        "refs",
        "retired",
    )

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.outstanding = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.idle: list[UpstreamConnection] = []
        self.refs = 0
        self.retired = False

    def __repr__(self) -> str:
        return f"Upstream({self.address})"

    def eject(self, now: float, base: float, cap: float) -> float:
        """Take the upstream out of rotation; the n-th consecutive ejection lasts
        ``min(base * 2**(n-1), cap)`` seconds. Returns that duration."""
        self.ejections += 1
        duration = min(base * float(1 << min(self.ejections - 1, 30)), cap)
        self.ejected_until = max(self.ejected_until, now + duration)
        return duration

    def succeeded(self) -> None:
        """A response came back: the next failure starts the ejection ladder again."""
        if self.ejections:
            self.ejections = 0

    def available(self, now: float) -> bool:
        return self.ejected_until <= now

    def take_idle(self) -> UpstreamConnection | None:
        """The most recently used idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


def _fallback(
    upstreams: Sequence[Upstream], exclude: Container[Upstream] | None
) -> Upstream | None:
    best: Upstream | None = None
    for upstream in upstreams:
        if exclude is not None and upstream in exclude:
            continue
        if best is None or upstream.ejected_until < best.ejected_until:
            best = upstream
    return best


class Balancer(Protocol):
    """Chooses the upstream for the next request among a Service port's ready endpoints."""

    upstreams: tuple[Upstream, ...]

    def pick(self, now: float, exclude: Container[Upstream] | None = None) -> Upstream | None: ...


class RoundRobin:
    """Each available upstream in turn; ejected ones are skipped."""

    __slots__ = ("_next", "upstreams")

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self.upstreams = tuple(upstreams)
        self._next = 0

    def pick(self, now: float, exclude: Container[Upstream] | None = None) -> Upstream | None:
        upstreams = self.upstreams
        count = len(upstreams)
        if count == 0:
            return None
        index = self._next
        if index >= count:
            index = 0
        for _ in range(count):
            upstream = upstreams[index]
            index += 1
            if index == count:
                index = 0
            if upstream.ejected_until <= now and (exclude is None or upstream not in exclude):
                self._next = index
                return upstream
        return _fallback(upstreams, exclude)


class LeastRequest:
    """The available upstream with the fewest outstanding requests; ties go round-robin, so
    idle upstreams share the load evenly. With many upstreams, the better of two random
    choices (the "power of two choices" rule) instead of a full scan."""

    __slots__ = ("_next", "upstreams")

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self.upstreams = tuple(upstreams)
        self._next = 0

    def pick(self, now: float, exclude: Container[Upstream] | None = None) -> Upstream | None:
        upstreams = self.upstreams
        count = len(upstreams)
        if count == 0:
            return None
        if count > _FULL_SCAN_LIMIT:
            first, second = random.sample(upstreams, 2)
            candidates = [
                u
                for u in (first, second)
                if u.ejected_until <= now and (exclude is None or u not in exclude)
            ]
            if candidates:
                return min(candidates, key=lambda u: u.outstanding)
        start = self._next
        self._next = start + 1 if start + 1 < count else 0
        best: Upstream | None = None
        best_load = 0
        index = start if start < count else 0
        for _ in range(count):
            upstream = upstreams[index]
            index += 1
            if index == count:
                index = 0
            if upstream.ejected_until > now or (exclude is not None and upstream in exclude):
                continue
            load = upstream.outstanding
            if best is None or load < best_load:
                best, best_load = upstream, load
                if load == 0:
                    break
        if best is not None:
            return best
        return _fallback(upstreams, exclude)


def make_balancer(policy: str, upstreams: Sequence[Upstream]) -> Balancer:
    if policy == LEAST_REQUEST:
        return LeastRequest(upstreams)
    return RoundRobin(upstreams)
