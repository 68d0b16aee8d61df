"""Where a request goes: parsing the Host header and path, and the table of Service routes
built from Service and Endpoints objects.

Addressing (what users may rely on):
- Host ``<svc>.<ns>.localhost`` (or ``.<domain>`` for each configured domain), ``<svc>.<ns>``,
  ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local``: Service ns/svc, path unchanged;
- path ``/s/<ns>/<svc>/rest`` (or ``/s/<ns>/<svc>:<port>/rest``, port by name or number):
  Service ns/svc, the upstream sees ``/rest``;
- path ``/fn/<ns>/<name>/rest``: Function ns/name (its Service has the same name), held
  through a cold start when no pod is ready.
A Host that names no known Service falls through to the path forms.

Which Service port: the one chosen in the path, else the one named ``http``, else the first.
Which endpoints: the ready addresses of the Endpoints object with the Service's name (and the
not-ready ones too when the Service sets ``publishNotReadyAddresses``), at the endpoint port
with the Service port's name (or the only port, for a Service with one unnamed port).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from kumo.platform.gateway.balancer import (
    POLICIES,
    ROUND_ROBIN,
    Balancer,
    Upstream,
    make_balancer,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LOAD_BALANCER_ANNOTATION = "kumo.dev/load-balancer"
REQUEST_TIMEOUT_ANNOTATION = "kumo.dev/request-timeout"

SERVICE = 0
FUNCTION = 1

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """``"1.5"``, ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"`` -> seconds; None if malformed or
    not positive."""
    match = _DURATION.match(text)
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return seconds if seconds > 0 else None


def is_label(text: str) -> bool:
    return _LABEL.match(text) is not None


class Target:
    """Where one request is addressed: a Service (or Function), a port selector, and the path
    the upstream should see."""

    __slots__ = ("kind", "name", "namespace", "path", "port", "prefix")

    def __init__(
        self,
        kind: int,
        namespace: str,
        name: str,
        *,
        path: bytes,
        port: str | None = None,
        prefix: bytes | None = None,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.port = port
        self.path = path
        self.prefix = prefix

    def __repr__(self) -> str:
        kind = "function" if self.kind == FUNCTION else "service"
        return f"Target({kind} {self.namespace}/{self.name} port={self.port} path={self.path!r})"


def service_from_host(host: str, domains: Iterable[str]) -> tuple[str, str] | None:
    """(namespace, service) named by a Host header value, or None."""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal
        return None
    name = name.partition(":")[0].rstrip(".")
    rest: str | None = None
    for suffix in ("svc.cluster.local", "svc", *domains):
        if name.endswith("." + suffix):
            rest = name[: -len(suffix) - 1]
            break
    if rest is None:
        rest = name
    service, dot, namespace = rest.partition(".")
    if not dot or "." in namespace or not is_label(service) or not is_label(namespace):
        return None
    if service.isdigit() and namespace.isdigit():
        return None
    return namespace, service


def path_prefix_end(url: bytes) -> int:
    """Where the ``/s/<ns>/<svc>[:<port>]`` or ``/fn/<ns>/<name>`` prefix of a path ends (the
    index of the ``/`` or ``?`` after it, or the length), or -1 if the path has neither form."""
    if url.startswith(b"/s/"):
        start = 3
    elif url.startswith(b"/fn/"):
        start = 4
    else:
        return -1
    slash = url.find(b"/", start)
    if slash < 0:
        return -1
    end = url.find(b"/", slash + 1)
    if end < 0:
        end = len(url)
    query = url.find(b"?", slash + 1, end)
    return end if query < 0 else query


def parse_path_prefix(prefix: bytes) -> tuple[int, str, str, str | None] | None:
    """(kind, namespace, name, port selector) of a prefix ``path_prefix_end`` delimited."""
    kind, start = (SERVICE, 3) if prefix.startswith(b"/s/") else (FUNCTION, 4)
    namespace, _, name = prefix[start:].partition(b"/")
    port: bytes | None = None
    if kind == SERVICE and b":" in name:
        name, _, port = name.partition(b":")
        port = port or None
    try:
        namespace_text = namespace.decode("ascii")
        name_text = name.decode("ascii")
        port_text = port.decode("ascii") if port is not None else None
    except UnicodeDecodeError:
        return None
    if not is_label(namespace_text) or not is_label(name_text):
        return None
    return kind, namespace_text, name_text, port_text


def upstream_path(url: bytes, prefix_end: int) -> bytes:
    """The path the upstream sees once the routing prefix is stripped (at least ``/``)."""
    rest = url[prefix_end:]
    return rest if rest.startswith(b"/") else b"/" + rest


def split_path_target(url: bytes) -> Target | None:
    """The ``/s/<ns>/<svc>[:<port>]/...`` and ``/fn/<ns>/<name>/...`` forms, or None."""
    end = path_prefix_end(url)
    if end < 0:
        return None
    parsed = parse_path_prefix(url[:end])
    if parsed is None:
        return None
    kind, namespace, name, port = parsed
    return Target(kind, namespace, name, path=upstream_path(url, end), port=port, prefix=url[:end])


class PortRoute:
    """One Service port and the balancer over its endpoints."""

    __slots__ = ("balancer", "name", "port")

    def __init__(self, name: str | None, port: int, balancer: Balancer) -> None:
        self.name = name
        self.port = port
        self.balancer = balancer

    def describe(self) -> str:
        return f"{self.name}/{self.port}" if self.name else str(self.port)


S = TypeVar("S")


class ServiceRoute(Generic[S]):
    """A Service as the proxy sees it: ports with balancers, policy, timeout, stats."""

    __slots__ = (
        "default",
        "display",
        "name",
        "namespace",
        "note",
        "policy",
        "ports",
        "request_timeout",
        "stats",
    )

    def __init__(
        self,
        namespace: str,
        name: str,
        ports: list[PortRoute],
        *,
        policy: str,
        request_timeout: float,
        stats: S,
        note: str = "",
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.display = f"{namespace}/{name}"
        self.ports = ports
        self.policy = policy
        self.request_timeout = request_timeout
        self.stats = stats
        self.note = note
        self.default: PortRoute | None = None
        for port in ports:
            if port.name == "http":
                self.default = port
                break
        if self.default is None and ports:
            self.default = ports[0]

    def select_port(self, selector: str | None) -> PortRoute | None:
        if selector is None:
            return self.default
        for port in self.ports:
            if port.name == selector or str(port.port) == selector:
                return port
        return None

    @property
    def ready(self) -> bool:
        """Whether the default port has at least one endpoint."""
        return self.default is not None and bool(self.default.balancer.upstreams)

    def upstreams(self) -> list[Upstream]:
        """Every upstream of every port (an address listed by two ports appears twice: the
        route holds a reference per port)."""
        return [u for port in self.ports for u in port.balancer.upstreams]


def _annotations(obj: Obj) -> dict[str, str]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations if isinstance(annotations, dict) else {}


def _endpoint_addresses(
    service_port_name: str | None,
    only_port: bool,
    endpoints: Obj | None,
    include_not_ready: bool,
) -> list[tuple[str, int]]:
    found: dict[tuple[str, int], None] = {}
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        match = None
        for port in ports:
            if (port.get("name") or None) == service_port_name:
                match = port
                break
        if match is None and only_port and len(ports) == 1:
            match = ports[0]
        if match is None or (match.get("protocol") or "TCP") != "TCP":
            continue
        number = match.get("port")
        if not isinstance(number, int) or not 0 < number < 65536:
            continue
        groups = [subset.get("addresses") or []]
        if include_not_ready:
            groups.append(subset.get("notReadyAddresses") or [])
        for group in groups:
            for address in group:
                ip = address.get("ip")
                if isinstance(ip, str) and ip:
                    found[(ip, number)] = None
    return list(found)


class RouteTable(Generic[S]):
    """Service routes by (namespace, name), rebuilt from the informers' objects on change.

    ``stats_for(namespace, name)`` gives the metrics object a route carries; ``drop_stats`` is
    called when a Service goes away."""

    def __init__(
        self,
        stats_for: Callable[[str, str], S],
        *,
        default_timeout: float,
        drop_stats: Callable[[str, str], None] | None = None,
    ) -> None:
        self.routes: dict[tuple[str, str], ServiceRoute[S]] = {}
        self.stats_for = stats_for
        self.drop_stats = drop_stats
        self.default_timeout = default_timeout
        self._upstreams: dict[tuple[str, int], Upstream] = {}
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    def get(self, namespace: str, name: str) -> ServiceRoute[S] | None:
        return self.routes.get((namespace, name))

    @property
    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams.values())

    # ---- building -----------------------------------------------------------------------

    def update(self, namespace: str, name: str, service: Obj | None, endpoints: Obj | None) -> None:
        """Rebuild the route for Service namespace/name from its current objects (None when
        the object does not exist)."""
        key = (namespace, name)
        old = self.routes.get(key)
        if service is None:
            if old is not None:
                del self.routes[key]
                self._release(old.upstreams())
                if self.drop_stats is not None:
                    self.drop_stats(namespace, name)
            return
        route = self._build(namespace, name, service, endpoints)
        self.routes[key] = route
        if old is not None:
            self._release(old.upstreams())
        if route.ready:
            self._wake(key)

    def _build(
        self, namespace: str, name: str, service: Obj, endpoints: Obj | None
    ) -> ServiceRoute[S]:
        annotations = _annotations(service)
        display = f"{namespace}/{name}"
        policy = annotations.get(LOAD_BALANCER_ANNOTATION, ROUND_ROBIN).strip().lower()
        if policy not in POLICIES:
            log.warning(
                "service %s: unknown %s %r (use %s); using %s",
                display,
                LOAD_BALANCER_ANNOTATION,
                policy,
                " or ".join(POLICIES),
                ROUND_ROBIN,
            )
            policy = ROUND_ROBIN
        timeout = self.default_timeout
        text = annotations.get(REQUEST_TIMEOUT_ANNOTATION)
        if text is not None:
            parsed = parse_duration(text)
            if parsed is None:
                log.warning(
                    "service %s: malformed %s %r (e.g. 30s, 500ms); using %.0fs",
                    display,
                    REQUEST_TIMEOUT_ANNOTATION,
                    text,
                    timeout,
                )
            else:
                timeout = parsed
        spec = service.get("spec") or {}
        note = ""
        if spec.get("type") == "ExternalName":
            note = "ExternalName services are not proxied by the gateway"
        include_not_ready = bool(spec.get("publishNotReadyAddresses"))
        service_ports = [
            p
            for p in spec.get("ports") or []
            if isinstance(p, dict) and (p.get("protocol") or "TCP") == "TCP"
        ]
        ports: list[PortRoute] = []
        for service_port in service_ports:
            port_name = service_port.get("name") or None
            addresses = _endpoint_addresses(
                port_name, len(service_ports) == 1, endpoints, include_not_ready
            )
            upstreams = [self._acquire(host, number) for host, number in addresses]
            balancer = make_balancer(policy, upstreams)
            ports.append(PortRoute(port_name, int(service_port.get("port") or 0), balancer))
        return ServiceRoute(
            namespace,
            name,
            ports,
            policy=policy,
            request_timeout=timeout,
            stats=self.stats_for(namespace, name),
            note=note,
        )

    def _acquire(self, host: str, port: int) -> Upstream:
        upstream = self._upstreams.get((host, port))
        if upstream is None:
            upstream = Upstream(host, port)
            self._upstreams[(host, port)] = upstream
        upstream.refs += 1
        return upstream

    def _release(self, upstreams: Iterable[Upstream]) -> None:
        for upstream in upstreams:
            # a route holds one reference per port that lists the address
            upstream.refs -= 1
            if upstream.refs <= 0:
                self._upstreams.pop((upstream.host, upstream.port), None)
                upstream.retired = True
                upstream.close_idle()

    def clear(self) -> None:
        for route in list(self.routes.values()):
            self._release(route.upstreams())
        self.routes.clear()

    # ---- waiting for readiness ------------------------------------------------------------

    async def wait_ready(self, namespace: str, name: str) -> ServiceRoute[S]:
        """Until Service namespace/name has a ready endpoint on its default port."""
        key = (namespace, name)
        while True:
            route = self.routes.get(key)
            if route is not None and route.ready:
                return route
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, []).append(waiter)
            try:
                await waiter
            finally:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    if waiter in waiters:
                        waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[key]

    def _wake(self, key: tuple[str, str]) -> None:
        for waiter in self._waiters.get(key, ()):
            if not waiter.done():
                waiter.set_result(None)
