"""UDP Service ports for the node's service proxy (kube-proxy userspace's UDP proxier).

One socket per (cluster IP, port) receives the clients' datagrams. Every client address
(IP and port) gets a *session*: a UDP socket connected to one endpoint, chosen as the TCP
proxy chooses (round-robin, or by client IP with ``sessionAffinity: ClientIP``; endpoints
that failed lately last). The client's datagrams go out on the session's socket and the
endpoint's replies are sent back from the listening socket, so the client sees them come
from the cluster IP and port it sent to. A DNS client, a syslog sender or a game client
thus talks to one endpoint for as long as it keeps talking.

A session ends:
- after ``idle_timeout`` seconds (30 by default) without a datagram either way;
- when its endpoint leaves the Service (the client's next datagram opens a session to a
  current endpoint);
- when the endpoint answers with ICMP port unreachable: the endpoint is then tried last for
  a while, as a refusing TCP endpoint is, and the next datagram picks another one;
- when the table is full (``max_sessions`` per port, 1024 by default): the session idle
  longest is closed to make room, so a flood of client ports cannot use up the agent's
  file descriptors.

Datagrams are never queued: one that cannot be sent at once (no endpoint, a full socket
buffer) is dropped, as a network would drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable
from typing import Any, Generic, Protocol, TypeVar

from kumo.node.balancer import Backend, Balancer

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_SESSIONS",
    "SessionTable",
    "UdpPortProxy",
    "UdpSession",
]

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_SESSIONS = 1024
_MAX_DATAGRAM = 65535
# Datagrams handled per wake-up of one socket, so that one busy client cannot starve the
# rest of the event loop.
_BATCH = 64

ClientAddress = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)


class _Closable(Protocol):
    @property
    def backend(self) -> Backend: ...

    def close(self) -> None: ...


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=_Closable)


# ---- the session table (pure) --------------------------------------------------------------------


class SessionTable(Generic[K, S]):
    """Sessions by client, least recently used first. A session idle longer than
    ``idle_timeout`` is closed (when looked up, or by ``expire``); adding one to a full
    table closes the one idle longest. Every session leaves the table closed."""

    def __init__(
        self,
        limit: int = DEFAULT_MAX_SESSIONS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a session table needs room for one session")
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._entries: OrderedDict[K, tuple[S, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, client: object) -> bool:
        return client in self._entries

    def sessions(self) -> list[S]:
        return [session for session, _ in self._entries.values()]

    def _expired(self, used: float, now: float) -> bool:
        return now - used > self.idle_timeout

    def get(self, client: K) -> S | None:
        """The client's live session (an expired one is closed)."""
        entry = self._entries.get(client)
        if entry is None:
            return None
        if self._expired(entry[1], self.clock()):
            self._close(client)
            return None
        return entry[0]

    def touch(self, client: K) -> None:
        """A datagram went through the client's session."""
        entry = self._entries.get(client)
        if entry is not None:
            self._entries[client] = (entry[0], self.clock())
            self._entries.move_to_end(client)

    def add(self, client: K, session: S) -> None:
        """Keep ``session`` for ``client`` (closing the one it had); when the table is
        full the expired ones go, and if none has, the one idle longest."""
        if client in self._entries:
            self._close(client)
        if len(self._entries) >= self.limit:
            self.expire()
        while len(self._entries) >= self.limit:
            oldest = next(iter(self._entries))
            log.debug("UDP session table full (%d): closing %s", self.limit, oldest)
            self._close(oldest)
        self._entries[client] = (session, self.clock())

    def discard(self, client: K, session: S) -> None:
        """Close ``session`` if it is still the client's."""
        entry = self._entries.get(client)
        if entry is not None and entry[0] is session:
            self._close(client)

    def expire(self) -> int:
        """Close the sessions idle longer than the timeout; how many."""
        now = self.clock()
        closed = 0
        while self._entries:
            client, (_, used) = next(iter(self._entries.items()))
            if not self._expired(used, now):
                break
            self._close(client)
            closed += 1
        return closed

    def keep_backends(self, backends: Collection[Backend]) -> int:
        """Close the sessions whose backend is not in ``backends``; how many."""
        gone = [c for c, (s, _) in self._entries.items() if s.backend not in backends]
        for client in gone:
            self._close(client)
        return len(gone)

    def close_all(self) -> None:
        while self._entries:
            self._close(next(iter(self._entries)))

    def _close(self, client: K) -> None:
        session, _ = self._entries.pop(client)
        with contextlib.suppress(OSError):
            session.close()


# ---- sockets ----------------------------------------------------------------------------------


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class UdpSession:
    """A client's socket towards its backend (connected, so the kernel only passes on
    the backend's datagrams and reports its ICMP errors)."""

    def __init__(self, client: ClientAddress, backend: Backend, sock: socket.socket) -> None:
        self.client = client
        self.backend = backend
        self.sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def connect(cls, client: ClientAddress, backend: Backend) -> UdpSession:
        sock = socket.socket(_family(backend.host), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((backend.host, backend.port))
        except OSError:
            sock.close()
            raise
        return cls(client, backend, sock)

    def watch(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[[UdpSession], None]
    ) -> None:
        loop.add_reader(self.sock.fileno(), callback, self)
        self._loop = loop

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def close(self) -> None:
        if self.closed:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.sock.fileno())
        self._loop = None
        self.sock.close()


class UdpPortProxy:
    """Listens on ``ip:port`` (UDP) and relays each client's datagrams to one backend."""

    def __init__(
        self,
        ip: str,
        port: int,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        eject_seconds: float = 5.0,
    ) -> None:
        self.ip = ip
        self.port = port
        self.balancer = Balancer(eject_seconds)
        self.sessions: SessionTable[ClientAddress, UdpSession] = SessionTable(
            max_sessions, idle_timeout
        )
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def sweep_interval(self) -> float:
        return min(max(self.sessions.idle_timeout / 4, 0.05), 5.0)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(_family(self.ip), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.ip, self.port))
            loop.add_reader(sock.fileno(), self._from_clients)
        except OSError:
            sock.close()
            raise
        self.sock, self._loop = sock, loop
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep)

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """Close the listening socket and every session."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.sessions.close_all()
        self._loop = None

    def set_backends(self, backends: list[Backend], affinity_seconds: int | None) -> None:
        """New endpoints: sessions to the ones that left are closed."""
        self.balancer.set_backends(backends, affinity_seconds)
        dropped = self.sessions.keep_backends(set(backends))
        if dropped:
            log.debug("%s:%s/udp: %d sessions to former endpoints closed", *self._at(), dropped)

    def _at(self) -> tuple[str, int]:
        return self.ip, self.port

    def _sweep(self) -> None:
        self.sessions.expire()
        if self._loop is not None:
            self._sweeper = self._loop.call_later(self.sweep_interval, self._sweep)

    # ---- client -> backend ------------------------------------------------------------------

    def _from_clients(self) -> None:
        for _ in range(_BATCH):
            if self.sock is None:
                return
            try:
                data, client = self.sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.debug("%s:%s/udp: receive failed: %s", *self._at(), err)
                return
            self._forward(data, client)

    def _forward(self, data: bytes, client: ClientAddress) -> None:
        session = self.sessions.get(client)
        for _ in range(2):  # once more after a refusal reported on this send
            if session is None:
                session = self._open(client)
                if session is None:
                    return  # no endpoint: dropped
            try:
                session.sock.send(data)
            except (BlockingIOError, InterruptedError):
                return  # the socket buffer is full: dropped
            except ConnectionRefusedError:
                self._refused(session)
                session = None
                continue
            except OSError as err:
                log.debug("%s:%s/udp: send to %s failed: %s", *self._at(), session.backend, err)
                self.sessions.discard(client, session)
                return
            self.sessions.touch(client)
            return

    def _open(self, client: ClientAddress) -> UdpSession | None:
        """A session to the first backend that takes a socket."""
        if self._loop is None:
            return None
        for backend in self.balancer.candidates(str(client[0])):
            try:
                session = UdpSession.connect(client, backend)
            except OSError as err:
                log.debug("%s:%s/udp: backend %s failed: %s", *self._at(), backend, err)
                self.balancer.failed(backend)
                continue
            session.watch(self._loop, self._from_backend)
            self.balancer.remember(str(client[0]), backend)
            self.sessions.add(client, session)
            return session
        return None

    def _refused(self, session: UdpSession) -> None:
        log.debug("%s:%s/udp: backend %s refused", *self._at(), session.backend)
        self.balancer.failed(session.backend)
        self.sessions.discard(session.client, session)
        session.close()

    # ---- backend -> client ------------------------------------------------------------------

    def _from_backend(self, session: UdpSession) -> None:
        for _ in range(_BATCH):
            if session.closed or self.sock is None:
                return
            try:
                data = session.sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                self._refused(session)
                return
            except OSError as err:
                log.debug("%s:%s/udp: from %s: %s", *self._at(), session.backend, err)
                self.sessions.discard(session.client, session)
                session.close()
                return
            self.balancer.succeeded(session.backend)
            self.sessions.touch(session.client)
            try:
                self.sock.sendto(data, session.client)
            except (BlockingIOError, InterruptedError):
                continue  # the client's side is full: dropped
            except OSError as err:
                log.debug("%s:%s/udp: reply to %s failed: %s", *self._at(), session.client, err)
