"""The DNS codec, the cluster DNS answers, and the DNS server over real sockets on
127.0.0.1 (forwarding to a second server that plays the node's upstream nameserver)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from kumo.node.clusterdns import (
    ClusterResolver,
    DNSServer,
    ServicePortRecord,
    ServiceRecord,
    host_nameservers,
)
from kumo.node.dnsmsg import (
    AAAA,
    CNAME,
    NOERROR,
    NXDOMAIN,
    OPT,
    PTR,
    SERVFAIL,
    SOA,
    SRV,
    TXT,
    A,
    DNSError,
    Message,
    Question,
    Record,
)


class Directory:
    def __init__(self, *records: ServiceRecord) -> None:
        self.records = {(r.namespace, r.name): r for r in records}

    def lookup(self, namespace: str, name: str) -> ServiceRecord | None:
        return self.records.get((namespace, name))

    def by_ip(self, ip: str) -> ServiceRecord | None:
        return next((r for r in self.records.values() if r.cluster_ip == ip), None)


WEB = ServiceRecord("shop", "web", "10.96.3.4", ports=(ServicePortRecord("http", 80, "TCP", 8080),))
DB = ServiceRecord(
    "shop",
    "db",
    ports=(ServicePortRecord("pg", 5432, "TCP", 5432),),
    endpoints=(("10.88.0.7", "db-0"), ("10.88.0.8", "")),
)
EXTERNAL = ServiceRecord("shop", "ext", external_name="example.org")
ALIAS = ServiceRecord("shop", "alias", external_name="web.shop.svc.cluster.local")
RESOLVER = ClusterResolver(
    Directory(WEB, DB, EXTERNAL, ALIAS), "cluster.local", service_network="10.96.0.0/16"
)


def query(name: str, qtype: int = A, ident: int = 7) -> Message:
    return Message(id=ident, rd=True, questions=[Question(name, qtype)])


def ask(name: str, qtype: int = A) -> Message:
    resolution = RESOLVER.resolve(query(name, qtype))
    assert resolution is not None, f"{name} should be a cluster name"
    # Every answer survives the wire.
    return Message.parse(resolution.message.encode())


def values(message: Message, rtype: int = A) -> list[object]:
    return [r.data for r in message.answers if r.rtype == rtype]


# ---- codec -----------------------------------------------------------------------------------


def test_message_round_trip_keeps_every_record_type() -> None:
    message = Message(
        id=0xBEEF,
        qr=True,
        aa=True,
        rd=True,
        ra=True,
        rcode=NXDOMAIN,
        questions=[Question("a.example.", A)],
        answers=[
            Record("a.example", A, 30, "192.0.2.1"),
            Record("a.example", AAAA, 30, "2001:db8::1"),
            Record("a.example", CNAME, 30, "b.example"),
            Record("a.example", TXT, 30, ("hello", "world")),
            Record("_x._tcp.a.example", SRV, 30, (1, 2, 443, "b.example")),
            Record("4.3.2.1.in-addr.arpa", PTR, 30, "a.example"),
        ],
        authority=[Record("example", SOA, 5, ("ns.example", "host.example", 1, 2, 3, 4, 5))],
        additional=[Record("", OPT, 0, b"", 1232)],
    )
    parsed = Message.parse(message.encode())
    assert parsed == Message(
        id=0xBEEF,
        qr=True,
        aa=True,
        rd=True,
        ra=True,
        rcode=NXDOMAIN,
        questions=[Question("a.example", A)],
        answers=message.answers,
        authority=message.authority,
        additional=message.additional,
    )
    assert parsed.edns_payload() == 1232


def test_names_are_compressed_and_pointers_are_followed() -> None:
    records = [Record("web.shop.svc.cluster.local", A, 5, f"10.0.0.{i}") for i in range(10)]
    message = Message(id=1, questions=[Question("web.shop.svc.cluster.local", A)], answers=records)
    data = message.encode()
    # The name once (28 bytes) in the question, then a 2-byte pointer in each record.
    assert len(data) == 12 + (28 + 4) + 10 * (2 + 10 + 4)
    assert Message.parse(data).answers == records


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01",  # shorter than a header
        struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x05ab",  # label past the end
        struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c",  # pointer to itself
        struct.pack("!6H", 1, 0, 0, 1, 0, 0) + b"\x00\x00\x01\x00\x01\x00\x00\x00\x05\x00\x09",
    ],
)
def test_malformed_messages_raise_dns_error(data: bytes) -> None:
    with pytest.raises(DNSError):
        Message.parse(data)


# ---- cluster answers ----------------------------------------------------------------------------


def test_service_names_answer_the_cluster_ip() -> None:
    for name in ("web.shop.svc.cluster.local", "WEB.shop.svc.cluster.local.", "web.shop.svc"):
        answer = ask(name)
        assert answer.rcode == NOERROR and answer.aa
        assert values(answer) == ["10.96.3.4"]
        assert answer.answers[0].ttl == 5


def test_unknown_names_in_the_cluster_domain_are_nxdomain_with_the_soa() -> None:
    for name in (
        "nope.shop.svc.cluster.local",
        "web.other.svc.cluster.local",
        "web.shop.svc.shop.svc.cluster.local",  # what the search path tries first
        "what.cluster.local",
    ):
        answer = ask(name)
        assert answer.rcode == NXDOMAIN, name
        assert [r.rtype for r in answer.authority] == [SOA]
        assert answer.authority[0].name == "cluster.local"


def test_existing_names_without_that_type_are_empty_answers() -> None:
    answer = ask("web.shop.svc.cluster.local", AAAA)
    assert answer.rcode == NOERROR and answer.answers == []
    assert [r.rtype for r in answer.authority] == [SOA]
    for name in ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local"):
        assert ask(name).rcode == NOERROR
    assert values(ask("cluster.local", SOA), SOA)


def test_headless_services_answer_their_endpoints() -> None:
    assert sorted(values(ask("db.shop.svc.cluster.local"))) == ["10.88.0.7", "10.88.0.8"]
    assert values(ask("db-0.db.shop.svc.cluster.local")) == ["10.88.0.7"]
    assert values(ask("10-88-0-8.db.shop.svc.cluster.local")) == ["10.88.0.8"]
    assert ask("db-9.db.shop.svc.cluster.local").rcode == NXDOMAIN
    # Endpoint names exist only under headless services.
    assert ask("x.web.shop.svc.cluster.local").rcode == NXDOMAIN


def test_srv_records_for_named_ports() -> None:
    answer = ask("_http._tcp.web.shop.svc.cluster.local", SRV)
    assert values(answer, SRV) == [(0, 100, 80, "web.shop.svc.cluster.local")]
    assert [(r.name, r.data) for r in answer.additional] == [
        ("web.shop.svc.cluster.local", "10.96.3.4")
    ]
    headless = ask("_pg._tcp.db.shop.svc.cluster.local", SRV)
    assert sorted(values(headless, SRV)) == [  # type: ignore[type-var]
        (0, 50, 5432, "10-88-0-8.db.shop.svc.cluster.local"),
        (0, 50, 5432, "db-0.db.shop.svc.cluster.local"),
    ]
    assert ask("_nope._tcp.web.shop.svc.cluster.local", SRV).rcode == NXDOMAIN
    assert ask("_http._udp.web.shop.svc.cluster.local", SRV).rcode == NXDOMAIN


def test_external_name_services_are_cnames() -> None:
    resolution = RESOLVER.resolve(query("ext.shop.svc.cluster.local"))
    assert resolution is not None
    assert values(resolution.message, CNAME) == ["example.org"]
    assert resolution.chase == "example.org"  # the server follows it upstream
    inside = ask("alias.shop.svc.cluster.local")
    assert values(inside, CNAME) == ["web.shop.svc.cluster.local"]
    assert [(r.name, r.data) for r in inside.answers if r.rtype == A] == [
        ("web.shop.svc.cluster.local", "10.96.3.4")
    ]


def test_pod_names_and_reverse_lookups() -> None:
    assert values(ask("10-88-0-5.shop.pod.cluster.local")) == ["10.88.0.5"]
    assert ask("nonsense.shop.pod.cluster.local").rcode == NXDOMAIN
    assert values(ask("4.3.96.10.in-addr.arpa", PTR), PTR) == ["web.shop.svc.cluster.local"]
    assert ask("9.9.96.10.in-addr.arpa", PTR).rcode == NXDOMAIN


def test_other_names_are_not_the_clusters() -> None:
    for name in ("example.org", "svc.example.org", "4.3.2.1.in-addr.arpa", "localhost"):
        assert RESOLVER.resolve(query(name)) is None, name


def test_host_nameservers_reads_resolv_conf(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "resolv.conf"
    path.write_text(
        "# comment\nnameserver 192.0.2.53\nsearch example\nnameserver fe80::1%eth0\n"
        "nameserver bogus\n"
    )
    assert host_nameservers(path) == ["192.0.2.53", "fe80::1"]


# ---- the server -----------------------------------------------------------------------------------


def _free_udp_and_tcp_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


async def _udp(port: int, message: Message) -> Message:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not done.done():
                done.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Protocol, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(message.encode())
        async with asyncio.timeout(5):
            return Message.parse(await done)
    finally:
        transport.close()


async def _tcp(port: int, message: Message) -> Message:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = message.encode()
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        return Message.parse(await reader.readexactly(size))
    finally:
        writer.close()


async def test_server_answers_over_udp_and_tcp_and_forwards_the_rest() -> None:
    upstream_port = _free_udp_and_tcp_port()
    upstream = DNSServer(
        ClusterResolver(Directory(ServiceRecord("a", "b", "192.0.2.9")), "example.org"),
        "127.0.0.1",
        upstream_port,
        upstreams=[],
    )
    await upstream.start()
    port = _free_udp_and_tcp_port()
    server = DNSServer(RESOLVER, "127.0.0.1", port, upstreams=[("127.0.0.1", upstream_port)])
    await server.start()
    try:
        for send in (_udp, _tcp):
            answer = await send(port, query("web.shop.svc.cluster.local", ident=42))
            assert answer.id == 42 and answer.qr and answer.aa
            assert values(answer) == ["10.96.3.4"]
            # Not the cluster's: the upstream's answer, as it gave it.
            forwarded = await send(port, query("b.a.svc.example.org", ident=43))
            assert forwarded.id == 43
            assert values(forwarded) == ["192.0.2.9"]
            missing = await send(port, query("nothing.example.org"))
            assert missing.rcode == NXDOMAIN
        # The upstream has no upstream of its own: SERVFAIL, not silence.
        lost = await _udp(upstream_port, query("example.net"))
        assert lost.rcode == SERVFAIL
    finally:
        await server.stop()
        await upstream.stop()


async def test_big_udp_answers_are_truncated_and_complete_over_tcp() -> None:
    many = ServiceRecord(
        "shop", "many", endpoints=tuple((f"10.88.1.{i}", "") for i in range(1, 61))
    )
    port = _free_udp_and_tcp_port()
    server = DNSServer(
        ClusterResolver(Directory(many), "cluster.local"), "127.0.0.1", port, upstreams=[]
    )
    await server.start()
    try:
        udp = await _udp(port, query("many.shop.svc.cluster.local"))
        assert udp.tc and udp.answers == []
        tcp = await _tcp(port, query("many.shop.svc.cluster.local"))
        assert not tcp.tc and len(tcp.answers) == 60
        # A resolver that offers a bigger buffer (EDNS) gets it all over UDP.
        edns = query("many.shop.svc.cluster.local")
        edns.additional.append(Record("", OPT, 0, b"", 4096))
        big = await _udp(port, edns)
        assert not big.tc and len(big.answers) == 60
        assert [r.rtype for r in big.additional] == [OPT]
    finally:
        await server.stop()


async def test_garbage_gets_formerr_and_responses_are_ignored() -> None:
    port = _free_udp_and_tcp_port()
    server = DNSServer(RESOLVER, "127.0.0.1", port, upstreams=[])
    await server.start()
    try:
        data = struct.pack("!6H", 99, 0x0100, 1, 0, 0, 0) + b"\x05ab"
        reply = await server.handle(data, tcp=False)
        assert reply is not None
        parsed = Message.parse(reply)
        assert parsed.id == 99 and parsed.rcode == 1
        response = query("web.shop.svc.cluster.local")
        response.qr = True
        assert await server.handle(response.encode(), tcp=False) is None
    finally:
        await server.stop()
