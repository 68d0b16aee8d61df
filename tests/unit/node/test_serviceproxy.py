"""The service proxy's pure parts and its TCP forwarding (real sockets on 127.0.0.1):
round-robin over endpoints, failed endpoints skipped, client affinity; what it reads from
Services and Endpoints; the loopback address parsing; the machine lock."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from kumo.node.serviceproxy import (
    Backend,
    LoopbackAddresses,
    MachineLock,
    PortProxy,
    desired_listeners,
    endpoints_view,
    service_view,
)
from tests.conftest import free_port


async def _named_server(name: str) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(name.encode() + b":" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask(port: int, text: bytes = b"hi") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(text)
    await writer.drain()
    writer.write_eof()
    data = await reader.read()
    writer.close()
    return data


async def test_round_robin_and_failed_endpoints_are_skipped() -> None:
    a, port_a = await _named_server("a")
    b, port_b = await _named_server("b")
    dead = free_port()  # nothing listens there
    proxy = PortProxy("127.0.0.1", free_port(), eject_seconds=60)
    await proxy.start()
    try:
        proxy.set_backends(
            [
                Backend("127.0.0.1", port_a),
                Backend("127.0.0.1", dead),
                Backend("127.0.0.1", port_b),
            ],
            None,
        )
        answers = [await _ask(proxy.port) for _ in range(6)]
        assert set(answers) == {b"a:hi", b"b:hi"}
        # The dead one was tried once, then kept out: a and b alternate.
        assert all(answers[i] != answers[i + 1] for i in range(2, 5)), answers
        # Bytes both ways, bigger than one read.
        big = bytes(range(256)) * 1000
        proxy.set_backends([Backend("127.0.0.1", port_a)], None)
        echo_server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        proxy.set_backends([Backend("127.0.0.1", echo_server.sockets[0].getsockname()[1])], None)
        assert await _ask(proxy.port, big) == big
        echo_server.close()
        # No endpoints: the connection is closed (reset) at once.
        proxy.set_backends([], None)
        with contextlib.suppress(ConnectionResetError):
            assert await _ask(proxy.port) == b""
    finally:
        await proxy.close()
        a.close()
        b.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_client_ip_affinity_prefers_the_last_backend() -> None:
    proxy = PortProxy("127.0.0.1", 1)
    backends = [Backend("h", 1), Backend("h", 2), Backend("h", 3)]
    proxy.set_backends(backends, 600)
    first = proxy.candidates("10.88.0.5")[0]
    proxy.balancer.remember("10.88.0.5", first)
    assert all(proxy.candidates("10.88.0.5")[0] == first for _ in range(5))
    # Without affinity it rotates.
    proxy.set_backends(backends, None)
    assert len({proxy.candidates("10.88.0.5")[0] for _ in range(3)}) == 3


def _service(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}


def test_views_and_listeners() -> None:
    network = ipaddress.ip_network("10.96.0.0/16")
    web = service_view(
        _service(
            clusterIP="10.96.1.2",
            ports=[
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
            sessionAffinity="ClientIP",
        )
    )
    assert web is not None and web.affinity_seconds == 10800
    headless = service_view(_service(clusterIP="None", ports=[{"port": 1}]))
    outside = service_view(_service(clusterIP="192.0.2.1", ports=[{"port": 1}]))
    external = service_view(_service(type="ExternalName", externalName="example.org"))
    assert headless is not None and outside is not None and external is not None
    assert external.external_name == "example.org" and external.cluster_ip == ""
    wanted = desired_listeners(
        {"ns/web": web, "ns/db": headless, "ns/out": outside, "ns/ext": external}, network
    )
    # Ports of services with an address in the range only, by protocol.
    assert wanted == {("10.96.1.2", 80): ("ns/web", "http")}
    udp = desired_listeners({"ns/web": web, "ns/db": headless}, network, "UDP")
    assert udp == {("10.96.1.2", 53): ("ns/web", "dns")}
    assert desired_listeners({"ns/web": web}, network, "SCTP") == {}

    view = endpoints_view(
        {
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "127.0.0.1",
                            "targetRef": {"kind": "Pod", "namespace": "ns", "name": "p1"},
                        }
                    ],
                    "notReadyAddresses": [{"ip": "127.0.0.2"}],
                    "ports": [
                        {"name": "http", "port": 30001},
                        {"name": "dns", "port": 30002, "protocol": "UDP"},
                    ],
                }
            ]
        }
    )
    assert view is not None
    assert [(a.ip, a.pod, port) for a, port in view.ports[("http", "TCP")]] == [
        ("127.0.0.1", "ns/p1", 30001)
    ]
    assert [(a.ip, port) for a, port in view.ports[("dns", "UDP")]] == [("127.0.0.1", 30002)]
    assert ("dns", "TCP") not in view.ports


def test_loopback_addresses_parse_only_the_service_range() -> None:
    addresses = LoopbackAddresses(ipaddress.ip_network("10.96.0.0/16"))
    output = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "1: lo    inet 10.96.0.10/32 scope global lo\\       valid_lft forever\n"
        "1: lo    inet 10.96.3.0/24 scope global lo\\       valid_lft forever\n"
        "1: lo    inet 10.97.0.1/32 scope global lo\\       valid_lft forever\n"
    )
    assert addresses.parse(output) == {"10.96.0.10"}
    with pytest.raises(ValueError):
        LoopbackAddresses(ipaddress.ip_network("127.0.0.0/16"))


def test_machine_lock_is_exclusive(tmp_path: Path) -> None:
    first, second = MachineLock(tmp_path / "x.lock"), MachineLock(tmp_path / "x.lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
