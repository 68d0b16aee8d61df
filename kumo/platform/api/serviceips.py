"""Cluster IPs of Services, and the ``kubernetes`` Service the API server keeps for itself.

Every Service of type ClusterIP, NodePort or LoadBalancer gets an address from the service
CIDR (``Settings.service_cidr``, 10.96.0.0/16 by default) when it is created without one:

- ``spec.clusterIP: None`` makes a headless Service (no address);
- an explicitly requested address is honoured when it is inside the range and free; a taken
  or out-of-range one is a 422 naming ``spec.clusterIP``;
- ``spec.clusterIPs`` mirrors ``spec.clusterIP``.

The stored Services are the allocation table: an address is in use while a stored Service
holds it, so allocations survive restarts and an address is free again as soon as its
Service is gone. Service writes that assign an address hold one lock from the choice of the
address until the object is stored, so two concurrent creates never get the same one (one
API server per store; kumo's SQLite store has exactly one).

Dynamic allocation draws from the upper part of the range first and leaves the lowest
addresses (at most 256, Kubernetes' "reserved lower band") to static assignments: the first
address goes to the ``kubernetes`` Service, 10.96.0.10 is the cluster DNS by convention.

``ensure_kubernetes_service`` creates or repairs ``default/kubernetes`` (port 443, the first
address of the range) and its Endpoints (the API server's address and port), as
Kubernetes' API server does, so pods reach the API at ``https://kubernetes.default.svc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from kumo.model.core import Endpoints, Service
from kumo.model.registry import ResourceInfo, for_model
from kumo.platform.api import admission
from kumo.platform.api.errors import invalid
from kumo.platform.store import AlreadyExists, Conflict, NotFound
from kumo.platform.store.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_CLUSTER_DOMAIN",
    "DEFAULT_SERVICE_CIDR",
    "KUBERNETES_SERVICE",
    "ServiceIPs",
    "advertised_address",
    "ensure_kubernetes_service",
    "keep_kubernetes_service",
    "kubernetes_names",
]

log = logging.getLogger(__name__)

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
KUBERNETES_SERVICE = "kubernetes"
KUBERNETES_NAMESPACE = "default"
_SERVICES_PREFIX = "registry/core/services/"
_ADDRESSED_TYPES = (None, "", "ClusterIP", "NodePort", "LoadBalancer")
_RANDOM_TRIES = 64

Obj = dict[str, Any]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: str) -> Network:
    """The service range; ValueError when it is not a network or too small."""
    network = ipaddress.ip_network(text.strip(), strict=True)
    if network.num_addresses < 8:
        raise ValueError(f"the service CIDR {text} is too small (at least 8 addresses)")
    return network


def _addressed(spec: Obj) -> bool:
    return spec.get("type") in _ADDRESSED_TYPES


def _field_problem(path: str, value: str, why: str) -> tuple[str, str]:
    return (path, f'Invalid value: "{value}": {why}')


class ServiceIPs:
    """The cluster IP allocator of one API server."""

    def __init__(self, cidr: str, store: SQLiteStore) -> None:
        self.network = parse_cidr(cidr)
        self.store = store
        self.lock = asyncio.Lock()
        size = self.network.num_addresses
        # Usable offsets: not the network address, not the IPv4 broadcast address.
        self._first = 1
        self._last = size - 2 if self.network.version == 4 else size - 1
        usable = self._last - self._first + 1
        self._lower_band = min(max(16, usable // 16), 256)
        if self._lower_band >= usable:
            self._lower_band = 0

    @property
    def cidr(self) -> str:
        return str(self.network)

    def kubernetes_ip(self) -> str:
        """The address of the ``kubernetes`` Service: the first of the range."""
        return str(self.network[self._first])

    def usable(self, ip: Address) -> bool:
        if ip.version != self.network.version or ip not in self.network:
            return False
        offset = int(ip) - int(self.network.network_address)
        return self._first <= offset <= self._last

    async def in_use(self, skip: str | None = None) -> dict[str, str]:
        """Addresses held by stored Services: ip -> ``namespace/name`` (``skip`` is a
        ``namespace/name`` left out, the Service being written). Writes that assign an
        address hold ``lock`` until they are stored, and other writes only ever free
        addresses, so a scan made under the lock cannot miss an address in use."""
        used: dict[str, str] = {}
        for entry in (await self.store.list(_SERVICES_PREFIX)).items:
            obj = entry.obj
            meta = obj.get("metadata") or {}
            owner = f"{meta.get('namespace')}/{meta.get('name')}"
            spec = obj.get("spec") or {}
            if owner == skip or not _addressed(spec):
                continue
            for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])]:
                if isinstance(ip, str) and ip and ip != "None":
                    used[_normal(ip)] = owner
        return used

    def pick(self, used: dict[str, str]) -> str | None:
        """A free address: random in the upper band, then any free one."""
        base = int(self.network.network_address)
        low, high = self._first + self._lower_band, self._last
        if low <= high:
            for _ in range(_RANDOM_TRIES):
                candidate = str(ipaddress.ip_address(base + random.randint(low, high)))
                if candidate not in used:
                    return candidate
        for lo, hi in ((low, high), (self._first, min(high, low - 1))):
            if lo > hi:
                continue
            start = random.randint(lo, hi)
            for offset in [*range(start, hi + 1), *range(lo, start)]:
                candidate = str(ipaddress.ip_address(base + offset))
                if candidate not in used:
                    return candidate
        return None

    async def assign(self, info: ResourceInfo, obj: Obj, old: Obj | None = None) -> None:
        """Give a Service about to be stored its cluster IP (or check the one it asks
        for); 422 naming spec.clusterIP when that cannot be. Call with ``lock`` held."""
        spec = obj.get("spec")
        if not isinstance(spec, dict) or not _addressed(spec):
            return
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        old_spec = (old or {}).get("spec") or {}
        ip = spec.get("clusterIP") or ""
        ips = [str(x) for x in spec.get("clusterIPs") or []]
        if not ip and ips:
            ip = ips[0]
        if ip and ips and ips[0] != ip:
            raise invalid(
                info.kind,
                info.group,
                name,
                [_field_problem("spec.clusterIPs[0]", ips[0], "must match spec.clusterIP")],
            )
        if old is not None and _addressed(old_spec) and old_spec.get("clusterIP") and ip:
            # Kept from before (immutability is checked by validation).
            spec["clusterIP"] = ip
            spec["clusterIPs"] = ips or [ip]
            return
        if ip == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            return
        used = await self.in_use(skip=f"{meta.get('namespace')}/{name}")
        if ip:
            try:
                wanted = ipaddress.ip_address(ip)
            except ValueError:
                raise invalid(
                    info.kind,
                    info.group,
                    name,
                    [
                        _field_problem(
                            "spec.clusterIP", ip, "must be a valid IP address, (e.g. 10.9.8.7)"
                        )
                    ],
                ) from None
            if not self.usable(wanted):
                why = (
                    "provided IP is not in the valid range. "
                    f"The range of valid IPs is {self.network}"
                )
                raise invalid(
                    info.kind, info.group, name, [_field_problem("spec.clusterIP", ip, why)]
                )
            if str(wanted) in used:
                raise invalid(
                    info.kind,
                    info.group,
                    name,
                    [_field_problem("spec.clusterIP", ip, "provided IP is already allocated")],
                )
            spec["clusterIP"] = str(wanted)
            spec["clusterIPs"] = [str(wanted)]
            return
        chosen = self.pick(used)
        if chosen is None:
            raise invalid(
                info.kind,
                info.group,
                name,
                [
                    (
                        "spec.clusterIP",
                        f"Internal error: failed to allocate a service IP: the range "
                        f"{self.network} is full",
                    )
                ],
            )
        spec["clusterIP"] = chosen
        spec["clusterIPs"] = [chosen]

    @contextlib.asynccontextmanager
    async def assigning(
        self, info: ResourceInfo, obj: Obj, old: Obj | None = None
    ) -> AsyncIterator[None]:
        """For a Service: hold the lock, assign its address, and keep holding the lock
        while the caller stores it. Anything else passes straight through."""
        if info.kind != "Service" or info.group:
            yield
            return
        async with self.lock:
            await self.assign(info, obj, old)
            yield


def _normal(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


# ---- the kubernetes Service ---------------------------------------------------------------


def advertised_address(host: str, advertise: list[str]) -> str:
    """The address other machines (and the node service proxies) reach the API server
    at: the bind address when it is a specific IP, else the first advertised IP, else
    127.0.0.1."""
    for candidate in [host, *advertise]:
        try:
            ip = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if not ip.is_unspecified:
            return str(ip)
    return "127.0.0.1"


def kubernetes_names(cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[str]:
    """The DNS names of the ``kubernetes`` Service (for the serving certificate)."""
    base = f"{KUBERNETES_SERVICE}.{KUBERNETES_NAMESPACE}"
    return [KUBERNETES_SERVICE, base, f"{base}.svc", f"{base}.svc.{cluster_domain}"]


def _key(kind: str, name: str) -> str:
    return f"registry/core/{kind}/{KUBERNETES_NAMESPACE}/{name}"


async def ensure_kubernetes_service(allocator: ServiceIPs, address: str, port: int) -> str:
    """Create or repair ``default/kubernetes`` and its Endpoints; returns its cluster IP."""
    store = allocator.store
    service_info = for_model(Service)
    endpoints_info = for_model(Endpoints)
    service_port = {"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}
    cluster_ip = ""
    for _ in range(5):
        key = _key("services", KUBERNETES_SERVICE)
        current = await store.get(key)
        if current is None:
            async with allocator.lock:
                used = await allocator.in_use()
                ip = allocator.kubernetes_ip()
                if ip in used:
                    log.warning(
                        "the first service IP %s is taken by %s; the kubernetes Service gets "
                        "another one",
                        ip,
                        used[ip],
                    )
                    ip = allocator.pick(used) or ""
                model = Service.model_validate(
                    {
                        "metadata": {
                            "name": KUBERNETES_SERVICE,
                            "labels": {"component": "apiserver", "provider": "kubernetes"},
                        },
                        "spec": {
                            "type": "ClusterIP",
                            "clusterIP": ip,
                            "clusterIPs": [ip],
                            "ports": [service_port],
                            "sessionAffinity": "None",
                        },
                    }
                )
                admission.prepare_create(service_info, model, KUBERNETES_NAMESPACE)
                obj = admission.admit_new(service_info, model)
                try:
                    await store.create(key, obj)
                except AlreadyExists:
                    continue
            cluster_ip = ip
            break
        spec = current.get("spec") or {}
        cluster_ip = str(spec.get("clusterIP") or "")
        if spec.get("ports") == [service_port] and spec.get("type") == "ClusterIP":
            break
        updated = copy.deepcopy(current)
        updated["spec"]["ports"] = [service_port]
        updated["spec"]["type"] = "ClusterIP"
        try:
            await store.update(key, updated, int(current["metadata"]["resourceVersion"]))
            break
        except (Conflict, NotFound):
            continue
    subsets = [
        {
            "addresses": [{"ip": address}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
    ]
    for _ in range(5):
        key = _key("endpoints", KUBERNETES_SERVICE)
        current = await store.get(key)
        if current is None:
            endpoints = Endpoints.model_validate(
                {
                    "metadata": {
                        "name": KUBERNETES_SERVICE,
                        "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                    },
                    "subsets": subsets,
                }
            )
            admission.prepare_create(endpoints_info, endpoints, KUBERNETES_NAMESPACE)
            try:
                await store.create(key, admission.admit_new(endpoints_info, endpoints))
                break
            except AlreadyExists:
                continue
        if current.get("subsets") == subsets:
            break
        updated = {**current, "subsets": subsets}
        try:
            await store.update(key, updated, int(current["metadata"]["resourceVersion"]))
            break
        except (Conflict, NotFound):
            continue
    return cluster_ip


async def keep_kubernetes_service(
    allocator: ServiceIPs, address: str, port: int, interval: float = 10.0
) -> None:
    """Repair the ``kubernetes`` Service and Endpoints every ``interval`` seconds (someone
    may delete or change them), as Kubernetes' endpoint reconciler does."""
    while True:
        await asyncio.sleep(interval)
        try:
            await ensure_kubernetes_service(allocator, address, port)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a store error must not end the server
            log.warning("could not repair the kubernetes Service: %s", err)
