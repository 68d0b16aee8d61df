"""The container runtime a kumo node agent runs pods with.

``ContainerRuntime`` is the contract between the node agent and whatever runs
containers: ``kumo.node.runtime.podman.PodmanRuntime`` in production (Podman
through its API socket) and ``kumo.node.runtime.fake.FakeRuntime`` in unit
tests. The model follows the Kubernetes CRI:

* a **sandbox** is one kumo Pod: a podman pod whose infra container holds the
  network, IPC and UTS namespaces that all of the pod's containers share (they
  reach each other on ``localhost``); published ports belong to the sandbox;
* **containers** are created in a sandbox, started, stopped and removed one by
  one, so the agent decides the order (init containers first) and when to
  restart. A restart is a new container with a higher ``attempt``; the previous
  one stays (exited) until the agent removes it, so its logs remain readable.

Ownership: every sandbox, container and volume a runtime creates carries the
label ``kumo.dev/node=<node name>``; list and event calls only ever return objects
carrying this runtime's node label. Two agents on one machine (even sharing one
Podman storage) therefore never see or touch each other's containers. Pod
identity labels (``kumo.dev/pod-uid``, ``-name``, ``-namespace``) go on the
sandbox and on each of its containers, together with the container name and
attempt, so an agent that restarts can adopt what is running and find orphans
from ``list_sandboxes`` / ``list_containers`` alone.

Every method raises only ``ContainerRuntimeError`` subclasses (never an error
of the client library underneath). All methods are coroutines (or async
iterators) and are safe to call concurrently.
"""

from __future__ import annotations

import enum
import re
import signal as _signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "LABEL_ATTEMPT",
    "LABEL_CONTAINER_NAME",
    "LABEL_NODE",
    "LABEL_POD_NAME",
    "LABEL_POD_NAMESPACE",
    "LABEL_POD_UID",
    "MIN_MEMORY_LIMIT",
    "RESERVED_LABELS",
    "BindMount",
    "Conflict",
    "ContainerConfig",
    "ContainerEvent",
    "ContainerRuntime",
    "ContainerRuntimeError",
    "ContainerStartError",
    "ContainerState",
    "ContainerStats",
    "ContainerStatus",
    "ContainerSummary",
    "DNSConfig",
    "ExecResult",
    "ExecSession",
    "ExecTimeout",
    "HostAlias",
    "ImageInfo",
    "ImageNotFound",
    "ImagePullError",
    "InvalidConfig",
    "LogLine",
    "LogStream",
    "Mount",
    "NotFound",
    "PortMapping",
    "Resources",
    "RuntimeInfo",
    "RuntimeUnavailable",
    "SandboxConfig",
    "SandboxState",
    "SandboxStatus",
    "SandboxSummary",
    "SecurityConfig",
    "TmpfsMount",
    "VolumeInfo",
    "VolumeMount",
    "container_name",
    "effective_capabilities",
    "normalize_capability",
    "normalize_signal",
    "sandbox_name",
    "validate_container_config",
    "validate_labels",
    "validate_name",
    "validate_sandbox_config",
]

# --------------------------------------------------------------------------- labels

LABEL_NODE = "kumo.dev/node"
LABEL_POD_UID = "kumo.dev/pod-uid"
LABEL_POD_NAME = "kumo.dev/pod-name"
LABEL_POD_NAMESPACE = "kumo.dev/pod-namespace"
LABEL_CONTAINER_NAME = "kumo.dev/container-name"
LABEL_ATTEMPT = "kumo.dev/attempt"

#: Labels the runtime sets itself; a config's own ``labels`` may not use these keys.
RESERVED_LABELS = frozenset(
    {
        LABEL_NODE,
        LABEL_POD_UID,
        LABEL_POD_NAME,
        LABEL_POD_NAMESPACE,
        LABEL_CONTAINER_NAME,
        LABEL_ATTEMPT,
    }
)

# --------------------------------------------------------------------------- errors


class ContainerRuntimeError(Exception):
    """Base of every error a ``ContainerRuntime`` raises. ``reason`` is a short,
    human-readable explanation fit for a Pod condition or event message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RuntimeUnavailable(ContainerRuntimeError):
    """The runtime cannot be reached (socket missing, service not starting)."""


class NotFound(ContainerRuntimeError):
    """The sandbox, container, volume or exec session does not exist."""


class ImageNotFound(NotFound):
    """The image is not present locally (create needs it pulled first)."""

    def __init__(self, image: str, reason: str | None = None) -> None:
        super().__init__(reason or f"image {image!r} is not present on this node")
        self.image = image


class ImagePullError(ContainerRuntimeError):
    """Pulling an image failed. ``reason`` says why (no registry reachable, no such
    repository, short name that does not resolve, ...); the agent reports it as
    ErrImagePull and then ImagePullBackOff."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"failed to pull image {image!r}: {reason}")
        self.image = image
        self.pull_reason = reason


class Conflict(ContainerRuntimeError):
    """The request conflicts with the current state: the name is taken, or the
    container is in the wrong state (removing a running container without force,
    killing one that is not running)."""


class InvalidConfig(ContainerRuntimeError):
    """The sandbox or container configuration was rejected (bad mount source,
    unknown user, invalid signal, reserved label, ...). The agent reports it as
    CreateContainerConfigError."""


class ContainerStartError(ContainerRuntimeError):
    """The container exists but its process could not be started (executable
    not found, permission denied, ...). The container stays CREATED (never ran,
    no exit code) until it is removed; ``container_status().error`` repeats the
    message for as long as this runtime object lives."""


class ExecTimeout(ContainerRuntimeError):
    """An exec did not finish within its timeout. The runtime has tried to kill it."""


# --------------------------------------------------------------------------- helpers

#: Capabilities a container gets when its security settings ask for nothing else:
#: Podman's reduced default set (no NET_RAW, MKNOD, AUDIT_WRITE, SYS_ADMIN, ...).
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)

#: Every capability name the runtime accepts in ``cap_add`` / ``cap_drop`` (plus "ALL").
ALL_CAPABILITIES: frozenset[str] = frozenset(
    (
        "CAP_AUDIT_CONTROL",
        "CAP_AUDIT_READ",
        "CAP_AUDIT_WRITE",
        "CAP_BLOCK_SUSPEND",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_KILL",
        "CAP_LEASE",
        "CAP_LINUX_IMMUTABLE",
        "CAP_MAC_ADMIN",
        "CAP_MAC_OVERRIDE",
        "CAP_MKNOD",
        "CAP_NET_ADMIN",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_RAW",
        "CAP_PERFMON",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_CHROOT",
        "CAP_SYS_MODULE",
        "CAP_SYS_NICE",
        "CAP_SYS_PACCT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
    )
)


def normalize_capability(name: str) -> str:
    """``"net_admin"``, ``"NET_ADMIN"`` and ``"CAP_NET_ADMIN"`` all become
    ``"CAP_NET_ADMIN"``; ``"all"`` becomes ``"ALL"``. Unknown names raise InvalidConfig."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in ALL_CAPABILITIES:
        raise InvalidConfig(f"unknown capability {name!r}")
    return full


def effective_capabilities(
    add: Sequence[str], drop: Sequence[str], *, privileged: bool = False
) -> frozenset[str]:
    """The exact capability set a container runs with: the default set, minus
    ``drop`` ("ALL" drops everything), plus ``add`` ("ALL" adds everything).
    Privileged containers get every capability."""
    if privileged:
        return ALL_CAPABILITIES
    added = {normalize_capability(c) for c in add}
    dropped = {normalize_capability(c) for c in drop}
    result = set() if "ALL" in dropped else set(DEFAULT_CAPABILITIES) - dropped
    if "ALL" in added:
        return ALL_CAPABILITIES
    return frozenset(result | added)


def normalize_signal(value: str | int) -> int:
    """``"TERM"``, ``"SIGTERM"``, ``"15"`` and ``15`` all mean signal 15."""
    if isinstance(value, int):
        number = value
    elif value.strip().isdigit():
        number = int(value.strip())
    else:
        upper = value.strip().upper()
        name = upper if upper.startswith("SIG") else "SIG" + upper
        try:
            number = int(_signal.Signals[name])
        except KeyError:
            raise InvalidConfig(f"unknown signal {value!r}") from None
    if not 0 < number < 65:
        raise InvalidConfig(f"invalid signal number {number}")
    return number


def sandbox_name(namespace: str, name: str, uid: str) -> str:
    """The Podman pod name of a kumo Pod (unique per pod uid)."""
    return f"kumo_{namespace}_{name}_{uid}"


def container_name(
    namespace: str, pod_name: str, pod_uid: str, container: str, attempt: int
) -> str:
    """The Podman container name of one attempt of a pod's container (unique per
    pod uid, container name and attempt)."""
    return f"kumo_{namespace}_{pod_name}_{container}_{pod_uid}_{attempt}"


# --------------------------------------------------------------------------- validation

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_HOSTNAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

#: The smallest memory limit Podman accepts.
MIN_MEMORY_LIMIT = 6 * 1024 * 1024


def validate_name(value: str, what: str) -> None:
    """Names that become part of Podman object names: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    if not value or not _NAME.match(value):
        raise InvalidConfig(f"invalid {what} {value!r}")


def validate_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        if key in RESERVED_LABELS:
            raise InvalidConfig(f"label {key!r} is set by the runtime itself")
        if not _LABEL_KEY.match(key):
            raise InvalidConfig(f"invalid label key {key!r}")
        if not isinstance(value, str):
            raise InvalidConfig(f"label {key!r} must have a string value")


def validate_sandbox_config(config: SandboxConfig) -> str:
    """Check a sandbox config the way every runtime must; returns the hostname the
    sandbox gets (``config.hostname`` or the pod name cut to 63 characters)."""
    validate_labels(config.labels)
    validate_name(config.namespace, "pod namespace")
    validate_name(config.name, "pod name")
    validate_name(config.uid, "pod uid")
    hostname = config.hostname or config.name[:63].rstrip("-.")
    if len(hostname) > 63 or not _HOSTNAME.match(hostname):
        raise InvalidConfig(f"invalid hostname {hostname!r}")
    seen: set[tuple[str, int, str]] = set()
    for port in config.ports:
        if not (0 < port.container_port < 65536 and 0 < port.host_port < 65536):
            raise InvalidConfig(f"invalid port mapping {port}")
        if port.protocol not in ("tcp", "udp"):
            raise InvalidConfig(f"invalid protocol {port.protocol!r}")
        key = (port.host_ip, port.host_port, port.protocol)
        if key in seen:
            raise InvalidConfig(f"host port {port.host_port}/{port.protocol} is published twice")
        seen.add(key)
    for alias in config.host_aliases:
        if not alias.ip or not alias.hostnames:
            raise InvalidConfig(f"invalid host alias {alias}")
    return hostname


def validate_container_config(config: ContainerConfig) -> None:
    """Check a container config the way every runtime must (everything that needs
    no I/O; runtimes also check that bind-mounted host paths exist)."""
    validate_labels(config.labels)
    validate_name(config.name, "container name")
    if not config.image or any(c.isspace() for c in config.image):
        raise InvalidConfig(f"invalid image reference {config.image!r}")
    if config.attempt < 0:
        raise InvalidConfig("attempt must not be negative")
    for key in config.env:
        if not key or "=" in key or "\0" in key:
            raise InvalidConfig(f"invalid environment variable name {key!r}")
    destinations: set[str] = set()
    for mount in config.mounts:
        if not mount.container_path.startswith("/"):
            raise InvalidConfig(f"mount path {mount.container_path!r} is not absolute")
        if mount.container_path in destinations:
            raise InvalidConfig(f"two mounts at {mount.container_path!r}")
        destinations.add(mount.container_path)
        if isinstance(mount, BindMount) and not mount.host_path.startswith("/"):
            raise InvalidConfig(f"host path {mount.host_path!r} is not absolute")
        if isinstance(mount, VolumeMount):
            validate_name(mount.volume, "volume name")
    resources = config.resources
    if resources.memory_limit_bytes is not None and resources.memory_limit_bytes < MIN_MEMORY_LIMIT:
        raise InvalidConfig("memory limit must be at least 6 MiB")
    if resources.cpu_quota_us is not None and resources.cpu_quota_us < 1000:
        raise InvalidConfig("cpu quota must be at least 1000 microseconds")
    if not 1000 <= resources.cpu_period_us <= 1_000_000:
        raise InvalidConfig("cpu period must be between 1 ms and 1 s")
    if resources.cpu_shares is not None and resources.cpu_shares < 2:
        raise InvalidConfig("cpu shares must be at least 2")
    if resources.pids_limit is not None and resources.pids_limit == 0:
        raise InvalidConfig("pids limit must be positive (or -1 for no limit)")
    security = config.security
    if security.run_as_user is not None and security.run_as_user < 0:
        raise InvalidConfig("run_as_user must not be negative")
    if security.run_as_group is not None and security.run_as_group < 0:
        raise InvalidConfig("run_as_group must not be negative")
    if any(g < 0 for g in security.supplemental_groups):
        raise InvalidConfig("supplemental groups must not be negative")
    effective_capabilities(security.cap_add, security.cap_drop, privileged=False)
    if config.stop_signal:
        normalize_signal(config.stop_signal)


# --------------------------------------------------------------------------- sandboxes


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A container port published on the node: ``host_ip:host_port`` forwards to
    ``container_port`` in the sandbox. ``host_ip`` "" means every host address.
    The agent chooses ``host_port`` (hostPort, or one it allocated)."""

    container_port: int
    host_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = ""


@dataclass(frozen=True, slots=True)
class HostAlias:
    """An extra /etc/hosts entry (Kubernetes ``hostAliases``)."""

    ip: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """/etc/resolv.conf of the sandbox. Empty fields keep the node's own values."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """What ``run_sandbox`` needs for one kumo Pod. ``hostname`` defaults to the
    pod name (cut to 63 characters); ``labels`` are extra labels (the runtime adds
    the node and pod identity labels itself)."""

    namespace: str
    name: str
    uid: str
    hostname: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[PortMapping, ...] = ()
    host_aliases: tuple[HostAlias, ...] = ()
    dns: DNSConfig | None = None


class SandboxState(enum.StrEnum):
    READY = "ready"  # the infra container runs: the network namespace exists
    NOT_READY = "notready"  # created but not started, or the infra container died


@dataclass(frozen=True, slots=True)
class SandboxSummary:
    """A sandbox as listed. ``labels`` include the runtime's own labels."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: SandboxState
    created_at: datetime | None
    infra_container_id: str | None

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def pod_name(self) -> str:
        return self.labels.get(LABEL_POD_NAME, "")

    @property
    def pod_namespace(self) -> str:
        return self.labels.get(LABEL_POD_NAMESPACE, "")


@dataclass(frozen=True, slots=True)
class SandboxStatus(SandboxSummary):
    """A sandbox as inspected: adds the pod IP (None unless READY), hostname and
    the ports actually published."""

    ip: str | None = None
    hostname: str = ""
    ports: tuple[PortMapping, ...] = ()


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True, slots=True)
class BindMount:
    """A host path mounted into the container. The host path must exist."""

    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """A named runtime volume (see ``create_volume``) mounted into the container."""

    volume: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class TmpfsMount:
    """A memory-backed scratch directory (emptyDir with medium Memory)."""

    container_path: str
    size_bytes: int | None = None
    mode: int = 0o1777


Mount = BindMount | VolumeMount | TmpfsMount


@dataclass(frozen=True, slots=True)
class Resources:
    """cgroup limits of one container. None leaves the runtime default (no limit,
    1024 cpu shares). ``cpu_quota_us`` per ``cpu_period_us`` is the hard cpu cap."""

    memory_limit_bytes: int | None = None
    memory_reservation_bytes: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    cpu_shares: int | None = None
    pids_limit: int | None = None

    @classmethod
    def from_kubernetes(
        cls,
        *,
        cpu_request_millis: int | None = None,
        cpu_limit_millis: int | None = None,
        memory_request_bytes: int | None = None,
        memory_limit_bytes: int | None = None,
        pids_limit: int | None = None,
    ) -> Resources:
        """Kubernetes' mapping: requests.cpu → shares (1024 per cpu, at least 2),
        limits.cpu → CFS quota over a 100 ms period (at least 1 ms), memory limit →
        hard limit, memory request → soft limit."""
        period = 100_000
        shares = None if cpu_request_millis is None else max(2, cpu_request_millis * 1024 // 1000)
        quota = None if cpu_limit_millis is None else max(1000, cpu_limit_millis * period // 1000)
        return cls(
            memory_limit_bytes=memory_limit_bytes,
            memory_reservation_bytes=memory_request_bytes,
            cpu_quota_us=quota,
            cpu_period_us=period,
            cpu_shares=shares,
            pids_limit=pids_limit,
        )


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Process identity and privileges. The defaults are the safe ones: the image's
    user, a writable root filesystem, the reduced ``DEFAULT_CAPABILITIES`` and
    no-new-privileges. ``run_as_group`` without ``run_as_user`` keeps the image's
    user with that group. ``privileged`` grants every capability and device and
    ignores ``cap_add`` / ``cap_drop`` / ``no_new_privileges``."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    read_only_rootfs: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = True


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """One container of a sandbox.

    ``command`` replaces the image's ENTRYPOINT and ``args`` its CMD, exactly like
    Kubernetes: with ``command`` set and ``args`` None the image's CMD is not used.
    ``attempt`` counts restarts of this container name (0 for the first run); it is
    part of the runtime's container name, so a restart never collides with the
    previous, exited attempt. ``stop_signal`` None uses the image's STOPSIGNAL or
    SIGTERM. ``labels`` are extra labels (reserved keys are rejected)."""

    name: str
    image: str
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0
    mounts: tuple[Mount, ...] = ()
    resources: Resources = field(default_factory=Resources)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    stop_signal: str | None = None
    tty: bool = False
    stdin: bool = False


class ContainerState(enum.StrEnum):
    CREATED = "created"  # created, never started
    RUNNING = "running"
    PAUSED = "paused"
    EXITED = "exited"  # ran (or failed to start) and has stopped; exit_code is set
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    """A container as listed: cheap enough to poll for every container of the node.
    ``exit_code`` and ``finished_at`` are None unless the container has exited;
    ``started_at`` is None until it first started. ``image_id`` is the full id
    (64 hex digits) of the image it was created from."""

    id: str
    name: str
    sandbox_id: str
    labels: Mapping[str, str]
    state: ContainerState
    image: str
    image_id: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None

    @property
    def pod_uid(self) -> str:
        return self.labels.get(LABEL_POD_UID, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(LABEL_CONTAINER_NAME, "")

    @property
    def attempt(self) -> int:
        raw = self.labels.get(LABEL_ATTEMPT, "0")
        return int(raw) if raw.isdigit() else 0


@dataclass(frozen=True, slots=True)
class ContainerStatus(ContainerSummary):
    """A container as inspected: adds whether the kernel's OOM killer fired in it
    (the agent reports reason OOMKilled), the host pid of its main process while
    running, and the error of its last failed start ("" if none)."""

    oom_killed: bool = False
    pid: int | None = None
    error: str = ""


# --------------------------------------------------------------------------- logs, exec, stats, events


class LogStream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a container's output, without its trailing newline. Podman
    reports log timestamps to the second."""

    timestamp: datetime
    stream: LogStream
    text: str


@dataclass(frozen=True, slots=True)
class ExecResult:
    """Outcome of a finished exec. Output beyond the call's ``max_output`` bytes
    per stream is dropped and ``truncated`` is set."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False


@runtime_checkable
class ExecSession(Protocol):
    """An interactive exec (``kumo exec -it``): write stdin, read output as it
    comes, learn the exit code. Use as an async context manager; leaving it
    closes the connection (the process gets EOF / SIGHUP)."""

    @property
    def tty(self) -> bool: ...

    async def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin (requires ``stdin=True``)."""

    async def close_stdin(self) -> None:
        """Signal end of input; the process sees EOF on stdin."""

    def output(self) -> AsyncIterator[tuple[LogStream, bytes]]:
        """Chunks of output as they arrive, until the process exits. With a tty,
        everything arrives as STDOUT."""
        ...

    async def resize(self, height: int, width: int) -> None:
        """Resize the tty (no-op without one)."""

    async def wait(self) -> int:
        """The exit code, once the process has exited. Output nobody reads from
        ``output()`` is discarded while waiting."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> ExecSession: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """Resource usage of a running container. ``cpu_usage_ns`` is cumulative cpu
    time since start (rate = difference over time); ``memory_working_set_bytes``
    is usage minus inactive file cache, what Kubernetes compares to limits."""

    container_id: str
    timestamp: datetime
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int
    memory_limit_bytes: int | None
    pids: int


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """A change to one of this node's containers: ``action`` is the runtime's verb
    ("create", "start", "died", "oom", "stop", "kill", "remove", ...). ``exit_code``
    is set on "died"."""

    container_id: str
    name: str
    action: str
    time: datetime
    labels: Mapping[str, str]
    exit_code: int | None = None


# --------------------------------------------------------------------------- images, volumes, info


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A local image. ``id`` is the full id (64 hex digits); ``user`` is the image's
    configured USER ("" = root), which the agent needs for runAsNonRoot. Listings
    do not carry the image config: there ``user`` is None (use ``inspect_image``)."""

    id: str
    repo_tags: tuple[str, ...]
    size_bytes: int
    created_at: datetime | None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    name: str
    mountpoint: str
    labels: Mapping[str, str]
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """``name``/``version`` make the Node's containerRuntimeVersion
    (``f"{name}://{version}"``)."""

    name: str
    version: str
    api_version: str
    storage_root: str
    run_root: str
    oci_runtime: str
    cgroup_version: str

    @property
    def runtime_version(self) -> str:
        return f"{self.name}://{self.version}"


# --------------------------------------------------------------------------- the protocol


@runtime_checkable
class ContainerRuntime(Protocol):
    """What the node agent needs from a container runtime. See the module
    docstring for the ownership rules every method follows."""

    @property
    def node_name(self) -> str:
        """The node label value stamped on everything this runtime creates."""
        ...

    async def info(self) -> RuntimeInfo: ...

    # sandboxes -----------------------------------------------------------------

    async def run_sandbox(self, config: SandboxConfig) -> SandboxStatus:
        """Create the pod's sandbox and start its infra container, so the pod IP
        and published ports exist before any container starts. Conflict if the
        sandbox name (derived from namespace/name/uid) is taken; InvalidConfig for
        a bad hostname, port or label. Nothing is left behind on failure."""
        ...

    async def remove_sandbox(self, sandbox_id: str, *, grace_period: float = 0) -> None:
        """Stop every container of the sandbox (stop signal, then SIGKILL after
        ``grace_period`` seconds), remove them and the sandbox. Removing a sandbox that
        does not exist (or belongs to another node) is a no-op."""

    async def sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        """NotFound unless the sandbox exists and carries this runtime's node label."""
        ...

    async def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[SandboxSummary]:
        """This node's sandboxes whose labels include all of ``labels``."""
        ...

    # containers ----------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        """Create (not start) a container in the sandbox; returns its id. Never pulls:
        ImageNotFound if the image is not local. NotFound if the sandbox does not
        exist; Conflict if this name and attempt already exist; InvalidConfig for a
        rejected configuration."""
        ...

    async def start_container(self, container_id: str) -> None:
        """Start a created container. ContainerStartError if its process cannot be
        started (the container then stays CREATED); starting a running container
        is a no-op."""

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        """Send the stop signal and wait up to ``grace_period`` seconds (rounded up to
        whole seconds) for the container to exit; then SIGKILL it. Returns once it
        has exited. No-op if it is not running."""

    async def kill_container(self, container_id: str, signal: str | int = "SIGKILL") -> None:
        """Send a signal to the container's main process. Conflict if not running."""

    async def remove_container(self, container_id: str, *, force: bool = False) -> None:
        """Remove the container and its logs. Conflict if it runs and ``force`` is
        False (force kills it first). No-op if it does not exist."""

    async def container_status(self, container_id: str) -> ContainerStatus:
        """NotFound unless the container exists and carries this runtime's node label."""
        ...

    async def list_containers(
        self, labels: Mapping[str, str] | None = None, *, sandbox_id: str | None = None
    ) -> list[ContainerSummary]:
        """This node's containers (any state, infra containers excluded) whose labels
        include all of ``labels``, optionally only those of one sandbox."""
        ...

    async def wait_container(self, container_id: str) -> int:
        """Wait until the container has exited; returns its exit code. Bound it with
        ``asyncio.timeout`` (cancelling is safe)."""
        ...

    # logs / exec / stats / events ----------------------------------------------

    def logs(
        self,
        container_id: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> AsyncIterator[LogLine]:
        """The container's output, oldest first: the last ``tail`` lines, only lines
        after ``since``; with ``follow`` keeps yielding new lines until the container
        exits. Works for exited containers (``kumo logs --previous``). NotFound if
        the container does not exist."""
        ...

    async def exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - on expiry the process is killed, not just abandoned
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
        stdin: bytes | None = None,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        """Run a command in a running container and collect its exit code and output
        (exec probes, preStop hooks). After ``timeout`` seconds the process is killed
        and ExecTimeout raised;
        Conflict if the container is not running; ``ExecResult.exit_code`` 126/127
        when the command cannot be executed / is not found."""
        ...

    async def open_exec(
        self,
        container_id: str,
        command: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = True,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
    ) -> ExecSession:
        """Start an interactive exec (the API server's pods/exec subresource)."""
        ...

    async def container_stats(
        self, container_ids: Sequence[str] | None = None
    ) -> list[ContainerStats]:
        """Usage of the given running containers (default: every running container
        of this node). Containers that are not running are left out."""
        ...

    def events(self, *, since: datetime | None = None) -> AsyncIterator[ContainerEvent]:
        """Container events of this node as they happen (from ``since`` if given),
        until the caller stops iterating."""
        ...

    # images --------------------------------------------------------------------

    async def image_exists(self, image: str) -> bool: ...

    async def inspect_image(self, image: str) -> ImageInfo:
        """ImageNotFound if the image is not local."""
        ...

    async def list_images(self) -> list[ImageInfo]: ...

    async def pull_image(self, image: str) -> ImageInfo:
        """Pull from a registry. ImagePullError with the reason if that fails
        (on a node without registry access every pull fails)."""
        ...

    async def import_image(
        self,
        tarball: Path,
        reference: str,
        *,
        changes: Sequence[str] = (),
        message: str = "",
    ) -> ImageInfo:
        """Create an image from a root-filesystem tarball (``podman import``), with
        Dockerfile-style ``changes`` such as ``CMD ["sh"]`` or ``ENV K=V``."""
        ...

    async def tag_image(self, image: str, reference: str) -> None:
        """Give a local image another name. ImageNotFound if it does not exist."""

    async def remove_image(self, image: str, *, force: bool = False) -> None:
        """Remove an image (or, for one of several names, just that name). No-op if
        it does not exist; Conflict if a container uses it and ``force`` is False."""

    # volumes -------------------------------------------------------------------

    async def create_volume(self, name: str, labels: Mapping[str, str] | None = None) -> VolumeInfo:
        """Create a named volume, or return it if this node already has it.
        Conflict if the name belongs to another node."""
        ...

    async def remove_volume(self, name: str, *, force: bool = False) -> None:
        """Remove a volume and its data. No-op if missing; Conflict if in use
        and ``force`` is False."""

    async def list_volumes(self, labels: Mapping[str, str] | None = None) -> list[VolumeInfo]: ...
