"""Settings of a node agent (``kumo agent`` flags, ``run_agent`` keyword arguments).

Every duration is in seconds. The defaults are Kubernetes' kubelet defaults where one
exists (crash-loop back-off 10 s doubling to 5 min and reset after 10 min of running,
110 pods, a 40 s lease); tests shorten them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumo.client.config import home
from kumo.model.validation import QuantityError, cpu_millis, dns1123_subdomain, memory_bytes

__all__ = ["AgentOptions", "OptionsError", "default_node_name", "parse_labels", "parse_port_range"]

# A unix socket path holds at most 107 bytes; the Podman service's socket lives in
# the agent's state directory, so long data dirs move it under /run.
_SOCKET_PATH_MAX = 100


class OptionsError(ValueError):
    """A setting is invalid; the message says which and why."""


def default_node_name() -> str:
    """The machine's host name, lower-cased (Kubernetes' default node name)."""
    return socket.gethostname().lower()


def parse_labels(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` → ``{"a": "1", "b": "2"}``."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"invalid label {item!r} (use key=value)")
        labels[key.strip()] = value.strip()
    return labels


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-32767"`` → ``(30000, 32767)``."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match:
        raise OptionsError(f"invalid port range {text!r} (use FIRST-LAST, e.g. 30000-32767)")
    first, last = int(match.group(1)), int(match.group(2))
    if not 0 < first <= last < 65536:
        raise OptionsError(f"invalid port range {text!r}")
    return first, last


@dataclass(slots=True)
class AgentOptions:
    """Everything a node agent can be told. Build with ``AgentOptions.build(**kwargs)``
    to get validation and string forms (``"cpu=100m,memory=256Mi"``) accepted."""

    node_name: str = field(default_factory=default_node_name)
    address: str = "127.0.0.1"
    data_dir: Path = field(default_factory=lambda: home() / "agent")
    node_labels: dict[str, str] = field(default_factory=dict)
    # The port of the agent's own HTTPS server (logs / exec), advertised in the Node.
    kubelet_port: int = 10250
    port_range: tuple[int, int] = (30000, 32767)
    max_pods: int = 110
    reserved_cpu_millis: int = 100
    reserved_memory_bytes: int = 256 * 1024 * 1024
    lease_duration_seconds: int = 40
    lease_renew_interval: float = 10.0
    status_update_interval: float = 10.0
    # How often a pod is looked at even when nothing signalled a change.
    sync_period: float = 10.0
    restart_backoff_initial: float = 10.0
    restart_backoff_max: float = 300.0
    restart_backoff_reset: float = 600.0
    image_backoff_initial: float = 10.0
    image_backoff_max: float = 300.0
    # Containers and sandboxes no pod owns are removed once unowned for this long.
    orphan_grace_period: float = 60.0
    housekeeping_interval: float = 10.0
    # Node and container usage is sampled this often: the window of resource metrics.
    stats_interval: float = 10.0
    # ConfigMap and Secret volumes are refreshed this often.
    config_refresh_interval: float = 30.0
    podman_url: str | None = None
    podman_root: Path | None = None
    podman_runroot: Path | None = None
    podman_tmpdir: Path | None = None
    # A read-only store whose images this node's own storage may use as well.
    podman_image_store: Path | None = None
    containers_conf: Path | None = None
    # Services. The service proxy (ClusterIP listeners and the cluster DNS server, see
    # kumo.node.serviceproxy) runs on one agent per machine and service CIDR. Pods with
    # dnsPolicy ClusterFirst get ``cluster_dns`` as their nameserver ("" = the node's).
    service_proxy: bool = True
    service_cidr: str = "10.96.0.0/16"
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"

    @classmethod
    def build(cls, **values: Any) -> AgentOptions:
        """Options from keyword arguments (unknown names are an error); strings are
        accepted for ``node_labels``, ``port_range``, ``reserved`` (``"cpu=100m,memory=1Gi"``)
        and paths."""
        known = {f.name for f in dataclasses.fields(cls)}
        reserved = values.pop("reserved", None)
        unknown = sorted(set(values) - known)
        if unknown:
            raise OptionsError(f"unknown agent option(s): {', '.join(unknown)}")
        values = {k: v for k, v in values.items() if v is not None}
        if isinstance(values.get("node_labels"), str):
            values["node_labels"] = parse_labels(values["node_labels"])
        if isinstance(values.get("port_range"), str):
            values["port_range"] = parse_port_range(values["port_range"])
        for name in (
            "data_dir",
            "podman_root",
            "podman_runroot",
            "podman_tmpdir",
            "podman_image_store",
            "containers_conf",
        ):
            if isinstance(values.get(name), str):
                values[name] = Path(values[name])
        options = cls(**values)
        if reserved:
            options.apply_reserved(reserved)
        options.validate()
        return options

    def apply_reserved(self, text: str) -> None:
        """``"cpu=200m,memory=512Mi"``: resources held back from pods."""
        for key, value in parse_labels(text).items():
            try:
                if key == "cpu":
                    self.reserved_cpu_millis = cpu_millis(value)
                elif key == "memory":
                    self.reserved_memory_bytes = memory_bytes(value)
                else:
                    raise OptionsError(f"cannot reserve {key!r} (only cpu and memory)")
            except QuantityError as err:
                raise OptionsError(f"invalid reservation {key}={value}: {err}") from err

    def validate(self) -> None:
        problems = dns1123_subdomain(self.node_name)
        if problems:
            raise OptionsError(f"invalid node name {self.node_name!r}: {problems[0]}")
        if not self.address:
            raise OptionsError("the node address must not be empty")
        first, last = self.port_range
        if not 0 < first <= last < 65536:
            raise OptionsError(f"invalid port range {first}-{last}")
        if not 0 < self.kubelet_port < 65536:
            raise OptionsError(f"invalid kubelet port {self.kubelet_port}")
        if self.max_pods < 1:
            raise OptionsError("max pods must be at least 1")
        positive = (
            "lease_renew_interval",
            "status_update_interval",
            "sync_period",
            "restart_backoff_initial",
            "restart_backoff_max",
            "image_backoff_initial",
            "image_backoff_max",
            "housekeeping_interval",
            "stats_interval",
            "config_refresh_interval",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise OptionsError(f"{name.replace('_', '-')} must be positive")
        if self.lease_duration_seconds < 1:
            raise OptionsError("the lease duration must be at least 1 s")
        if self.orphan_grace_period < 0 or self.restart_backoff_reset < 0:
            raise OptionsError("grace periods must not be negative")
        if self.podman_url and (self.podman_root or self.podman_runroot or self.podman_tmpdir):
            raise OptionsError(
                "--podman-url cannot be combined with --podman-root/--podman-runroot"
            )
        if self.podman_image_store and not self.podman_root:
            raise OptionsError("--podman-image-store needs --podman-root")
        self._validate_services()

    def _validate_services(self) -> None:
        try:
            network = ipaddress.ip_network(self.service_cidr, strict=True)
        except ValueError as err:
            raise OptionsError(f"invalid service CIDR {self.service_cidr!r}: {err}") from err
        if network.is_loopback or network.overlaps(ipaddress.ip_network("127.0.0.0/8")):
            raise OptionsError(f"the service CIDR {self.service_cidr} overlaps the loopback range")
        if self.cluster_dns:
            try:
                dns = ipaddress.ip_address(self.cluster_dns)
            except ValueError as err:
                raise OptionsError(f"invalid cluster DNS address {self.cluster_dns!r}") from err
            if self.service_proxy and (dns.version != network.version or dns not in network):
                raise OptionsError(
                    f"the cluster DNS address {self.cluster_dns} is not in the service CIDR "
                    f"{self.service_cidr} (the service proxy serves it there)"
                )
        problems = dns1123_subdomain(self.cluster_domain)
        if problems:
            raise OptionsError(f"invalid cluster domain {self.cluster_domain!r}: {problems[0]}")

    # ---- derived paths ---------------------------------------------------------------

    @property
    def pods_dir(self) -> Path:
        """Per-pod state (volumes) lives in ``pods_dir/<pod uid>``."""
        return self.data_dir / "pods"

    @property
    def podman_state_dir(self) -> Path:
        """Where the agent's own Podman service keeps its socket and pid file. It
        survives agent restarts so a restarted agent stops a stale service first."""
        preferred = self.data_dir / "podman"
        if len(str(preferred / "podman.sock")) <= _SOCKET_PATH_MAX:
            return preferred
        key = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/run/kumo-agent") / key
