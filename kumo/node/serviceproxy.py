"""The node's service proxy: cluster IPs that work, and the cluster DNS (kube-proxy's old
userspace mode plus a small CoreDNS, in the agent).

Pods run on Podman's bridge, whose host side is this machine. For every Service with a
cluster IP the proxy puts that address on the loopback device as a /32 (the kernel then
delivers packets from the bridge to it locally: no dummy link needed) and listens on each
of the Service's TCP and UDP ports there. A TCP connection is forwarded to one of the
Service's ready endpoints (round-robin, or by client address with ``sessionAffinity:
ClientIP``, ``kumo.node.balancer``); an endpoint that refuses is skipped for a few seconds
and the next one is tried. A UDP port relays each client address's datagrams to one
endpoint, chosen the same way, until the client has been quiet for the idle timeout (30
s; ``kumo.node.udpproxy``). kumo's Endpoints hold node addresses and published ports,
which this machine reaches directly.

The cluster DNS server (``kumo.node.clusterdns``) listens on the cluster DNS address
(10.96.0.10:53, UDP and TCP) in the same way.

Only one proxy per machine and service CIDR may own those addresses: the agent that holds
the lock file ``/run/kumo/service-proxy-<cidr>.lock`` runs it; another agent on the machine
waits and takes over when the first stops. Addresses are only ever added inside the
service CIDR, and all of them are removed when the proxy stops (and stale ones, left by a
proxy that was killed, when it starts).

Not done: SCTP Service ports, NodePorts, externalIPs, topology-aware routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

import httpx

from kumo.client import ApiException, AsyncClient
from kumo.model.core import Endpoints, Pod, Service
from kumo.model.registry import ResourceInfo, for_model
from kumo.node.balancer import Backend, Balancer
from kumo.node.clusterdns import ClusterResolver, DNSServer, ServicePortRecord, ServiceRecord
from kumo.node.udpproxy import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, UdpPortProxy

__all__ = [
    "Backend",
    "LoopbackAddresses",
    "PortProxy",
    "ServiceProxy",
    "UdpPortProxy",
    "WatchCache",
    "desired_listeners",
]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
T = TypeVar("T")

SERVICE = for_model(Service)
ENDPOINTS = for_model(Endpoints)
POD = for_model(Pod)
DEFAULT_LOCK_DIR = Path("/run/kumo")
_ADDRESSED_TYPES = (None, "", "ClusterIP", "NodePort", "LoadBalancer")
_DEFAULT_AFFINITY_SECONDS = 10800


# ---- list + watch -----------------------------------------------------------------------------


class WatchCache(Generic[T]):
    """Every object of one kind, in all namespaces, kept current by a watch; each object
    is kept as ``transform(raw)`` (None drops it) under ``namespace/name``."""

    def __init__(
        self,
        client: AsyncClient,
        info: ResourceInfo,
        transform: Callable[[Obj], T | None],
        on_change: Callable[[], None],
        *,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.info = info
        self.transform = transform
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.items: dict[str, T] = {}
        self.synced = asyncio.Event()
        self._version = ""

    @staticmethod
    def key(obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"

    def _put(self, obj: Obj) -> None:
        value = self.transform(obj)
        if value is None:
            self.items.pop(self.key(obj), None)
        else:
            self.items[self.key(obj)] = value

    async def _list(self) -> None:
        items, version = await self.client.list_all_raw(self.info, all_namespaces=True)
        self.items = {}
        for obj in items:
            self._put(obj)
        self._version = version
        self.synced.set()
        self.on_change()

    async def _watch(self) -> None:
        async for event in self.client.watch_raw(
            self.info,
            all_namespaces=True,
            resource_version=self._version,
            timeout_seconds=self.watch_timeout,
            bookmarks=True,
        ):
            version = (event.object.get("metadata") or {}).get("resourceVersion")
            if version:
                self._version = str(version)
            if event.type == "BOOKMARK":
                continue
            if event.type == "DELETED":
                self.items.pop(self.key(event.object), None)
            else:
                self._put(event.object)
            self.on_change()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        need_list = True
        while not stop.is_set():
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                failures = 0
            except asyncio.CancelledError:
                raise
            except ApiException as err:
                if err.gone or err.code == 410:
                    need_list = True
                    continue
                failures += 1
                log.warning("%s watch failed: %s", self.info.plural, err)
            except (httpx.HTTPError, OSError, ValueError) as err:
                failures += 1
                log.warning("%s watch interrupted: %s", self.info.plural, err)
            if failures:
                delay = min(0.2 * 2 ** min(failures, 6), 10.0) * random.uniform(0.8, 1.2)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()


# ---- what the caches keep -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServicePortView:
    name: str
    port: int
    protocol: str
    target_port: int | None


@dataclass(frozen=True, slots=True)
class ServiceView:
    namespace: str
    name: str
    type: str
    cluster_ip: str
    external_name: str
    ports: tuple[ServicePortView, ...]
    affinity_seconds: int | None  # sessionAffinity ClientIP


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    ip: str
    hostname: str
    pod: str  # namespace/name of the target pod, or ""


@dataclass(frozen=True, slots=True)
class EndpointsView:
    # (port name, protocol) -> ready (address, port)
    ports: dict[tuple[str, str], tuple[tuple[EndpointAddress, int], ...]]


def service_view(obj: Obj) -> ServiceView | None:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ports = []
    for port in spec.get("ports") or []:
        if not isinstance(port, dict) or not isinstance(port.get("port"), int):
            continue
        target = port.get("targetPort")
        ports.append(
            ServicePortView(
                str(port.get("name") or ""),
                int(port["port"]),
                str(port.get("protocol") or "TCP"),
                target if isinstance(target, int) and not isinstance(target, bool) else None,
            )
        )
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP")) or {}
        affinity = int(config.get("timeoutSeconds") or _DEFAULT_AFFINITY_SECONDS)
    kind = str(spec.get("type") or "ClusterIP")
    ip = str(spec.get("clusterIP") or "")
    return ServiceView(
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        kind,
        "" if ip == "None" or kind == "ExternalName" else ip,
        str(spec.get("externalName") or "") if kind == "ExternalName" else "",
        tuple(ports),
        affinity,
    )


def endpoints_view(obj: Obj) -> EndpointsView | None:
    ports: dict[tuple[str, str], list[tuple[EndpointAddress, int]]] = {}
    for subset in obj.get("subsets") or []:
        if not isinstance(subset, dict):
            continue
        addresses = []
        for address in subset.get("addresses") or []:
            ref = address.get("targetRef") or {}
            pod = ""
            if ref.get("kind") == "Pod" and ref.get("name"):
                pod = f"{ref.get('namespace') or ''}/{ref['name']}"
            if address.get("ip"):
                addresses.append(
                    EndpointAddress(str(address["ip"]), str(address.get("hostname") or ""), pod)
                )
        for port in subset.get("ports") or []:
            if not isinstance(port.get("port"), int):
                continue
            key = (str(port.get("name") or ""), str(port.get("protocol") or "TCP"))
            entries = ports.setdefault(key, [])
            entries.extend((address, int(port["port"])) for address in addresses)
    return EndpointsView({name: tuple(entries) for name, entries in ports.items()})


def pod_ip(obj: Obj) -> str | None:
    ip = (obj.get("status") or {}).get("podIP")
    return str(ip) if ip else None


def desired_listeners(
    services: dict[str, ServiceView],
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    protocol: str = "TCP",
) -> dict[tuple[str, int], tuple[str, str]]:
    """``(cluster IP, port) -> (service key, port name)`` for every ``protocol`` port of
    every Service with a cluster IP inside ``network``."""
    wanted: dict[tuple[str, int], tuple[str, str]] = {}
    for key, service in services.items():
        if service.type not in _ADDRESSED_TYPES or not service.cluster_ip:
            continue
        try:
            ip = ipaddress.ip_address(service.cluster_ip)
        except ValueError:
            continue
        if ip.version != network.version or ip not in network:
            continue
        for port in service.ports:
            if port.protocol == protocol:
                wanted[(str(ip), port.port)] = (key, port.name)
    return wanted


# ---- loopback addresses -----------------------------------------------------------------------


class LoopbackAddresses:
    """The service CIDR's /32 (/128) addresses on ``lo``, through the ``ip`` command."""

    def __init__(
        self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, device: str = "lo"
    ) -> None:
        if network.overlaps(ipaddress.ip_network("127.0.0.0/8")) or network.overlaps(
            ipaddress.ip_network("::1/128")
        ):
            raise ValueError(f"the service CIDR {network} overlaps the loopback range")
        self.network = network
        self.device = device
        self.binary = shutil.which("ip") or "ip"
        self._family = "-4" if network.version == 4 else "-6"
        self._length = network.max_prefixlen

    def _in_range(self, text: str) -> str | None:
        address, _, length = text.partition("/")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if length and int(length) != self._length:
            return None
        return str(ip) if ip.version == self.network.version and ip in self.network else None

    def parse(self, output: str) -> set[str]:
        found = set()
        for line in output.splitlines():
            parts = line.split()
            for i, part in enumerate(parts[:-1]):
                if part in ("inet", "inet6"):
                    ip = self._in_range(parts[i + 1])
                    if ip is not None:
                        found.add(ip)
        return found

    def _command(self, *args: str) -> list[str]:
        return [self.binary, self._family, *args]

    def listed(self) -> set[str]:
        result = subprocess.run(
            self._command("-o", "addr", "show", "dev", self.device),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise OSError(f"ip addr show failed: {result.stderr.strip()}")
        return self.parse(result.stdout)

    def _batch(self, verb: str, ips: set[str]) -> None:
        chosen = sorted(ip for ip in ips if self._in_range(ip) is not None)
        if not chosen:
            return
        script = "".join(f"addr {verb} {ip}/{self._length} dev {self.device}\n" for ip in chosen)
        result = subprocess.run(
            [self.binary, self._family, "-force", "-batch", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            problems = result.stderr.strip()
            if verb == "add" and "File exists" in problems:
                return
            log.warning("ip addr %s: %s", verb, problems)

    def add(self, ips: set[str]) -> None:
        self._batch("add", ips)

    def remove(self, ips: set[str]) -> None:
        self._batch("del", ips)

    def remove_all(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.remove(self.listed())


# ---- one machine, one proxy -------------------------------------------------------------------


class MachineLock:
    """An exclusive ``flock`` on a file: held while this process runs the proxy (the
    kernel drops it when the process dies, even when it is killed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


# ---- the TCP proxy of one cluster IP and port ----------------------------------------------------


@dataclass(slots=True)
class PortProxy:
    """Listens on ``ip:port`` and forwards each connection to a backend."""

    ip: str
    port: int
    connect_timeout: float = 3.0
    eject_seconds: float = 5.0
    server: asyncio.Server | None = None
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    balancer: Balancer = field(init=False)

    def __post_init__(self) -> None:
        self.balancer = Balancer(self.eject_seconds)

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._accept, self.ip, self.port, reuse_address=True
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for task in list(self.connections):
            task.cancel()
        for task in list(self.connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def set_backends(self, backends: list[Backend], affinity_seconds: int | None) -> None:
        self.balancer.set_backends(backends, affinity_seconds)

    def candidates(self, client: str = "") -> list[Backend]:
        """Backends in the order to try them (see ``Balancer.candidates``)."""
        return self.balancer.candidates(client)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for backend in self.candidates(client):
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        upstream = await asyncio.open_connection(backend.host, backend.port)
                except (OSError, TimeoutError) as err:
                    log.debug("%s:%s: backend %s failed: %s", self.ip, self.port, backend, err)
                    self.balancer.failed(backend)
                    continue
                self.balancer.succeeded(backend)
                self.balancer.remember(client, backend)
                break
            if upstream is None:
                return  # no endpoint: the client sees the connection closed
            up_reader, up_writer = upstream
            try:
                await _pipe(reader, writer, up_reader, up_writer)
            finally:
                up_writer.close()
                with contextlib.suppress(Exception):
                    await up_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Both directions until both ended; an error in one ends both."""
    tasks = {
        asyncio.ensure_future(_copy(reader, up_writer)),
        asyncio.ensure_future(_copy(up_reader, writer)),
    }
    try:
        pending = tasks
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(not t.cancelled() and t.exception() is not None for t in done):
                break
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# ---- the proxy --------------------------------------------------------------------------------


class _Listener(Protocol):
    """A listener of one cluster IP and port: ``PortProxy`` (TCP) or ``UdpPortProxy``."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def set_backends(self, backends: list[Backend], affinity_seconds: int | None) -> None: ...


P = TypeVar("P", bound=_Listener)


class ServiceProxy:
    """Run with ``await ServiceProxy(client, ...).run(stop)``; never raises (problems are
    logged and retried), and leaves no address behind when it returns."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        service_cidr: str = "10.96.0.0/16",
        cluster_dns: str = "10.96.0.10",
        cluster_domain: str = "cluster.local",
        lock_dir: Path = DEFAULT_LOCK_DIR,
        dns_port: int = 53,
        upstreams: list[tuple[str, int]] | None = None,
        resync_interval: float = 30.0,
        udp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        udp_max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self.client = client
        self.network = ipaddress.ip_network(service_cidr, strict=True)
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.dns_port = dns_port
        self.upstreams = upstreams
        self.resync_interval = resync_interval
        self.udp_idle_timeout = udp_idle_timeout
        self.udp_max_sessions = udp_max_sessions
        safe = str(self.network).replace("/", "_").replace(":", "-")
        self.lock = MachineLock(lock_dir / f"service-proxy-{safe}.lock")
        self.addresses = LoopbackAddresses(self.network)
        self.changed = asyncio.Event()
        self.services: WatchCache[ServiceView] = WatchCache(
            client, SERVICE, service_view, self.changed.set
        )
        self.endpoints: WatchCache[EndpointsView] = WatchCache(
            client, ENDPOINTS, endpoints_view, self.changed.set
        )
        self.pods: WatchCache[str] = WatchCache(client, POD, pod_ip, lambda: None)
        self.proxies: dict[tuple[str, int], PortProxy] = {}  # TCP
        self.udp_proxies: dict[tuple[str, int], UdpPortProxy] = {}
        self.dns: DNSServer | None = None
        self.resolver = ClusterResolver(self, cluster_domain, service_network=str(self.network))
        self.active = asyncio.Event()  # set while this agent runs the proxy
        self._by_ip: dict[str, str] = {}

    # ---- Directory (for DNS) ----------------------------------------------------------------

    def _record(self, key: str, service: ServiceView) -> ServiceRecord:
        endpoints: tuple[tuple[str, str], ...] = ()
        if not service.cluster_ip and not service.external_name:
            view = self.endpoints.items.get(key)
            found: dict[str, str] = {}
            for entries in view.ports.values() if view else []:
                for address, _ in entries:
                    ip = self.pods.items.get(address.pod) if address.pod else None
                    if ip is None:
                        ip = address.ip
                        with contextlib.suppress(ValueError):
                            if ipaddress.ip_address(ip).is_loopback:
                                continue
                    found.setdefault(ip, address.hostname)
            endpoints = tuple(sorted(found.items()))
        return ServiceRecord(
            service.namespace,
            service.name,
            service.cluster_ip,
            service.external_name,
            tuple(
                ServicePortRecord(p.name, p.port, p.protocol, p.target_port) for p in service.ports
            ),
            endpoints,
        )

    def lookup(self, namespace: str, name: str) -> ServiceRecord | None:
        key = f"{namespace}/{name}"
        service = self.services.items.get(key)
        return None if service is None else self._record(key, service)

    def by_ip(self, ip: str) -> ServiceRecord | None:
        key = self._by_ip.get(ip)
        service = self.services.items.get(key) if key else None
        return None if service is None or key is None else self._record(key, service)

    # ---- run -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if shutil.which("ip") is None:
            log.error("service proxy disabled: the ip command (iproute2) is not installed")
            return
        try:
            while not self.lock.try_acquire():
                log.info("another agent runs the service proxy for %s; waiting", self.network)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5.0):
                        await stop.wait()
                if stop.is_set():
                    return
        except OSError as err:
            log.error("service proxy disabled: cannot take its lock %s: %s", self.lock.path, err)
            return
        tasks: list[asyncio.Task[None]] = []
        try:
            await asyncio.to_thread(self.addresses.remove_all)  # left by a killed proxy
            self.active.set()
            log.info("service proxy running for %s (DNS %s)", self.network, self.cluster_dns)
            for cache in (self.services, self.endpoints, self.pods):
                tasks.append(
                    asyncio.create_task(cache.run(stop), name=f"watch-{cache.info.plural}")
                )
            await self._loop(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the service proxy failed; its addresses are removed")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._shutdown()
            self.active.clear()
            self.lock.release()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.services.synced.is_set() and self.endpoints.synced.is_set():
                self.changed.clear()
                try:
                    await self.reconcile()
                except (OSError, subprocess.SubprocessError) as err:
                    log.warning("service proxy: %s", err)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync_interval):
                    waiter = asyncio.ensure_future(self.changed.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                        stopper.cancel()
            await asyncio.sleep(0.05)  # let a burst of changes arrive together

    def _dns_ip(self) -> str | None:
        try:
            ip = ipaddress.ip_address(self.cluster_dns)
        except ValueError:
            return None
        return str(ip) if ip.version == self.network.version and ip in self.network else None

    async def reconcile(self) -> None:
        """Make addresses, listeners and backends match the Services and Endpoints."""
        services = dict(self.services.items)
        tcp = desired_listeners(services, self.network, "TCP")
        udp = desired_listeners(services, self.network, "UDP")
        dns_ip = self._dns_ip()
        if dns_ip is not None:  # the cluster DNS has that port, both protocols
            tcp.pop((dns_ip, self.dns_port), None)
            udp.pop((dns_ip, self.dns_port), None)
        self._by_ip = {s.cluster_ip: key for key, s in services.items() if s.cluster_ip}
        # Stop what is no longer wanted, then fix the addresses, then start what is new.
        for key in [k for k in self.proxies if k not in tcp]:
            await self.proxies.pop(key).close()
        for key in [k for k in self.udp_proxies if k not in udp]:
            await self.udp_proxies.pop(key).close()
        ips = {ip for ip, _ in tcp} | {ip for ip, _ in udp} | ({dns_ip} if dns_ip else set())
        present = await asyncio.to_thread(self.addresses.listed)
        if ips - present:
            await asyncio.to_thread(self.addresses.add, ips - present)
        if present - ips:
            await asyncio.to_thread(self.addresses.remove, present - ips)
        if dns_ip is not None and self.dns is None:
            server = DNSServer(self.resolver, dns_ip, self.dns_port, upstreams=self.upstreams)
            try:
                await server.start()
                self.dns = server
            except OSError as err:
                log.warning("cluster DNS cannot listen on %s:%s: %s", dns_ip, self.dns_port, err)
        await self._listen(self.proxies, tcp, services, "TCP", PortProxy)
        await self._listen(self.udp_proxies, udp, services, "UDP", self._udp_proxy)

    def _udp_proxy(self, ip: str, port: int) -> UdpPortProxy:
        return UdpPortProxy(
            ip, port, idle_timeout=self.udp_idle_timeout, max_sessions=self.udp_max_sessions
        )

    async def _listen(
        self,
        proxies: dict[tuple[str, int], P],
        wanted: dict[tuple[str, int], tuple[str, str]],
        services: dict[str, ServiceView],
        protocol: str,
        make: Callable[[str, int], P],
    ) -> None:
        """Start the missing listeners of ``protocol``; give every one its backends."""
        for key, (service_key, port_name) in wanted.items():
            service = services[service_key]
            backends = self._backends(service_key, port_name, protocol)
            proxy = proxies.get(key)
            if proxy is None:
                proxy = make(*key)
                try:
                    await proxy.start()
                except OSError as err:
                    log.warning(
                        "cannot listen on %s:%s/%s for %s: %s",
                        *key,
                        protocol.lower(),
                        service_key,
                        err,
                    )
                    continue
                proxies[key] = proxy
            proxy.set_backends(backends, service.affinity_seconds)

    def _backends(self, service_key: str, port_name: str, protocol: str = "TCP") -> list[Backend]:
        view = self.endpoints.items.get(service_key)
        if view is None:
            return []
        entries = view.ports.get((port_name, protocol), ())
        return list(dict.fromkeys(Backend(address.ip, port) for address, port in entries))

    async def _shutdown(self) -> None:
        for proxy in list(self.proxies.values()):
            with contextlib.suppress(Exception):
                await proxy.close()
        self.proxies.clear()
        for udp in list(self.udp_proxies.values()):
            with contextlib.suppress(Exception):
                udp.close_now()
        self.udp_proxies.clear()
        if self.dns is not None:
            with contextlib.suppress(Exception):
                await self.dns.stop()
            self.dns = None
        # Synchronous on purpose: it must finish even when the task is being cancelled.
        self.addresses.remove_all()
