"""UDP Service ports: the session table (idle expiry, eviction when full, sessions of
removed endpoints), the balancer shared with TCP, and the UDP relay itself on real
sockets on 127.0.0.1 (echo, round-robin across client ports, refused endpoints skipped,
endpoint changes, idle sessions closed); the service proxy switching a port from TCP to
UDP."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from kumo.client import AsyncClient
from kumo.node.balancer import Backend, Balancer
from kumo.node.serviceproxy import (
    EndpointsView,
    ServiceProxy,
    ServiceView,
    endpoints_view,
    service_view,
)
from kumo.node.udpproxy import SessionTable, UdpPortProxy
from tests.conftest import free_port

A, B, C = Backend("10.0.0.1", 1), Backend("10.0.0.2", 2), Backend("10.0.0.3", 3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakeSession:
    backend: Backend
    closed: bool = False

    def close(self) -> None:
        self.closed = True


# ---- the session table -------------------------------------------------------------------------


def test_sessions_expire_after_the_idle_timeout_and_use_keeps_them() -> None:
    clock = Clock()
    table: SessionTable[str, FakeSession] = SessionTable(10, 30.0, clock=clock)
    one, two = FakeSession(A), FakeSession(B)
    table.add("c1", one)
    table.add("c2", two)
    clock.now += 20
    table.touch("c2")
    clock.now += 15  # c1 idle 35 s, c2 15 s
    assert table.expire() == 1
    assert one.closed and not two.closed
    assert "c1" not in table and table.get("c2") is two
    # An expired session is closed when looked up, even before a sweep.
    clock.now += 31
    assert table.get("c2") is None and two.closed and len(table) == 0


def test_a_full_table_closes_the_session_idle_longest() -> None:
    clock = Clock()
    table: SessionTable[str, FakeSession] = SessionTable(2, 30.0, clock=clock)
    first, second, third = FakeSession(A), FakeSession(B), FakeSession(C)
    table.add("c1", first)
    clock.now += 1
    table.add("c2", second)
    clock.now += 1
    table.touch("c1")  # c2 is now the one idle longest
    table.add("c3", third)
    assert second.closed and not first.closed and not third.closed
    assert len(table) == 2 and "c1" in table and "c3" in table
    # Replacing a client's session closes its old one; the table does not grow.
    again = FakeSession(B)
    table.add("c1", again)
    assert first.closed and len(table) == 2 and table.get("c1") is again
    # discard() only closes the session that is still the client's.
    table.discard("c1", first)
    assert not again.closed
    table.discard("c1", again)
    assert again.closed and "c1" not in table
    table.close_all()
    assert third.closed and len(table) == 0
    with pytest.raises(ValueError):
        SessionTable(0, 1.0)


def test_sessions_of_removed_endpoints_are_closed() -> None:
    table: SessionTable[str, FakeSession] = SessionTable(10, 30.0, clock=Clock())
    sessions = {f"c{i}": FakeSession(backend) for i, backend in enumerate([A, B, A, C])}
    for client, session in sessions.items():
        table.add(client, session)
    assert table.keep_backends({B, C}) == 2
    assert [c for c, s in sessions.items() if s.closed] == ["c0", "c2"]
    assert sorted(s.backend.port for s in table.sessions()) == [2, 3]


# ---- the balancer ------------------------------------------------------------------------------


def test_balancer_round_robin_failures_and_affinity() -> None:
    clock = Clock()
    balancer = Balancer(5.0, clock=clock)
    assert balancer.candidates() == []
    balancer.set_backends([A, B, C], None)
    assert [balancer.candidates()[0] for _ in range(4)] == [A, B, C, A]
    # A failed endpoint goes last until eject_seconds have passed, or it worked again.
    balancer.failed(B)
    assert balancer.is_failed(B)
    assert [balancer.candidates()[0] for _ in range(3)] == [C, A, C]
    assert balancer.candidates()[-1] == B
    clock.now += 6
    assert not balancer.is_failed(B)
    balancer.failed(C)
    balancer.succeeded(C)
    assert not balancer.is_failed(C)
    # ClientIP affinity: the remembered backend first, while the timeout lasts.
    balancer.set_backends([A, B, C], 60)
    balancer.remember("10.88.0.7", B)
    assert all(balancer.candidates("10.88.0.7")[0] == B for _ in range(4))
    assert balancer.candidates("10.88.0.8")[0] != balancer.candidates("10.88.0.8")[0]
    clock.now += 61
    assert len({balancer.candidates("10.88.0.7")[0] for _ in range(3)}) == 3
    # Removing the backend forgets it; no affinity forgets every client.
    balancer.remember("10.88.0.7", B)
    balancer.set_backends([A, C], 60)
    assert B not in balancer.candidates("10.88.0.7")
    balancer.set_backends([A, B, C], None)
    balancer.remember("10.88.0.7", B)  # ignored without affinity
    assert len({balancer.candidates("10.88.0.7")[0] for _ in range(3)}) == 3


# ---- the relay, on real sockets ------------------------------------------------------------------


class _Named(asyncio.DatagramProtocol):
    """Answers every datagram with ``name:data``."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: list[tuple[str, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.peers.append((str(addr[0]), int(addr[1])))
        self.transport.sendto(self.name + b":" + data, addr)


@contextlib.asynccontextmanager
async def _named_servers(*names: str) -> AsyncIterator[list[tuple[Backend, _Named]]]:
    loop = asyncio.get_running_loop()
    servers = []
    try:
        for name in names:
            transport, protocol = await loop.create_datagram_endpoint(
                functools.partial(_Named, name), local_addr=("127.0.0.1", 0)
            )
            port = transport.get_extra_info("sockname")[1]
            servers.append((transport, Backend("127.0.0.1", port), protocol))
        yield [(backend, protocol) for _, backend, protocol in servers]
    finally:
        for transport, _, _ in servers:
            transport.close()


@contextlib.contextmanager
def _client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


async def _ask(
    sock: socket.socket, port: int, text: bytes = b"hi", within: float = 1.0
) -> tuple[bytes, tuple[str, int]] | None:
    """Send ``text`` to the proxy, wait for one reply (None: none came)."""
    sock.sendto(text, ("127.0.0.1", port))
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    data, sender = sock.recvfrom(65535)
                    return data, (str(sender[0]), int(sender[1]))
                except BlockingIOError:
                    await asyncio.sleep(0.005)
    except TimeoutError:
        return None


async def _answer(sock: socket.socket, port: int, text: bytes = b"hi", tries: int = 5) -> bytes:
    """Ask until an answer comes (a datagram to a refusing endpoint is lost)."""
    for _ in range(tries):
        reply = await _ask(sock, port, text, within=0.5)
        if reply is not None:
            return reply[0]
    raise AssertionError("no answer through the UDP proxy")


@contextlib.asynccontextmanager
async def _proxy(**options: Any) -> AsyncIterator[UdpPortProxy]:
    proxy = UdpPortProxy("127.0.0.1", free_port(), **options)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_datagrams_are_relayed_per_client_session_round_robin() -> None:
    async with _named_servers("a", "b") as servers, _proxy() as proxy:
        proxy.set_backends([backend for backend, _ in servers], None)
        with _client() as one, _client() as two:
            reply = await _ask(one, proxy.port, b"x")
            assert reply is not None
            data, sender = reply
            # The answer comes from the address the client sent to.
            assert sender == ("127.0.0.1", proxy.port)
            first = data.split(b":")[0]
            # The same client port stays with its endpoint...
            for i in range(3):
                assert await _ask(one, proxy.port, b"%d" % i) == (
                    first + b":%d" % i,
                    ("127.0.0.1", proxy.port),
                )
            # ...a new client port gets the next one.
            reply = await _ask(two, proxy.port, b"y")
            assert reply is not None and reply[0].split(b":")[0] != first
            assert len(proxy.sessions) == 2
            # The endpoint saw one source port per session.
            for _, server in servers:
                assert len(set(server.peers)) == 1
            # Big datagrams go through whole.
            big = bytes(range(256)) * 200
            reply = await _ask(one, proxy.port, big)
            assert reply is not None and reply[0] == first + b":" + big


async def test_no_endpoints_drops_datagrams() -> None:
    async with _proxy() as proxy:
        with _client() as sock:
            assert await _ask(sock, proxy.port, within=0.2) is None
            assert len(proxy.sessions) == 0


async def test_a_refusing_endpoint_is_skipped_and_the_next_datagram_goes_elsewhere() -> None:
    dead = Backend("127.0.0.1", free_port())  # nothing listens there: ICMP port unreachable
    async with _named_servers("a") as servers, _proxy(eject_seconds=60) as proxy:
        alive = servers[0][0]
        proxy.set_backends([dead, alive], None)
        with _client() as sock:
            # The first session goes to the dead one; its refusal closes the session.
            assert await _ask(sock, proxy.port, within=0.3) is None
            assert proxy.balancer.is_failed(dead)
            assert len(proxy.sessions) == 0
            assert await _answer(sock, proxy.port) == b"a:hi"
        # New clients are sent to the live one while the dead one is ejected.
        for _ in range(3):
            with _client() as sock:
                assert await _answer(sock, proxy.port, tries=1) == b"a:hi"
        assert {s.backend for s in proxy.sessions.sessions()} == {alive}


async def test_sessions_to_removed_endpoints_are_dropped() -> None:
    async with _named_servers("a", "b") as servers, _proxy() as proxy:
        (a, _), (b, _) = servers
        proxy.set_backends([a], None)
        with _client() as sock:
            assert await _answer(sock, proxy.port) == b"a:hi"
            session = proxy.sessions.sessions()[0]
            proxy.set_backends([b], None)
            assert len(proxy.sessions) == 0 and session.closed
            assert await _answer(sock, proxy.port) == b"b:hi"
            # An unchanged endpoint list keeps the sessions.
            proxy.set_backends([b], None)
            assert len(proxy.sessions) == 1


async def test_idle_sessions_close_and_the_table_is_bounded() -> None:
    async with (
        _named_servers("a") as servers,
        _proxy(idle_timeout=0.3, max_sessions=2) as proxy,
    ):
        proxy.set_backends([servers[0][0]], None)
        with _client() as one, _client() as two, _client() as three:
            for sock in (one, two):
                assert await _answer(sock, proxy.port) == b"a:hi"
            first = proxy.sessions.sessions()[0]
            assert await _answer(three, proxy.port) == b"a:hi"
            assert len(proxy.sessions) == 2 and first.closed  # the one idle longest
            sessions = proxy.sessions.sessions()
            await asyncio.sleep(0.6)
            assert len(proxy.sessions) == 0
            assert all(session.closed for session in sessions)
            # A client that comes back gets a new session.
            assert await _answer(one, proxy.port) == b"a:hi"


async def test_close_releases_every_socket() -> None:
    async with _named_servers("a") as servers:
        proxy = UdpPortProxy("127.0.0.1", free_port())
        await proxy.start()
        proxy.set_backends([servers[0][0]], None)
        with _client() as sock:
            assert await _answer(sock, proxy.port) == b"a:hi"
        session = proxy.sessions.sessions()[0]
        await proxy.close()
        assert session.closed and proxy.sock is None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", proxy.port))  # the port is free again


# ---- the service proxy: a port that changes protocol ----------------------------------------------


class _NoAddresses:
    """Stands in for LoopbackAddresses: 127.0.0.1 is always there."""

    def listed(self) -> set[str]:
        return set()

    def add(self, ips: set[str]) -> None:
        pass

    def remove(self, ips: set[str]) -> None:
        pass

    def remove_all(self) -> None:
        pass


def _service(port: int, protocol: str) -> dict[str, ServiceView]:
    view = service_view(
        {
            "metadata": {"name": "echo", "namespace": "ns"},
            "spec": {
                "clusterIP": "127.0.0.1",
                "ports": [{"name": "echo", "port": port, "protocol": protocol}],
            },
        }
    )
    assert view is not None
    return {"ns/echo": view}


def _endpoints(backend: Backend, protocol: str) -> dict[str, EndpointsView]:
    view = endpoints_view(
        {
            "subsets": [
                {
                    "addresses": [{"ip": backend.host}],
                    "ports": [{"name": "echo", "port": backend.port, "protocol": protocol}],
                }
            ]
        }
    )
    assert view is not None
    return {"ns/echo": view}


async def test_service_proxy_switches_a_port_from_tcp_to_udp_and_closes_all_on_stop() -> None:
    proxy = ServiceProxy(
        cast(AsyncClient, None), cluster_dns="", udp_idle_timeout=5.0, udp_max_sessions=8
    )
    proxy.network = ipaddress.ip_network("127.0.0.0/24")
    proxy.addresses = cast(Any, _NoAddresses())
    port = free_port()
    async with _named_servers("u") as servers:
        backend = servers[0][0]
        proxy.services.items = _service(port, "TCP")
        proxy.endpoints.items = _endpoints(backend, "TCP")
        await proxy.reconcile()
        assert list(proxy.proxies) == [("127.0.0.1", port)] and not proxy.udp_proxies
        # The endpoint of the TCP port is not one of a UDP port.
        proxy.services.items = _service(port, "UDP")
        await proxy.reconcile()
        assert not proxy.proxies and list(proxy.udp_proxies) == [("127.0.0.1", port)]
        udp = proxy.udp_proxies[("127.0.0.1", port)]
        assert udp.balancer.backends == []
        assert udp.sessions.idle_timeout == 5.0 and udp.sessions.limit == 8
        proxy.endpoints.items = _endpoints(backend, "UDP")
        await proxy.reconcile()
        assert udp.balancer.backends == [backend]
        with _client() as sock:
            assert await _answer(sock, port) == b"u:hi"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)  # the TCP listener is gone
        session = udp.sessions.sessions()[0]
        await proxy._shutdown()
        assert not proxy.udp_proxies and udp.sock is None and session.closed
