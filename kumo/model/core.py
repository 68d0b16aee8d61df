"""core/v1 kinds: Namespace, Node, Pod, Service, Endpoints, ConfigMap, Secret,
ServiceAccount, Event, ResourceQuota, LimitRange."""

from __future__ import annotations

import base64
import binascii
import copy
from typing import Any, Literal, Self

from pydantic import Field

from kumo.model.base import (
    Condition,
    KumoModel,
    LabelSelector,
    ObjectMeta,
    Resource,
    immutable_field,
    show_value,
    to_wire,
)
from kumo.model.common import IntOrString, Quantity, ResourceList
from kumo.model.validation import (
    dns1123_label,
    dns1123_subdomain,
    env_var_name,
    labels,
    port_name,
    port_number,
    qualified_name,
    quantity_problems,
)

Problems = list[tuple[str, str]]


class ObjectReference(KumoModel):
    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class LocalObjectReference(KumoModel):
    name: str | None = None


# ---- Namespace ----------------------------------------------------------------


class NamespaceSpec(KumoModel):
    finalizers: list[str] | None = None


class NamespaceStatus(KumoModel):
    phase: str | None = None
    conditions: list[Condition] | None = None


class Namespace(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Namespace"] = "Namespace"
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None

    plural = "namespaces"
    singular = "namespace"
    short_names = ("ns",)
    namespaced = False
    subresources = ("status",)
    name_rule = "label"
    selectable_fields = ("status.phase",)

    def apply_defaults(self) -> None:
        if self.status is None:
            self.status = NamespaceStatus()
        if self.status.phase is None:
            self.status.phase = "Active"


# ---- Node --------------------------------------------------------------------


class Taint(KumoModel):
    key: str
    value: str | None = None
    effect: str
    time_added: str | None = None


class NodeSpec(KumoModel):
    pod_cidr: str | None = None
    pod_cidrs: list[str] | None = None
    provider_id: str | None = None
    unschedulable: bool | None = None
    taints: list[Taint] | None = None


class NodeAddress(KumoModel):
    type: str
    address: str


class NodeSystemInfo(KumoModel):
    machine_id: str | None = None
    system_uuid: str | None = Field(default=None, alias="systemUUID")
    boot_id: str | None = None
    kernel_version: str | None = None
    os_image: str | None = None
    container_runtime_version: str | None = None
    kubelet_version: str | None = None
    kube_proxy_version: str | None = None
    operating_system: str | None = None
    architecture: str | None = None


class ContainerImage(KumoModel):
    names: list[str] | None = None
    size_bytes: int | None = None


class DaemonEndpoint(KumoModel):
    port: int = Field(alias="Port")


class NodeDaemonEndpoints(KumoModel):
    kubelet_endpoint: DaemonEndpoint | None = None


class NodeStatus(KumoModel):
    capacity: ResourceList | None = None
    allocatable: ResourceList | None = None
    phase: str | None = None
    conditions: list[Condition] | None = None
    addresses: list[NodeAddress] | None = None
    daemon_endpoints: NodeDaemonEndpoints | None = None
    node_info: NodeSystemInfo | None = None
    images: list[ContainerImage] | None = None


class Node(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Node"] = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None

    plural = "nodes"
    singular = "node"
    short_names = ("no",)
    namespaced = False
    subresources = ("status",)
    selectable_fields = ("spec.unschedulable",)

    def validate_semantics(self) -> Problems:
        out: Problems = []
        for i, taint in enumerate(self.spec.taints or []):
            if taint.effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                out.append(
                    (
                        f"spec.taints[{i}].effect",
                        f'Unsupported value: "{taint.effect}": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"',
                    )
                )
            out.extend(
                (f"spec.taints[{i}].key", f"Invalid value: {taint.key!r}: {p}")
                for p in qualified_name(taint.key)
            )
        return out

    def validate_update(self, old: Self) -> Problems:
        """Kubernetes lets a node's podCIDR(s) and providerID be set once, then never change."""
        out: Problems = []
        spec, before = self.spec, old.spec
        if before.pod_cidrs and spec.pod_cidrs != before.pod_cidrs:
            out.append(
                (
                    "spec.podCIDRs",
                    'Forbidden: node updates may not change podCIDR except from "" to valid',
                )
            )
        if before.pod_cidr and spec.pod_cidr != before.pod_cidr:
            out.append(
                (
                    "spec.podCIDR",
                    'Forbidden: node updates may not change podCIDR except from "" to valid',
                )
            )
        if before.provider_id and spec.provider_id != before.provider_id:
            out.append(
                (
                    "spec.providerID",
                    'Forbidden: node updates may not change providerID except from "" to valid',
                )
            )
        return out


# ---- Pod ---------------------------------------------------------------------


class KeySelector(KumoModel):
    name: str | None = None
    key: str
    optional: bool | None = None


class ObjectFieldSelector(KumoModel):
    api_version: str | None = None
    field_path: str


class ResourceFieldSelector(KumoModel):
    container_name: str | None = None
    resource: str
    divisor: Quantity | None = None


class EnvVarSource(KumoModel):
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None


class EnvVar(KumoModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class NamedSourceRef(KumoModel):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(KumoModel):
    prefix: str | None = None
    config_map_ref: NamedSourceRef | None = None
    secret_ref: NamedSourceRef | None = None


class ContainerPort(KumoModel):
    name: str | None = None
    container_port: int
    host_port: int | None = None
    host_ip: str | None = None
    protocol: str | None = None


class ResourceRequirements(KumoModel):
    limits: ResourceList | None = None
    requests: ResourceList | None = None


class VolumeMount(KumoModel):
    name: str
    mount_path: str
    sub_path: str | None = None
    read_only: bool | None = None
    mount_propagation: str | None = None


class ExecAction(KumoModel):
    command: list[str] | None = None


class HTTPHeader(KumoModel):
    name: str
    value: str


class HTTPGetAction(KumoModel):
    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(KumoModel):
    port: IntOrString
    host: str | None = None


class GRPCAction(KumoModel):
    port: int
    service: str | None = None


class SleepAction(KumoModel):
    seconds: int


class Probe(KumoModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    period_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    termination_grace_period_seconds: int | None = None

    def handlers(self) -> list[str]:
        return [
            n for n in ("exec", "http_get", "tcp_socket", "grpc") if getattr(self, n) is not None
        ]

    def apply_defaults(self) -> None:
        if self.timeout_seconds is None:
            self.timeout_seconds = 1
        if self.period_seconds is None:
            self.period_seconds = 10
        if self.success_threshold is None:
            self.success_threshold = 1
        if self.failure_threshold is None:
            self.failure_threshold = 3
        if self.initial_delay_seconds is None:
            self.initial_delay_seconds = 0
        if self.http_get is not None:
            self.http_get.path = self.http_get.path or "/"
            self.http_get.scheme = self.http_get.scheme or "HTTP"


class LifecycleHandler(KumoModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


class Lifecycle(KumoModel):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None


class Capabilities(KumoModel):
    add: list[str] | None = None
    drop: list[str] | None = None


class SeccompProfile(KumoModel):
    type: str
    localhost_profile: str | None = None


class SecurityContext(KumoModel):
    capabilities: Capabilities | None = None
    privileged: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    seccomp_profile: SeccompProfile | None = None
    proc_mount: str | None = None


class Container(KumoModel):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: list[ContainerPort] | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    image_pull_policy: str | None = None
    security_context: SecurityContext | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    restart_policy: str | None = None  # only "Always", for sidecar init containers


class KeyToPath(KumoModel):
    key: str
    path: str
    mode: int | None = None


class EmptyDirVolumeSource(KumoModel):
    medium: str | None = None
    size_limit: Quantity | None = None


class HostPathVolumeSource(KumoModel):
    path: str
    type: str | None = None


class ConfigMapVolumeSource(KumoModel):
    name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(KumoModel):
    secret_name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class PersistentVolumeClaimVolumeSource(KumoModel):
    claim_name: str
    read_only: bool | None = None


class DownwardAPIVolumeFile(KumoModel):
    path: str
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(KumoModel):
    items: list[DownwardAPIVolumeFile] | None = None
    default_mode: int | None = None


class ConfigMapProjection(KumoModel):
    name: str | None = None
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class SecretProjection(KumoModel):
    name: str | None = None
    items: list[KeyToPath] | None = None
    optional: bool | None = None


class DownwardAPIProjection(KumoModel):
    items: list[DownwardAPIVolumeFile] | None = None


# A projected service-account token lives at least this long (and an hour by default).
TOKEN_MIN_EXPIRATION_SECONDS = 600
TOKEN_DEFAULT_EXPIRATION_SECONDS = 3600
_TOKEN_MAX_EXPIRATION_SECONDS = 2**32


class ServiceAccountTokenProjection(KumoModel):
    audience: str | None = None
    expiration_seconds: int | None = None
    path: str


class VolumeProjection(KumoModel):
    secret: SecretProjection | None = None
    config_map: ConfigMapProjection | None = None
    downward_api: DownwardAPIProjection | None = Field(default=None, alias="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None

    def kinds(self) -> list[str]:
        return [
            n
            for n in ("secret", "config_map", "downward_api", "service_account_token")
            if getattr(self, n) is not None
        ]


class ProjectedVolumeSource(KumoModel):
    sources: list[VolumeProjection] | None = None
    default_mode: int | None = None


class Volume(KumoModel):
    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = Field(default=None, alias="downwardAPI")

    def sources(self) -> list[str]:
        return [
            n
            for n in (
                "empty_dir",
                "host_path",
                "config_map",
                "secret",
                "persistent_volume_claim",
                "projected",
                "downward_api",
            )
            if getattr(self, n) is not None
        ]


def _validate_file_path(here: str, path: str) -> Problems:
    """A file inside a volume: relative, no '..' element, not starting with '..'."""
    if not path:
        return [(here, "Required value")]
    if path.startswith("/"):
        return [(here, f"Invalid value: {path!r}: must be a relative path")]
    if ".." in path.split("/") or path.startswith(".."):
        return [(here, f"Invalid value: {path!r}: must not contain '..'")]
    return []


def _validate_mode(here: str, mode: int | None) -> Problems:
    if mode is not None and not 0 <= mode <= 0o777:
        return [(here, f"Invalid value: {mode}: must be a number between 0 and 0777 (octal)")]
    return []


def _validate_downward_items(here: str, items: list[DownwardAPIVolumeFile]) -> Problems:
    out: Problems = []
    for j, item in enumerate(items):
        at = f"{here}[{j}]"
        out.extend(_validate_file_path(f"{at}.path", item.path))
        out.extend(_validate_mode(f"{at}.mode", item.mode))
        if (item.field_ref is None) == (item.resource_field_ref is None):
            out.append(
                (at, "Invalid value: must specify exactly one of: `fieldRef` or `resourceFieldRef`")
            )
    return out


def _validate_projected(here: str, projected: ProjectedVolumeSource) -> Problems:
    """Kubernetes' validateProjectedVolumeSource: one kind per source, sane paths, no two
    sources writing the same file, token lifetimes between 10 minutes and 2^32 seconds."""
    out = _validate_mode(f"{here}.defaultMode", projected.default_mode)
    paths: set[str] = set()

    def claim(at: str, path: str) -> None:
        if path in paths:
            out.append((at, f"Invalid value: {path!r}: conflicting duplicate paths"))
        paths.add(path)

    for i, source in enumerate(projected.sources or []):
        at = f"{here}.sources[{i}]"
        kinds = source.kinds()
        if not kinds:
            out.append((at, "Required value: must specify exactly 1 volume type"))
            continue
        if len(kinds) > 1:
            out.append((at, "Forbidden: may not specify more than 1 volume type"))
            continue
        for wire, keyed in (("secret", source.secret), ("configMap", source.config_map)):
            if keyed is None:
                continue
            if not keyed.name:
                out.append((f"{at}.{wire}.name", "Required value"))
            for j, item in enumerate(keyed.items or []):
                out.extend(_validate_file_path(f"{at}.{wire}.items[{j}].path", item.path))
                out.extend(_validate_mode(f"{at}.{wire}.items[{j}].mode", item.mode))
                claim(f"{at}.{wire}.items[{j}].path", item.path)
        if source.downward_api is not None:
            files = source.downward_api.items or []
            out.extend(_validate_downward_items(f"{at}.downwardAPI.items", files))
            for j, file in enumerate(files):
                claim(f"{at}.downwardAPI.items[{j}].path", file.path)
        token = source.service_account_token
        if token is not None:
            here_token = f"{at}.serviceAccountToken"
            out.extend(_validate_file_path(f"{here_token}.path", token.path))
            claim(f"{here_token}.path", token.path)
            seconds = token.expiration_seconds
            if seconds is not None and seconds < TOKEN_MIN_EXPIRATION_SECONDS:
                out.append(
                    (
                        f"{here_token}.expirationSeconds",
                        f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                    )
                )
            elif seconds is not None and seconds > _TOKEN_MAX_EXPIRATION_SECONDS:
                out.append(
                    (
                        f"{here_token}.expirationSeconds",
                        f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds",
                    )
                )
    return out


class Toleration(KumoModel):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class NodeSelectorRequirement(KumoModel):
    key: str
    operator: str
    values: list[str] | None = None


class NodeSelectorTerm(KumoModel):
    match_expressions: list[NodeSelectorRequirement] | None = None
    match_fields: list[NodeSelectorRequirement] | None = None


class NodeSelector(KumoModel):
    node_selector_terms: list[NodeSelectorTerm]


class PreferredSchedulingTerm(KumoModel):
    weight: int
    preference: NodeSelectorTerm


class NodeAffinity(KumoModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        None
    )


class PodAffinityTerm(KumoModel):
    label_selector: LabelSelector | None = None
    namespaces: list[str] | None = None
    namespace_selector: LabelSelector | None = None
    topology_key: str


class WeightedPodAffinityTerm(KumoModel):
    weight: int
    pod_affinity_term: PodAffinityTerm


class PodAffinity(KumoModel):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        None
    )


class Affinity(KumoModel):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class Sysctl(KumoModel):
    name: str
    value: str


class PodSecurityContext(KumoModel):
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    supplemental_groups: list[int] | None = None
    seccomp_profile: SeccompProfile | None = None
    sysctls: list[Sysctl] | None = None


class HostAlias(KumoModel):
    ip: str
    hostnames: list[str] | None = None


class PodDNSConfigOption(KumoModel):
    name: str | None = None
    value: str | None = None


class PodDNSConfig(KumoModel):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None


class PodSpec(KumoModel):
    containers: list[Container]
    init_containers: list[Container] | None = None
    volumes: list[Volume] | None = None
    restart_policy: str | None = None
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    dns_policy: str | None = None
    dns_config: PodDNSConfig | None = None
    node_selector: dict[str, str] | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    node_name: str | None = None
    host_network: bool | None = None
    host_pid: bool | None = None
    host_ipc: bool | None = None
    share_process_namespace: bool | None = None
    security_context: PodSecurityContext | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    affinity: Affinity | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] | None = None
    host_aliases: list[HostAlias] | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    enable_service_links: bool | None = None
    preemption_policy: str | None = None

    def apply_defaults(self) -> None:
        self.restart_policy = self.restart_policy or "Always"
        if self.termination_grace_period_seconds is None:
            self.termination_grace_period_seconds = 30
        self.dns_policy = self.dns_policy or "ClusterFirst"
        self.scheduler_name = self.scheduler_name or "default-scheduler"
        if self.service_account_name is None:
            self.service_account_name = self.service_account or "default"
        if self.enable_service_links is None:
            self.enable_service_links = True
        if self.security_context is None:
            self.security_context = PodSecurityContext()
        if self.priority is None:
            self.priority = 0
        for container in [*self.containers, *(self.init_containers or [])]:
            _default_container(container)
        for volume in self.volumes or []:
            if volume.config_map is not None and volume.config_map.default_mode is None:
                volume.config_map.default_mode = 0o644
            if volume.secret is not None and volume.secret.default_mode is None:
                volume.secret.default_mode = 0o400
            if volume.host_path is not None and volume.host_path.type is None:
                volume.host_path.type = ""
            if volume.downward_api is not None and volume.downward_api.default_mode is None:
                volume.downward_api.default_mode = 0o644
            if volume.projected is not None:
                if volume.projected.default_mode is None:
                    volume.projected.default_mode = 0o644
                for source in volume.projected.sources or []:
                    token = source.service_account_token
                    if token is not None and token.expiration_seconds is None:
                        token.expiration_seconds = TOKEN_DEFAULT_EXPIRATION_SECONDS

    def validate_semantics(self, path: str) -> Problems:
        out: Problems = []
        if not self.containers:
            out.append((f"{path}.containers", "Required value"))
        volumes = {v.name for v in self.volumes or []}
        seen: set[str] = set()
        groups = (("containers", self.containers), ("initContainers", self.init_containers or []))
        for group, containers in groups:
            for i, container in enumerate(containers):
                here = f"{path}.{group}[{i}]"
                if container.name in seen:
                    out.append((f"{here}.name", f'Duplicate value: "{container.name}"'))
                seen.add(container.name)
                out.extend(
                    _validate_container(container, here, volumes, init=group == "initContainers")
                )
        volume_names: set[str] = set()
        for i, volume in enumerate(self.volumes or []):
            here = f"{path}.volumes[{i}]"
            out.extend(
                (f"{here}.name", f"Invalid value: {volume.name!r}: {p}")
                for p in dns1123_label(volume.name)
            )
            if volume.name in volume_names:
                out.append((f"{here}.name", f'Duplicate value: "{volume.name}"'))
            volume_names.add(volume.name)
            sources = volume.sources()
            if not sources:
                out.append((here, "Required value: must specify a volume type"))
            elif len(sources) > 1:
                out.append((here, "Forbidden: may not specify more than 1 volume type"))
            if volume.projected is not None:
                out.extend(_validate_projected(f"{here}.projected", volume.projected))
            if volume.downward_api is not None:
                out.extend(
                    _validate_downward_items(
                        f"{here}.downwardAPI.items", volume.downward_api.items or []
                    )
                )
        if self.restart_policy not in (None, "Always", "OnFailure", "Never"):
            out.append(
                (
                    f"{path}.restartPolicy",
                    f'Unsupported value: "{self.restart_policy}": supported values: "Always", "OnFailure", "Never"',
                )
            )
        if self.dns_policy not in (
            None,
            "ClusterFirst",
            "ClusterFirstWithHostNet",
            "Default",
            "None",
        ):
            out.append((f"{path}.dnsPolicy", f'Unsupported value: "{self.dns_policy}"'))
        if (
            self.termination_grace_period_seconds is not None
            and self.termination_grace_period_seconds < 0
        ):
            out.append((f"{path}.terminationGracePeriodSeconds", "Invalid value: must be >= 0"))
        if self.active_deadline_seconds is not None and self.active_deadline_seconds <= 0:
            out.append((f"{path}.activeDeadlineSeconds", "Invalid value: must be > 0"))
        out.extend(labels(f"{path}.nodeSelector", self.node_selector))
        for i, toleration in enumerate(self.tolerations or []):
            here = f"{path}.tolerations[{i}]"
            if toleration.operator not in (None, "Equal", "Exists"):
                out.append(
                    (
                        f"{here}.operator",
                        f'Unsupported value: "{toleration.operator}": supported values: "Equal", "Exists"',
                    )
                )
            if toleration.operator == "Exists" and toleration.value:
                out.append(
                    (
                        f"{here}.operator",
                        "Invalid value: value must be empty when `operator` is 'Exists'",
                    )
                )
            if toleration.effect not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
                out.append((f"{here}.effect", f'Unsupported value: "{toleration.effect}"'))
        if self.service_account_name:
            out.extend(
                (f"{path}.serviceAccountName", f"Invalid value: {self.service_account_name!r}: {p}")
                for p in dns1123_subdomain(self.service_account_name)
            )
        return out


def _default_container(container: Container) -> None:
    if container.image_pull_policy is None and container.image:
        tagless = ":" not in container.image.rsplit("/", 1)[-1]
        latest = container.image.endswith(":latest") or (tagless and "@" not in container.image)
        container.image_pull_policy = "Always" if latest else "IfNotPresent"
    container.termination_message_path = (
        container.termination_message_path or "/dev/termination-log"
    )
    container.termination_message_policy = container.termination_message_policy or "File"
    for port in container.ports or []:
        port.protocol = port.protocol or "TCP"
    for probe in (container.liveness_probe, container.readiness_probe, container.startup_probe):
        if probe is not None:
            probe.apply_defaults()
    if container.resources is None:
        container.resources = ResourceRequirements()
    # Kubernetes: a limit without a request sets the request to the limit.
    limits = container.resources.limits or {}
    if limits:
        requests = dict(container.resources.requests or {})
        for name, amount in limits.items():
            requests.setdefault(name, amount)
        container.resources.requests = requests


def _validate_probe(probe: Probe | None, here: str) -> Problems:
    if probe is None:
        return []
    out: Problems = []
    handlers = probe.handlers()
    if not handlers:
        out.append((here, "Required value: must specify a handler type"))
    elif len(handlers) > 1:
        out.append((here, "Forbidden: may not specify more than 1 handler type"))
    for field in (
        "initial_delay_seconds",
        "timeout_seconds",
        "period_seconds",
        "success_threshold",
        "failure_threshold",
    ):
        value = getattr(probe, field)
        minimum = 0 if field == "initial_delay_seconds" else 1
        if value is not None and value < minimum:
            wire = type(probe).model_fields[field].alias or field
            out.append(
                (
                    f"{here}.{wire}",
                    f"Invalid value: {value}: must be greater than or equal to {minimum}",
                )
            )
    if probe.http_get and isinstance(probe.http_get.port, int):
        out.extend(
            (f"{here}.httpGet.port", f"Invalid value: {probe.http_get.port}: {p}")
            for p in port_number(probe.http_get.port)
        )
    if probe.tcp_socket and isinstance(probe.tcp_socket.port, int):
        out.extend(
            (f"{here}.tcpSocket.port", f"Invalid value: {probe.tcp_socket.port}: {p}")
            for p in port_number(probe.tcp_socket.port)
        )
    return out


def _validate_container(container: Container, here: str, volumes: set[str], init: bool) -> Problems:
    out: Problems = []
    out.extend(
        (f"{here}.name", f"Invalid value: {container.name!r}: {p}")
        for p in dns1123_label(container.name)
    )
    if not container.image:
        out.append((f"{here}.image", "Required value"))
    port_names: set[str] = set()
    for j, port in enumerate(container.ports or []):
        out.extend(
            (f"{here}.ports[{j}].containerPort", f"Invalid value: {port.container_port}: {p}")
            for p in port_number(port.container_port)
        )
        if port.host_port is not None:
            out.extend(
                (f"{here}.ports[{j}].hostPort", f"Invalid value: {port.host_port}: {p}")
                for p in port_number(port.host_port)
            )
        if port.protocol not in (None, "TCP", "UDP", "SCTP"):
            out.append(
                (
                    f"{here}.ports[{j}].protocol",
                    f'Unsupported value: "{port.protocol}": supported values: "SCTP", "TCP", "UDP"',
                )
            )
        if port.name:
            out.extend(
                (f"{here}.ports[{j}].name", f"Invalid value: {port.name!r}: {p}")
                for p in port_name(port.name)
            )
            if port.name in port_names:
                out.append((f"{here}.ports[{j}].name", f'Duplicate value: "{port.name}"'))
            port_names.add(port.name)
    for j, env in enumerate(container.env or []):
        out.extend(
            (f"{here}.env[{j}].name", f"Invalid value: {env.name!r}: {p}")
            for p in env_var_name(env.name)
        )
        if env.value is not None and env.value_from is not None:
            out.append(
                (
                    f"{here}.env[{j}].valueFrom",
                    "Invalid value: may not be specified when `value` is not empty",
                )
            )
        if env.value_from is not None:
            sources = [
                n
                for n in ("config_map_key_ref", "secret_key_ref", "field_ref", "resource_field_ref")
                if getattr(env.value_from, n)
            ]
            if len(sources) != 1:
                out.append(
                    (
                        f"{here}.env[{j}].valueFrom",
                        "Invalid value: must specify exactly one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                    )
                )
    for j, source in enumerate(container.env_from or []):
        if (source.config_map_ref is None) == (source.secret_ref is None):
            out.append(
                (
                    f"{here}.envFrom[{j}]",
                    "Invalid value: must specify one of: `configMapRef` or `secretRef`",
                )
            )
    for j, mount in enumerate(container.volume_mounts or []):
        if mount.name not in volumes:
            out.append((f"{here}.volumeMounts[{j}].name", f'Not found: "{mount.name}"'))
        if not mount.mount_path.startswith("/"):
            out.append(
                (
                    f"{here}.volumeMounts[{j}].mountPath",
                    f"Invalid value: {mount.mount_path!r}: must be an absolute path",
                )
            )
    resources = container.resources or ResourceRequirements()
    for kind in ("requests", "limits"):
        for name, amount in (getattr(resources, kind) or {}).items():
            out.extend(
                (f"{here}.resources.{kind}[{name}]", f"Invalid value: {amount!r}: {p}")
                for p in quantity_problems(amount)
            )
    from kumo.model.validation import parse_quantity

    for name, limit in (resources.limits or {}).items():
        request = (resources.requests or {}).get(name)
        if (
            request is not None
            and not quantity_problems(request)
            and not quantity_problems(limit)
            and parse_quantity(request) > parse_quantity(limit)
        ):
            out.append(
                (
                    f"{here}.resources.requests",
                    f"Invalid value: {request!r}: must be less than or equal to {name} limit of {limit}",
                )
            )
    if container.image_pull_policy not in (None, "Always", "IfNotPresent", "Never"):
        out.append(
            (
                f"{here}.imagePullPolicy",
                f'Unsupported value: "{container.image_pull_policy}": supported values: "Always", "IfNotPresent", "Never"',
            )
        )
    probes = (
        ("livenessProbe", container.liveness_probe),
        ("readinessProbe", container.readiness_probe),
        ("startupProbe", container.startup_probe),
    )
    for wire, probe in probes:
        out.extend(_validate_probe(probe, f"{here}.{wire}"))
        if init and probe is not None and container.restart_policy != "Always":
            out.append((f"{here}.{wire}", "Forbidden: may not be set for init containers"))
    if container.readiness_probe and (container.readiness_probe.success_threshold or 1) < 1:
        pass
    for wire, probe in (
        ("livenessProbe", container.liveness_probe),
        ("startupProbe", container.startup_probe),
    ):
        if probe is not None and (probe.success_threshold or 1) != 1:
            out.append((f"{here}.{wire}.successThreshold", "Invalid value: must be 1"))
    return out


class PodCondition(Condition):
    pass


class ContainerStateWaiting(KumoModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(KumoModel):
    started_at: str | None = None


class ContainerStateTerminated(KumoModel):
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    container_id: str | None = None


class ContainerState(KumoModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(KumoModel):
    name: str
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    ready: bool = False
    restart_count: int = 0
    image: str | None = None
    image_id: str | None = None
    container_id: str | None = None
    started: bool | None = None


class PodIP(KumoModel):
    ip: str


class PublishedPort(KumoModel):
    """kumo's addition: where a container port is reachable on the node."""

    container_name: str
    name: str | None = None
    container_port: int
    protocol: str = "TCP"
    host_ip: str
    host_port: int


class PodStatus(KumoModel):
    phase: str | None = None
    conditions: list[Condition] | None = None
    message: str | None = None
    reason: str | None = None
    nominated_node_name: str | None = None
    host_ip: str | None = None
    host_ips: list[PodIP] | None = None
    pod_ip: str | None = None
    pod_ips: list[PodIP] | None = None
    start_time: str | None = None
    init_container_statuses: list[ContainerStatus] | None = None
    container_statuses: list[ContainerStatus] | None = None
    qos_class: str | None = None
    published_ports: list[PublishedPort] | None = None


class Pod(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    spec: PodSpec
    status: PodStatus | None = None

    plural = "pods"
    singular = "pod"
    short_names = ("po",)
    subresources = ("status", "binding", "eviction", "log", "exec")
    categories = ("all",)
    selectable_fields = (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    )

    def apply_defaults(self) -> None:
        self.spec.apply_defaults()
        if self.status is None:
            self.status = PodStatus()
        if self.status.phase is None:
            self.status.phase = "Pending"
        if self.status.qos_class is None:
            self.status.qos_class = qos_class(self.spec)

    def validate_semantics(self) -> Problems:
        return self.spec.validate_semantics("spec")

    def validate_update(self, old: Self) -> Problems:
        return _validate_pod_spec_update(self.spec, old.spec)


POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations`"
    " (only additions to existing tolerations),`spec.terminationGracePeriodSeconds`"
    " (allow it to be set to 1 if it was previously negative)"
)
_MAX_INT32 = 2**31 - 1


def _validate_pod_spec_update(spec: PodSpec, before: PodSpec) -> Problems:
    """Kubernetes' ValidatePodUpdate for the spec: everything but a few fields is frozen."""
    new_deadline, old_deadline = spec.active_deadline_seconds, before.active_deadline_seconds
    if new_deadline is not None:
        if not 0 <= new_deadline <= _MAX_INT32:
            return [
                (
                    "spec.activeDeadlineSeconds",
                    f"Invalid value: {new_deadline}: must be between 0 and {_MAX_INT32}, inclusive",
                )
            ]
        if old_deadline is not None and old_deadline < new_deadline:
            return [
                (
                    "spec.activeDeadlineSeconds",
                    f"Invalid value: {new_deadline}: must be less than or equal to previous value",
                )
            ]
    elif old_deadline is not None:
        return [
            (
                "spec.activeDeadlineSeconds",
                "Invalid value: null: must not update from a positive integer to nil value",
            )
        ]
    out: Problems = []
    old_wire = to_wire(before)
    munged = copy.deepcopy(to_wire(spec))
    for group in ("containers", "initContainers"):
        new_list, old_list = munged.get(group) or [], old_wire.get(group) or []
        if len(new_list) != len(old_list):
            continue
        for new_container, old_container in zip(new_list, old_list, strict=True):
            if "image" in old_container:
                new_container["image"] = old_container["image"]
            else:
                new_container.pop("image", None)
    for name in ("activeDeadlineSeconds", "tolerations"):
        munged.pop(name, None)
        if name in old_wire:
            munged[name] = old_wire[name]
    new_tolerations = to_wire(spec).get("tolerations") or []
    for i, toleration in enumerate(old_wire.get("tolerations") or []):
        if toleration not in new_tolerations:
            out.append(
                (
                    f"spec.tolerations[{i}]",
                    "Forbidden: existing toleration can not be modified except its tolerationSeconds",
                )
            )
    old_grace = before.termination_grace_period_seconds
    if old_grace is not None and old_grace < 0 and spec.termination_grace_period_seconds == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != old_wire:
        changed = sorted(
            f"spec.{key}" for key in {*munged, *old_wire} if munged.get(key) != old_wire.get(key)
        )
        out.append(("spec", f"Forbidden: {POD_UPDATE_FORBIDDEN}; changed: {', '.join(changed)}"))
    return out


def qos_class(spec: PodSpec) -> str:
    """Guaranteed, Burstable or BestEffort, by Kubernetes' rules."""
    containers = [*spec.containers, *(spec.init_containers or [])]
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.resources or ResourceRequirements()
        requests = resources.requests or {}
        limits = resources.limits or {}
        if requests or limits:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits.get(name)) != limits.get(name):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


class PodTemplateSpec(KumoModel):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec


# ---- Service and Endpoints --------------------------------------------------------


class ServicePort(KumoModel):
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    port: int
    target_port: IntOrString | None = None
    node_port: int | None = None


class SessionAffinityConfig(KumoModel):
    client_ip: dict[str, Any] | None = None


class ServiceSpec(KumoModel):
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    type: str | None = None
    cluster_ip: str | None = None
    cluster_ips: list[str] | None = None
    external_ips: list[str] | None = None
    external_name: str | None = None
    session_affinity: str | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    publish_not_ready_addresses: bool | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None
    internal_traffic_policy: str | None = None
    external_traffic_policy: str | None = None
    load_balancer_ip: str | None = None
    load_balancer_source_ranges: list[str] | None = None
    allocate_load_balancer_node_ports: bool | None = None


class LoadBalancerIngress(KumoModel):
    ip: str | None = None
    hostname: str | None = None


class LoadBalancerStatus(KumoModel):
    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(KumoModel):
    load_balancer: LoadBalancerStatus | None = None
    conditions: list[Condition] | None = None


class Service(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus | None = None

    plural = "services"
    singular = "service"
    short_names = ("svc",)
    subresources = ("status",)
    categories = ("all",)
    name_rule = "label"
    selectable_fields = ("spec.clusterIP", "spec.type")

    def apply_defaults(self) -> None:
        spec = self.spec
        spec.type = spec.type or "ClusterIP"
        spec.session_affinity = spec.session_affinity or "None"
        if spec.type != "ExternalName":
            spec.internal_traffic_policy = spec.internal_traffic_policy or "Cluster"
            spec.ip_families = spec.ip_families or ["IPv4"]
            spec.ip_family_policy = spec.ip_family_policy or "SingleStack"
        if spec.type in ("NodePort", "LoadBalancer"):
            spec.external_traffic_policy = spec.external_traffic_policy or "Cluster"
        for port in spec.ports or []:
            port.protocol = port.protocol or "TCP"
            if port.target_port is None:
                port.target_port = port.port
        if self.status is None:
            self.status = ServiceStatus(load_balancer=LoadBalancerStatus())

    def validate_semantics(self) -> Problems:
        out: Problems = []
        spec = self.spec
        if spec.type not in (None, "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            out.append(
                (
                    "spec.type",
                    f'Unsupported value: "{spec.type}": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                )
            )
        if spec.type == "ExternalName":
            if not spec.external_name:
                out.append(("spec.externalName", "Required value"))
        elif not spec.ports and spec.cluster_ip != "None":
            out.append(("spec.ports", "Required value"))
        names: set[str] = set()
        ports = spec.ports or []
        for i, port in enumerate(ports):
            here = f"spec.ports[{i}]"
            out.extend(
                (f"{here}.port", f"Invalid value: {port.port}: {p}") for p in port_number(port.port)
            )
            if len(ports) > 1 and not port.name:
                out.append((f"{here}.name", "Required value"))
            if port.name:
                out.extend(
                    (f"{here}.name", f"Invalid value: {port.name!r}: {p}")
                    for p in dns1123_label(port.name)
                )
                if port.name in names:
                    out.append((f"{here}.name", f'Duplicate value: "{port.name}"'))
                names.add(port.name)
            if port.protocol not in (None, "TCP", "UDP", "SCTP"):
                out.append(
                    (
                        f"{here}.protocol",
                        f'Unsupported value: "{port.protocol}": supported values: "SCTP", "TCP", "UDP"',
                    )
                )
            if isinstance(port.target_port, int):
                out.extend(
                    (f"{here}.targetPort", f"Invalid value: {port.target_port}: {p}")
                    for p in port_number(port.target_port)
                )
            elif isinstance(port.target_port, str):
                out.extend(
                    (f"{here}.targetPort", f"Invalid value: {port.target_port!r}: {p}")
                    for p in port_name(port.target_port)
                )
        if spec.session_affinity not in (None, "None", "ClientIP"):
            out.append(
                (
                    "spec.sessionAffinity",
                    f'Unsupported value: "{spec.session_affinity}": supported values: "ClientIP", "None"',
                )
            )
        out.extend(labels("spec.selector", spec.selector))
        return out

    def validate_update(self, old: Self) -> Problems:
        """A Service keeps its cluster IP(s) for life, unless it becomes or stops being an
        ExternalName service, or stays headless. Its type may change."""
        spec, before = self.spec, old.spec
        if "ExternalName" in (spec.type, before.type):
            return []
        if before.cluster_ip == "None" and spec.cluster_ip == "None":
            return []
        out: Problems = []
        if before.cluster_ip:
            out.extend(immutable_field("spec.clusterIP", spec.cluster_ip, before.cluster_ip))
        old_ips, new_ips = before.cluster_ips or [], spec.cluster_ips or []
        if old_ips and not new_ips:
            out.append(
                (
                    "spec.clusterIPs[0]",
                    f"Invalid value: {show_value(new_ips)}: primary clusterIP can not be unset",
                )
            )
        for i, (was, now) in enumerate(zip(old_ips, new_ips, strict=False)):
            if was != now:
                out.append(
                    (
                        f"spec.clusterIPs[{i}]",
                        f"Invalid value: {show_value(new_ips)}: may not change once set",
                    )
                )
        return out


class EndpointAddress(KumoModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(KumoModel):
    name: str | None = None
    port: int
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSubset(KumoModel):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Endpoints"] = "Endpoints"
    subsets: list[EndpointSubset] | None = None

    plural = "endpoints"
    singular = "endpoints"
    short_names = ("ep",)
    has_spec = False


# ---- ConfigMap, Secret, ServiceAccount -------------------------------------------


def _check_data_keys(field: str, data: dict[str, str] | None) -> Problems:
    import re

    out: Problems = []
    for key in data or {}:
        if len(key) > 253 or not re.match(r"^[-._a-zA-Z0-9]+$", key) or key in (".", ".."):
            out.append(
                (
                    field,
                    f"Invalid value: {key!r}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
                )
            )
    return out


_IMMUTABLE_WHEN_SET = "Forbidden: field is immutable when `immutable` is set"


def _frozen_data(
    was_immutable: bool | None,
    now_immutable: bool | None,
    fields: tuple[tuple[str, dict[str, str] | None, dict[str, str] | None], ...],
) -> Problems:
    """ConfigMaps and Secrets marked ``immutable: true`` cannot change their data, nor
    become mutable again."""
    if not was_immutable:
        return []
    out: Problems = []
    if not now_immutable:
        out.append(("immutable", _IMMUTABLE_WHEN_SET))
    for path, new, old in fields:
        if (new or {}) != (old or {}):
            out.append((path, _IMMUTABLE_WHEN_SET))
    return out


class ConfigMap(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None
    immutable: bool | None = None

    plural = "configmaps"
    singular = "configmap"
    short_names = ("cm",)
    has_spec = False

    def validate_semantics(self) -> Problems:
        out = _check_data_keys("data", self.data) + _check_data_keys("binaryData", self.binary_data)
        for key, value in (self.binary_data or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                out.append((f"binaryData[{key}]", "Invalid value: must be base64 encoded"))
        for key in set(self.data or {}) & set(self.binary_data or {}):
            out.append(("data", f"Invalid value: {key!r}: duplicate of key present in binaryData"))
        size = sum(
            len(k) + len(v) for k, v in {**(self.data or {}), **(self.binary_data or {})}.items()
        )
        if size > 1024 * 1024:
            out.append(("", "Too long: must have at most 1048576 bytes"))
        return out

    def validate_update(self, old: Self) -> Problems:
        return _frozen_data(
            old.immutable,
            self.immutable,
            (("data", self.data, old.data), ("binaryData", self.binary_data, old.binary_data)),
        )


class Secret(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Secret"] = "Secret"
    data: dict[str, str] | None = None
    string_data: dict[str, str] | None = None
    type: str | None = None
    immutable: bool | None = None

    plural = "secrets"
    singular = "secret"
    has_spec = False
    selectable_fields = ("type",)

    def apply_defaults(self) -> None:
        self.type = self.type or "Opaque"
        # stringData is write-only: Kubernetes folds it into data.
        if self.string_data:
            data = dict(self.data or {})
            for key, value in self.string_data.items():
                data[key] = base64.b64encode(value.encode()).decode()
            self.data = data
            self.string_data = None

    def validate_semantics(self) -> Problems:
        out = _check_data_keys("data", self.data) + _check_data_keys("stringData", self.string_data)
        for key, value in (self.data or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                out.append((f"data[{key}]", "Invalid value: illegal base64 data"))
        return out

    def validate_update(self, old: Self) -> Problems:
        out = immutable_field("type", self.type, old.type)
        out += _frozen_data(
            old.immutable,
            self.immutable,
            (
                ("data", self.data, old.data),
                ("stringData", self.string_data, old.string_data),
            ),
        )
        return out

    def decoded(self) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in (self.data or {}).items()}


class ServiceAccount(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["ServiceAccount"] = "ServiceAccount"
    secrets: list[ObjectReference] | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    automount_service_account_token: bool | None = None

    plural = "serviceaccounts"
    singular = "serviceaccount"
    short_names = ("sa",)
    has_spec = False


# ---- Event ---------------------------------------------------------------------------


class EventSource(KumoModel):
    component: str | None = None
    host: str | None = None


class EventSeries(KumoModel):
    count: int | None = None
    last_observed_time: str | None = None


class Event(Resource):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Event"] = "Event"
    involved_object: ObjectReference = Field(default_factory=ObjectReference)
    reason: str | None = None
    message: str | None = None
    source: EventSource | None = None
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    count: int | None = None
    type: str | None = None
    event_time: str | None = None
    series: EventSeries | None = None
    action: str | None = None
    related: ObjectReference | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None

    plural = "events"
    singular = "event"
    short_names = ("ev",)
    has_spec = False
    selectable_fields = (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    )

    def apply_defaults(self) -> None:
        self.type = self.type or "Normal"

    def validate_semantics(self) -> Problems:
        out: Problems = []
        if self.type not in (None, "Normal", "Warning"):
            out.append(
                ("type", f'Unsupported value: "{self.type}": supported values: "Normal", "Warning"')
            )
        return out


# ---- ResourceQuota and LimitRange ------------------------------------------------------

QUOTA_SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort")
# What a quota scoped to BestEffort pods may limit: they request nothing, so only counts.
_BEST_EFFORT_RESOURCES = ("pods", "count/pods")


def _quantities(path: str, values: dict[str, str] | None) -> Problems:
    out: Problems = []
    for name, amount in (values or {}).items():
        out.extend(
            (f"{path}[{name}]", f"Invalid value: {amount!r}: {p}")
            for p in quantity_problems(amount)
        )
        out.extend(
            (f"{path}[{name}]", f"Invalid value: {name!r}: {p}") for p in qualified_name(name)
        )
    return out


class ResourceQuotaSpec(KumoModel):
    hard: ResourceList | None = None
    scopes: list[str] | None = None


class ResourceQuotaStatus(KumoModel):
    hard: ResourceList | None = None
    used: ResourceList | None = None


class ResourceQuota(Resource):
    """Limits on what one namespace may hold (counts) and request (cpu, memory)."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["ResourceQuota"] = "ResourceQuota"
    spec: ResourceQuotaSpec = Field(default_factory=ResourceQuotaSpec)
    status: ResourceQuotaStatus | None = None

    plural = "resourcequotas"
    singular = "resourcequota"
    short_names = ("quota",)
    subresources = ("status",)

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out = _quantities("spec.hard", spec.hard)
        scopes = spec.scopes or []
        for i, scope in enumerate(scopes):
            if scope not in QUOTA_SCOPES:
                supported = ", ".join(f'"{s}"' for s in QUOTA_SCOPES)
                out.append(
                    (
                        f"spec.scopes[{i}]",
                        f'Unsupported value: "{scope}": supported values: {supported}',
                    )
                )
        for first, second in (("Terminating", "NotTerminating"), ("BestEffort", "NotBestEffort")):
            if first in scopes and second in scopes:
                out.append(
                    (
                        "spec.scopes",
                        f"Invalid value: {show_value(scopes)}: conflicting scopes",
                    )
                )
        if "BestEffort" in scopes:
            for name in spec.hard or {}:
                if name not in _BEST_EFFORT_RESOURCES:
                    out.append(
                        (
                            f"spec.hard[{name}]",
                            f'Invalid value: "{name}": unsupported scope applied to resource',
                        )
                    )
        return out


def _ratio_of(high: Any, low: Any) -> Any:
    """``high / low``, infinite when it does not fit a decimal."""
    import decimal

    try:
        return high / low
    except ArithmeticError:
        return decimal.Decimal("Infinity")


class LimitRangeItem(KumoModel):
    type: str
    max: ResourceList | None = None
    min: ResourceList | None = None
    default: ResourceList | None = None
    default_request: ResourceList | None = None
    max_limit_request_ratio: ResourceList | None = None


class LimitRangeSpec(KumoModel):
    limits: list[LimitRangeItem]


LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")


class LimitRange(Resource):
    """Per-container and per-pod bounds in a namespace, and the defaults containers get."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["LimitRange"] = "LimitRange"
    spec: LimitRangeSpec = Field(default_factory=lambda: LimitRangeSpec(limits=[]))

    plural = "limitranges"
    singular = "limitrange"
    short_names = ("limits",)

    def apply_defaults(self) -> None:
        """Kubernetes' SetDefaults_LimitRangeItem: for Container items, a missing default
        limit is the max, and a missing default request is the default limit, else the min."""
        for item in self.spec.limits:
            if item.type != "Container":
                continue
            default = dict(item.default or {})
            for name, amount in (item.max or {}).items():
                default.setdefault(name, amount)
            request = dict(item.default_request or {})
            for name, amount in default.items():
                request.setdefault(name, amount)
            for name, amount in (item.min or {}).items():
                request.setdefault(name, amount)
            item.default = default or None
            item.default_request = request or None

    def validate_semantics(self) -> Problems:
        from kumo.model.validation import QuantityError, parse_quantity

        out: Problems = []
        for i, item in enumerate(self.spec.limits):
            here = f"spec.limits[{i}]"
            if item.type not in LIMIT_TYPES:
                supported = ", ".join(f'"{t}"' for t in LIMIT_TYPES)
                out.append(
                    (
                        f"{here}.type",
                        f'Unsupported value: "{item.type}": supported values: {supported}',
                    )
                )
            fields = (
                ("max", item.max),
                ("min", item.min),
                ("default", item.default),
                ("defaultRequest", item.default_request),
                ("maxLimitRequestRatio", item.max_limit_request_ratio),
            )
            problems = [p for wire, values in fields for p in _quantities(f"{here}.{wire}", values)]
            out.extend(problems)
            if problems:
                continue
            if item.type == "Pod":
                for wire, values in (
                    ("default", item.default),
                    ("defaultRequest", item.default_request),
                ):
                    if values:
                        out.append(
                            (
                                f"{here}.{wire}",
                                "Forbidden: may not be specified when `type` is 'Pod'",
                            )
                        )

            def amount(values: dict[str, str] | None, name: str) -> Any:
                text = (values or {}).get(name)
                if text is None:
                    return None
                try:
                    return parse_quantity(text)
                except QuantityError:  # pragma: no cover - checked above
                    return None

            names = {n for _, values in fields for n in values or {}}
            for name in sorted(names):
                low, high = amount(item.min, name), amount(item.max, name)
                default, request = amount(item.default, name), amount(item.default_request, name)
                ratio = amount(item.max_limit_request_ratio, name)
                shown = {
                    "min": (item.min or {}).get(name),
                    "max": (item.max or {}).get(name),
                    "default": (item.default or {}).get(name),
                    "defaultRequest": (item.default_request or {}).get(name),
                    "ratio": (item.max_limit_request_ratio or {}).get(name),
                }
                checks = (
                    (
                        low,
                        high,
                        "min",
                        f"min value {shown['min']} is greater than max value {shown['max']}",
                    ),
                    (
                        low,
                        request,
                        "defaultRequest",
                        f"min value {shown['min']} is greater than default request value {shown['defaultRequest']}",
                    ),
                    (
                        request,
                        high,
                        "defaultRequest",
                        f"default request value {shown['defaultRequest']} is greater than max value {shown['max']}",
                    ),
                    (
                        request,
                        default,
                        "defaultRequest",
                        f"default request value {shown['defaultRequest']} is greater than default limit value {shown['default']}",
                    ),
                    (
                        low,
                        default,
                        "default",
                        f"min value {shown['min']} is greater than default value {shown['default']}",
                    ),
                    (
                        default,
                        high,
                        "default",
                        f"default value {shown['default']} is greater than max value {shown['max']}",
                    ),
                )
                for smaller, larger, wire, message in checks:
                    if smaller is not None and larger is not None and smaller > larger:
                        value = shown["min" if wire == "min" else wire]
                        out.append(
                            (f"{here}.{wire}[{name}]", f'Invalid value: "{value}": {message}')
                        )
                if ratio is not None:
                    if ratio < 1:
                        out.append(
                            (
                                f"{here}.maxLimitRequestRatio[{name}]",
                                f'Invalid value: "{shown["ratio"]}": ratio {shown["ratio"]} is less than 1',
                            )
                        )
                    elif low and high is not None and ratio > _ratio_of(high, low):
                        out.append(
                            (
                                f"{here}.maxLimitRequestRatio[{name}]",
                                f'Invalid value: "{shown["ratio"]}": ratio {shown["ratio"]} is greater than max/min = {_ratio_of(high, low):f}',
                            )
                        )
        return out
