"""How a pod finds Services: the environment variables the kubelet sets for them, and the
pod's resolv.conf (cluster DNS first).

Environment (Kubernetes' ``FromServices`` and Docker link variables), for every Service of
the pod's namespace that has a cluster IP when the container starts (unless the pod says
``enableServiceLinks: false``), plus the ``kubernetes`` Service of ``default`` always::

    WEB_SERVICE_HOST=10.96.12.7          WEB_PORT=tcp://10.96.12.7:80
    WEB_SERVICE_PORT=80                  WEB_PORT_80_TCP=tcp://10.96.12.7:80
    WEB_SERVICE_PORT_HTTP=80             WEB_PORT_80_TCP_PROTO=tcp
                                         WEB_PORT_80_TCP_PORT=80
                                         WEB_PORT_80_TCP_ADDR=10.96.12.7

Names are upper-cased with ``-`` turned into ``_``. The container's own ``env`` wins over
these.

DNS (``dnsPolicy``): ClusterFirst (the default) puts the cluster DNS first with the search
path ``<ns>.svc.<domain> svc.<domain> <domain>`` and ``ndots:5``, then whatever
``dnsConfig`` adds; Default keeps the node's resolv.conf; None uses ``dnsConfig`` alone.
Without a cluster DNS address ClusterFirst falls back to Default, as the kubelet does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from kumo.model.core import Pod, Service
from kumo.node.runtime import DNSConfig

__all__ = [
    "KUBERNETES_NAMESPACE",
    "KUBERNETES_SERVICE",
    "env_name",
    "pod_dns_config",
    "service_env",
    "services_for_env",
]

KUBERNETES_SERVICE = "kubernetes"
KUBERNETES_NAMESPACE = "default"
_MAX_NAMESERVERS = 3
_MAX_SEARCHES = 32


def env_name(name: str) -> str:
    """``my-svc`` -> ``MY_SVC``."""
    return name.replace("-", "_").upper()


def _has_ip(service: Service) -> bool:
    ip = service.spec.cluster_ip
    return bool(ip) and ip != "None"


def services_for_env(
    services: Iterable[Service], namespace: str, enable_service_links: bool
) -> list[Service]:
    """The Services whose variables a pod in ``namespace`` gets (the kubelet's
    ``getServiceEnvVarMap``): its namespace's (when links are enabled), and the
    ``kubernetes`` Service of ``default`` unless the namespace has one of that name."""
    chosen: dict[str, Service] = {}
    for service in services:
        meta = service.metadata
        name = meta.name or ""
        if not _has_ip(service):
            continue
        if meta.namespace == KUBERNETES_NAMESPACE and name == KUBERNETES_SERVICE:
            chosen.setdefault(name, service)
        elif meta.namespace == namespace and enable_service_links:
            chosen[name] = service
    return [chosen[name] for name in sorted(chosen)]


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_env(services: Iterable[Service]) -> dict[str, str]:
    """The variables of these Services (those without a cluster IP are skipped)."""
    env: dict[str, str] = {}
    for service in services:
        ports = service.spec.ports or []
        ip = service.spec.cluster_ip or ""
        if not _has_ip(service) or not ports:
            continue
        prefix = env_name(service.metadata.name or "")
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].port)
        for port in ports:
            if port.name:
                env[f"{prefix}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
        for i, port in enumerate(ports):
            protocol = port.protocol or "TCP"
            url = f"{protocol.lower()}://{_host_port(ip, port.port)}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{port.port}_{protocol.upper()}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = protocol.lower()
            env[f"{port_prefix}_PORT"] = str(port.port)
            env[f"{port_prefix}_ADDR"] = ip
    return env


def pod_dns_config(pod: Pod, cluster_dns: str, cluster_domain: str) -> DNSConfig | None:
    """The sandbox's resolv.conf settings; None keeps the node's."""
    spec = pod.spec
    policy = spec.dns_policy or "ClusterFirst"
    extra = spec.dns_config
    extra_servers = tuple(extra.nameservers or ()) if extra else ()
    extra_searches = tuple(extra.searches or ()) if extra else ()
    extra_options = tuple(
        f"{o.name}:{o.value}" if o.value else (o.name or "")
        for o in ((extra.options or []) if extra else [])
        if o.name
    )
    if policy == "None":
        if extra is None:
            return None
        return DNSConfig(servers=extra_servers, searches=extra_searches, options=extra_options)
    cluster_first = policy == "ClusterFirstWithHostNet" or (
        policy == "ClusterFirst" and not spec.host_network
    )
    if not cluster_first or not _valid_ip(cluster_dns):
        if not (extra_servers or extra_searches or extra_options):
            return None
        return DNSConfig(servers=extra_servers, searches=extra_searches, options=extra_options)
    namespace = pod.metadata.namespace or "default"
    domain = cluster_domain.strip(".")
    servers = _unique((cluster_dns, *extra_servers))[:_MAX_NAMESERVERS]
    searches = _unique((f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *extra_searches))
    options: dict[str, str] = {"ndots": "ndots:5"}
    for option in extra_options:
        options[option.split(":", 1)[0]] = option
    return DNSConfig(
        servers=servers,
        searches=searches[:_MAX_SEARCHES],
        options=tuple(options.values()),
    )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for item in items if item))


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
