"""Cluster DNS: names of Services (and pods) answered from what the API says, everything
else forwarded to the node's own nameservers.

Names, as Kubernetes' DNS specification and CoreDNS answer them (``cluster.local`` is the
cluster domain; ``<name>.<ns>.svc`` without it is answered too):

- ``<svc>.<ns>.svc.cluster.local``: A (or AAAA) with the Service's cluster IP; for a
  headless Service, the addresses of its ready endpoints; for an ExternalName Service, a
  CNAME to its external name (followed when the target can be resolved);
- ``<endpoint>.<svc>.<ns>.svc.cluster.local``: one endpoint of a headless Service, by its
  hostname or its dashed address (``10-88-0-5``);
- ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local``: SRV for a named port;
- ``<a-b-c-d>.<ns>.pod.cluster.local``: A with that address;
- ``<d>.<c>.<b>.<a>.in-addr.arpa`` for a cluster IP: PTR to its Service's name;
- a name in the cluster domain that does not exist: NXDOMAIN (with the zone's SOA, so
  resolvers cache the answer for ``ttl`` seconds); a name that exists without records of
  the type asked for: an empty NOERROR answer.

``ClusterResolver`` is the pure part (message in, message out); ``DNSServer`` serves it on
UDP and TCP and forwards what is not the cluster's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import struct
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from kumo.node.dnsmsg import (
    AAAA,
    ANY,
    CNAME,
    FORMERR,
    NOTIMP,
    NXDOMAIN,
    OPT,
    PTR,
    SERVFAIL,
    SOA,
    SRV,
    A,
    DNSError,
    Message,
    Question,
    Record,
    normalize_name,
)

__all__ = [
    "ClusterResolver",
    "DNSServer",
    "Directory",
    "ServiceRecord",
    "host_nameservers",
]

log = logging.getLogger(__name__)

_UDP_LIMIT = 512
_OUR_PAYLOAD = 1232


@dataclass(frozen=True, slots=True)
class ServicePortRecord:
    name: str
    port: int
    protocol: str  # "TCP", "UDP", "SCTP"
    target_port: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """What DNS needs of one Service. ``cluster_ip`` is empty for headless and
    ExternalName Services; ``endpoints`` are ``(address, hostname)`` of a headless
    Service's ready endpoints."""

    namespace: str
    name: str
    cluster_ip: str = ""
    external_name: str = ""
    ports: tuple[ServicePortRecord, ...] = ()
    endpoints: tuple[tuple[str, str], ...] = ()

    @property
    def headless(self) -> bool:
        return not self.cluster_ip and not self.external_name


class Directory(Protocol):
    def lookup(self, namespace: str, name: str) -> ServiceRecord | None: ...

    def by_ip(self, ip: str) -> ServiceRecord | None: ...


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _undashed(label: str) -> str | None:
    """``10-88-0-5`` -> ``10.88.0.5``; None when it is not an IPv4 address."""
    try:
        return str(ipaddress.IPv4Address(label.replace("-", ".")))
    except ValueError:
        return None


def _address_type(ip: str) -> int:
    return AAAA if ":" in ip else A


@dataclass(slots=True)
class Resolution:
    """The answer to a query, and a name to look up elsewhere (an ExternalName's target)."""

    message: Message
    chase: str | None = None


class ClusterResolver:
    def __init__(
        self,
        directory: Directory,
        domain: str = "cluster.local",
        *,
        ttl: int = 5,
        service_network: str | None = None,
    ) -> None:
        self.directory = directory
        self.domain = normalize_name(domain)
        self.ttl = ttl
        self.network = ipaddress.ip_network(service_network) if service_network else None

    # ---- which names are ours ------------------------------------------------------------

    def split(self, name: str) -> tuple[list[str], str] | None:
        """``(labels below the zone, zone)`` for a cluster name, else None."""
        name = normalize_name(name)
        if name == self.domain:
            return [], self.domain
        if name.endswith("." + self.domain):
            return name[: -len(self.domain) - 1].split("."), self.domain
        labels = name.split(".") if name else []
        if labels and labels[-1] in ("svc", "pod"):
            return labels, labels[-1]
        return None

    def _reverse_ip(self, name: str) -> str | None:
        name = normalize_name(name)
        if not name.endswith(".in-addr.arpa") or self.network is None:
            return None
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4:
            return None
        try:
            ip = ipaddress.ip_address(".".join(reversed(parts)))
        except ValueError:
            return None
        return str(ip) if ip in self.network else None

    # ---- answering -------------------------------------------------------------------------

    def resolve(self, query: Message) -> Resolution | None:
        """The answer for a cluster name; None when the name is not the cluster's (the
        caller forwards it)."""
        question = query.questions[0]
        reply = query.reply()
        reverse = self._reverse_ip(question.name)
        if reverse is not None:
            reply.aa = True
            record = self.directory.by_ip(reverse)
            if record is None:
                reply.rcode = NXDOMAIN
            elif question.qtype in (PTR, ANY):
                reply.answers.append(
                    Record(question.name, PTR, self.ttl, self._service_name(record))
                )
            return Resolution(reply)
        split = self.split(question.name)
        if split is None:
            return None
        labels, zone = split
        reply.aa = True
        chase = self._answer(question, labels, zone, reply)
        if reply.rcode == NXDOMAIN or not reply.answers:
            reply.authority.append(self._soa(zone))
        return Resolution(reply, chase)

    def _service_name(self, record: ServiceRecord) -> str:
        return f"{record.name}.{record.namespace}.svc.{self.domain}"

    def _soa(self, zone: str) -> Record:
        return Record(
            zone,
            SOA,
            self.ttl,
            (
                f"ns.dns.{self.domain}",
                f"hostmaster.{self.domain}",
                1,
                7200,
                1800,
                86400,
                self.ttl,
            ),
        )

    def _addresses(self, question: Question, ips: list[str], reply: Message) -> None:
        for ip in ips:
            kind = _address_type(ip)
            if question.qtype in (kind, ANY):
                reply.answers.append(Record(question.name, kind, self.ttl, ip))

    def _answer(
        self, question: Question, labels: list[str], zone: str, reply: Message
    ) -> str | None:
        if question.qtype == SOA and not labels:
            reply.answers.append(self._soa(zone))
            return None
        if not labels or labels[-1] not in ("svc", "pod"):
            if labels:
                reply.rcode = NXDOMAIN
            return None
        if labels[-1] == "pod":
            if len(labels) <= 2:
                return None  # the zone and namespaces exist, with no records
            ip = _undashed(labels[0]) if len(labels) == 3 else None
            if ip is None:
                reply.rcode = NXDOMAIN
                return None
            self._addresses(question, [ip], reply)
            return None
        if len(labels) <= 2:
            return None
        namespace = labels[-2]
        if len(labels) == 3:
            return self._service(question, labels[0], namespace, reply)
        if len(labels) == 4:
            self._endpoint(question, labels[0], labels[1], namespace, reply)
            return None
        if len(labels) == 5 and labels[0].startswith("_") and labels[1].startswith("_"):
            self._srv(question, labels, reply)
            return None
        reply.rcode = NXDOMAIN
        return None

    def _service(self, question: Question, name: str, namespace: str, reply: Message) -> str | None:
        record = self.directory.lookup(namespace, name)
        if record is None:
            reply.rcode = NXDOMAIN
            return None
        if record.external_name:
            target = normalize_name(record.external_name)
            reply.answers.append(Record(question.name, CNAME, self.ttl, target))
            if question.qtype == CNAME:
                return None
            inner = self.split(target)
            if inner is None:
                return target
            if len(inner[0]) == 3 and inner[0][-1] == "svc":
                nested = self.directory.lookup(inner[0][1], inner[0][0])
                if nested is not None and not nested.external_name:
                    alias = Question(target, question.qtype)
                    ips = (
                        [nested.cluster_ip]
                        if nested.cluster_ip
                        else [e[0] for e in nested.endpoints]
                    )
                    self._addresses(alias, ips, reply)
            return None
        if record.cluster_ip:
            self._addresses(question, [record.cluster_ip], reply)
        else:
            self._addresses(question, sorted({ip for ip, _ in record.endpoints}), reply)
        return None

    def _endpoint(
        self, question: Question, label: str, name: str, namespace: str, reply: Message
    ) -> None:
        record = self.directory.lookup(namespace, name)
        if record is None or not record.headless:
            reply.rcode = NXDOMAIN
            return
        found = [ip for ip, hostname in record.endpoints if label in (hostname, _dashed(ip))]
        if not found:
            reply.rcode = NXDOMAIN
            return
        self._addresses(question, found, reply)

    def _srv(self, question: Question, labels: list[str], reply: Message) -> None:
        port_name, protocol, name, namespace = labels[0][1:], labels[1][1:], labels[2], labels[3]
        record = self.directory.lookup(namespace, name)
        port = None
        if record is not None:
            port = next(
                (
                    p
                    for p in record.ports
                    if p.name == port_name and p.protocol.lower() == protocol.lower()
                ),
                None,
            )
        if record is None or port is None:
            reply.rcode = NXDOMAIN
            return
        if question.qtype not in (SRV, ANY):
            return
        base = self._service_name(record)
        if record.cluster_ip:
            reply.answers.append(Record(question.name, SRV, self.ttl, (0, 100, port.port, base)))
            reply.additional.append(
                Record(base, _address_type(record.cluster_ip), self.ttl, record.cluster_ip)
            )
            return
        number = port.target_port or port.port
        endpoints = sorted(set(record.endpoints))
        weight = max(1, 100 // max(1, len(endpoints)))
        for ip, hostname in endpoints:
            target = f"{hostname or _dashed(ip)}.{base}"
            reply.answers.append(Record(question.name, SRV, self.ttl, (0, weight, number, target)))
            reply.additional.append(Record(target, _address_type(ip), self.ttl, ip))


# ---- the server ------------------------------------------------------------------------------


def host_nameservers(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf."""
    try:
        text = path.read_text()
    except OSError:
        return []
    servers = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                servers.append(str(ipaddress.ip_address(parts[1].split("%", 1)[0])))
    return servers


class _UpstreamReply(asyncio.DatagramProtocol):
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        matches = len(data) >= 2 and struct.unpack("!H", data[:2])[0] == self.ident
        if matches and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.server.spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        response = await self.server.handle(data, tcp=False)
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)


class DNSServer:
    """Serves ``resolver`` on ``address:port`` over UDP and TCP; forwards other names to
    ``upstreams`` (``(address, port)``; default: the host's resolv.conf nameservers)."""

    def __init__(
        self,
        resolver: ClusterResolver,
        address: str,
        port: int = 53,
        *,
        upstreams: list[tuple[str, int]] | None = None,
        forward_timeout: float = 2.0,
        max_in_flight: int = 256,
    ) -> None:
        self.resolver = resolver
        self.address = address
        self.port = port
        self._upstreams = upstreams
        self.forward_timeout = forward_timeout
        self._slots = asyncio.Semaphore(max_in_flight)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def upstreams(self) -> list[tuple[str, int]]:
        if self._upstreams is not None:
            return self._upstreams
        return [(ip, 53) for ip in host_nameservers() if ip != self.address]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(
            self._serve_tcp, self.address, self.port, reuse_address=True
        )
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), local_addr=(self.address, self.port)
            )
        except BaseException:
            self._tcp.close()
            raise
        self._udp = transport

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._slots.locked():
            coroutine.close()
            return  # overloaded: drop the query (the client asks again)
        task = asyncio.ensure_future(self._limited(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _limited(self, coroutine: Coroutine[Any, Any, None]) -> None:
        async with self._slots:
            await coroutine

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(10):
                    head = await reader.readexactly(2)
                    data = await reader.readexactly(struct.unpack("!H", head)[0])
                response = await self.handle(data, tcp=True)
                if response is None:
                    break
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # ---- one query -----------------------------------------------------------------------------

    async def handle(self, data: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = Message.parse(data)
        except DNSError:
            if len(data) < 12:
                return None
            return Message(id=struct.unpack("!H", data[:2])[0], qr=True, rcode=FORMERR).encode()
        if query.qr:
            return None
        if query.opcode != 0:
            reply = query.reply()
            reply.rcode = NOTIMP
            return reply.encode()
        if len(query.questions) != 1:
            reply = query.reply()
            reply.rcode = FORMERR
            return reply.encode()
        try:
            resolution = self.resolver.resolve(query)
        except Exception:
            log.exception("cluster DNS failed on %s", query.questions[0].name)
            reply = query.reply()
            reply.rcode = SERVFAIL
            return reply.encode()
        if resolution is None:
            forwarded = await self.forward(data, tcp=tcp)
            if forwarded is not None:
                return forwarded
            reply = query.reply()
            reply.rcode = SERVFAIL
            return reply.encode()
        reply = resolution.message
        if resolution.chase is not None:
            await self._chase(query, resolution.chase, reply, tcp=tcp)
        return self._finish(query, reply, tcp=tcp)

    async def _chase(self, query: Message, target: str, reply: Message, *, tcp: bool) -> None:
        """Follow an ExternalName's CNAME outside the cluster (best effort)."""
        inner = Message(
            id=random.randint(0, 0xFFFF),
            rd=True,
            questions=[Question(target, query.questions[0].qtype)],
        )
        data = await self.forward(inner.encode(), tcp=tcp)
        if data is None:
            return
        with contextlib.suppress(DNSError):
            answer = Message.parse(data)
            reply.answers.extend(r for r in answer.answers if r.rtype != OPT)

    def _finish(self, query: Message, reply: Message, *, tcp: bool) -> bytes:
        payload = query.edns_payload()
        if payload is not None:
            reply.additional.append(Record("", OPT, 0, b"", _OUR_PAYLOAD))
        encoded = reply.encode()
        limit = 65535 if tcp else min(payload or _UDP_LIMIT, _OUR_PAYLOAD)
        if len(encoded) > limit:
            reply.tc = True
            reply.answers.clear()
            reply.authority.clear()
            reply.additional = [r for r in reply.additional if r.rtype == OPT]
            encoded = reply.encode()
        return encoded

    async def forward(self, data: bytes, *, tcp: bool) -> bytes | None:
        """Ask the upstream nameservers, in order; None when none answers."""
        for host, port in self.upstreams():
            try:
                async with asyncio.timeout(self.forward_timeout):
                    if tcp:
                        return await self._forward_tcp(data, host, port)
                    return await self._forward_udp(data, host, port)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as err:
                log.debug("upstream %s:%s did not answer: %s", host, port, err)
        return None

    async def _forward_udp(self, data: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        ident = struct.unpack("!H", data[:2])[0]
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UpstreamReply(ident), remote_addr=(host, port)
        )
        try:
            transport.sendto(data)
            return await protocol.done
        finally:
            transport.close()

    async def _forward_tcp(self, data: bytes, host: str, port: int) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            head = await reader.readexactly(2)
            return await reader.readexactly(struct.unpack("!H", head)[0])
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
