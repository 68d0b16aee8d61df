"""What the scheduler needs to know about a Pod, parsed once from the raw API object.

A ``PodInfo`` holds integer resource requests (millicores, bytes, counts), host ports,
tolerations, node selector / affinity matchers and pod (anti-)affinity terms, so that filters
and scores never parse quantities or walk the raw dict in the hot loop. Objects are read-only
after construction (the raw ``obj`` too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kumo.model.base import LabelSelector
from kumo.model.selectors import Requirement, Selector, SelectorError, from_label_selector
from kumo.model.validation import QuantityError, cpu_millis, memory_bytes

Obj = dict[str, Any]
NamespaceLabels = Callable[[str], Mapping[str, str]]

CPU = "cpu"
MEMORY = "memory"
PODS = "pods"
# What Kubernetes assumes for scoring when a container requests nothing (non-zero requests).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
HOSTNAME_LABEL = "kubernetes.io/hostname"
DEFAULT_SCHEDULER_NAME = "default-scheduler"
WILDCARD_IP = "0.0.0.0"


@functools.lru_cache(maxsize=8192)
def quantity(resource: str, value: str) -> int:
    """A resource quantity as an integer: millicores for cpu, units (bytes, counts) otherwise;
    rounded up as Kubernetes does. An unparsable quantity counts as 0 (the API server
    validates quantities, so this only guards against foreign writers)."""
    try:
        return cpu_millis(value) if resource == CPU else memory_bytes(value)
    except (QuantityError, ValueError, ArithmeticError):
        return 0


def resource_map(values: Mapping[str, Any] | None) -> dict[str, int]:
    if not values:
        return {}
    return {name: quantity(name, str(amount)) for name, amount in values.items()}


# ---- node selection ------------------------------------------------------------------------

_NODE_OPERATORS = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!",
    "Gt": "gt",
    "Lt": "lt",
}


def _node_requirement(raw: Mapping[str, Any]) -> Requirement:
    """One NodeSelectorRequirement; raises ``SelectorError`` when it is malformed."""
    key = str(raw.get("key") or "")
    operator = _NODE_OPERATORS.get(str(raw.get("operator") or ""))
    values = tuple(str(v) for v in raw.get("values") or ())
    if not key or operator is None:
        raise SelectorError(f"invalid node selector requirement {dict(raw)!r}")
    if operator in ("in", "notin") and not values:
        raise SelectorError("In / NotIn need at least one value")
    if operator in ("exists", "!") and values:
        raise SelectorError("Exists / DoesNotExist take no values")
    if operator in ("gt", "lt"):
        if len(values) != 1:
            raise SelectorError("Gt / Lt need exactly one value")
        try:
            int(values[0])
        except ValueError as exc:
            raise SelectorError("Gt / Lt need an integer value") from exc
    return Requirement(key, operator, values)


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """matchExpressions against labels AND matchFields against ``metadata.name``.
    ``valid`` is False for an empty or malformed term, which matches no node (Kubernetes)."""

    expressions: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()
    valid: bool = True

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> NodeSelectorTerm:
        raw = raw or {}
        try:
            expressions = tuple(_node_requirement(r) for r in raw.get("matchExpressions") or ())
            fields = tuple(_node_requirement(r) for r in raw.get("matchFields") or ())
        except (SelectorError, AttributeError, TypeError):
            return cls(valid=False)
        for requirement in fields:
            if requirement.key != "metadata.name" or requirement.operator not in ("in", "notin"):
                return cls(valid=False)
        if not expressions and not fields:
            return cls(valid=False)
        return cls(expressions, fields)

    def matches(self, labels: Mapping[str, str], node_name: str) -> bool:
        if not self.valid:
            return False
        for requirement in self.expressions:
            if not requirement.matches(labels):
                return False
        if self.fields:
            name = {"metadata.name": node_name}
            for requirement in self.fields:
                if not requirement.matches(name):
                    return False
        return True

    def node_names(self) -> frozenset[str] | None:
        """The only node names this term can match (from ``metadata.name In``), or None."""
        names: frozenset[str] | None = None
        for requirement in self.fields:
            if requirement.operator == "in":
                allowed = frozenset(requirement.values)
                names = allowed if names is None else names & allowed
        return names


@dataclass(frozen=True, slots=True)
class RequiredNodeAffinity:
    """nodeSelector (every pair) AND requiredDuringScheduling... (any term)."""

    node_selector: tuple[tuple[str, str], ...] = ()
    terms: tuple[NodeSelectorTerm, ...] | None = None  # None: no required node affinity

    def matches(self, labels: Mapping[str, str], node_name: str) -> bool:
        for key, value in self.node_selector:
            if labels.get(key) != value:
                return False
        if self.terms is None:
            return True
        return any(term.matches(labels, node_name) for term in self.terms)

    def node_names(self) -> frozenset[str] | None:
        """Node names the pod is restricted to by ``matchFields metadata.name In``: when every
        term names its nodes this way, only their union can match."""
        if not self.terms:
            return None
        union: set[str] = set()
        for term in self.terms:
            names = term.node_names()
            if names is None:
                return None
            union |= names
        return frozenset(union)


# ---- pod affinity -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A PodAffinityTerm: pods matching ``selector`` in ``namespaces`` (or in namespaces whose
    labels match ``namespace_selector``), counted per value of ``topology_key``."""

    selector: Selector
    namespaces: frozenset[str]
    namespace_selector: Selector | None
    topology_key: str

    def matches(self, pod: PodInfo, namespace_labels: NamespaceLabels) -> bool:
        """Whether ``pod`` is one of the pods this term selects; ``namespace_labels`` looks up
        a namespace's labels (for ``namespaceSelector``)."""
        if pod.namespace not in self.namespaces:
            if self.namespace_selector is None:
                return False
            if not self.namespace_selector.empty and not self.namespace_selector.matches(
                namespace_labels(pod.namespace)
            ):
                return False
        return self.selector.matches(pod.labels)


def _affinity_term(raw: Mapping[str, Any], namespace: str) -> AffinityTerm | None:
    topology_key = str(raw.get("topologyKey") or "")
    if not topology_key:
        return None
    try:
        selector_raw = raw.get("labelSelector")
        selector = from_label_selector(
            None if selector_raw is None else LabelSelector.model_validate(selector_raw)
        )
        ns_selector_raw = raw.get("namespaceSelector")
        namespace_selector = (
            None
            if ns_selector_raw is None
            else from_label_selector(LabelSelector.model_validate(ns_selector_raw))
        )
    except (SelectorError, ValueError):
        return None
    namespaces = frozenset(str(n) for n in raw.get("namespaces") or ())
    if not namespaces and namespace_selector is None:
        namespaces = frozenset((namespace,))
    return AffinityTerm(selector, namespaces, namespace_selector, topology_key)


def _terms(raw: Any, namespace: str) -> tuple[AffinityTerm, ...]:
    out = []
    for item in raw or ():
        term = _affinity_term(item or {}, namespace)
        if term is not None:
            out.append(term)
    return tuple(out)


def _weighted_terms(raw: Any, namespace: str) -> tuple[tuple[int, AffinityTerm], ...]:
    out = []
    for item in raw or ():
        weight = int((item or {}).get("weight") or 0)
        term = _affinity_term((item or {}).get("podAffinityTerm") or {}, namespace)
        if weight and term is not None:
            out.append((weight, term))
    return tuple(out)


# ---- tolerations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, key: str, value: str, effect: str) -> bool:
        """Kubernetes' ToleratesTaint."""
        if self.effect and self.effect != effect:
            return False
        if self.key and self.key != key:
            return False
        if self.operator == "Exists":
            return True
        if self.operator in ("", "Equal"):
            return self.value == value
        return False


def tolerates(tolerations: tuple[Toleration, ...], key: str, value: str, effect: str) -> bool:
    return any(t.tolerates(key, value, effect) for t in tolerations)


# ---- the pod ------------------------------------------------------------------------------


def _add(total: dict[str, int], more: Mapping[str, int]) -> None:
    for name, amount in more.items():
        total[name] = total.get(name, 0) + amount


def _max(total: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        if amount > total.get(name, 0):
            total[name] = amount


def pod_requests(spec: Mapping[str, Any], *, non_zero: bool = False) -> dict[str, int]:
    """Kubernetes' effective pod request: the sum of containers (plus restartable init
    containers, which keep running) against the largest init container phase. With
    ``non_zero``, a container that states no cpu / memory request counts the scoring defaults
    (100m, 200Mi)."""

    def of(container: Mapping[str, Any]) -> dict[str, int]:
        requests = resource_map(((container.get("resources") or {}).get("requests")) or {})
        if non_zero:
            requests.setdefault(CPU, DEFAULT_MILLI_CPU_REQUEST)
            requests.setdefault(MEMORY, DEFAULT_MEMORY_REQUEST)
        return requests

    total: dict[str, int] = {}
    for container in spec.get("containers") or ():
        _add(total, of(container))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for container in spec.get("initContainers") or ():
        requests = of(container)
        if container.get("restartPolicy") == "Always":
            _add(sidecars, requests)
            phase = dict(sidecars)
        else:
            phase = dict(sidecars)
            _add(phase, requests)
        _max(init_peak, phase)
    _add(total, sidecars)
    _max(total, init_peak)
    overhead = resource_map(spec.get("overhead"))
    _add(total, overhead)
    return total


def normalized_image(name: str) -> str:
    """``nginx`` and ``nginx:latest`` are one image (Kubernetes' ImageLocality does this)."""
    last = name.rsplit("/", 1)[-1]
    if ":" in last or "@" in name:
        return name
    return f"{name}:latest"


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    host_network = bool(spec.get("hostNetwork"))
    out = []
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or ():
            for port in container.get("ports") or ():
                host_port = int(port.get("hostPort") or 0)
                if not host_port and host_network:
                    host_port = int(port.get("containerPort") or 0)
                if host_port <= 0:
                    continue
                ip = str(port.get("hostIP") or "") or WILDCARD_IP
                protocol = str(port.get("protocol") or "") or "TCP"
                out.append((ip, protocol, host_port))
    return tuple(out)


def controller_uid(meta: Mapping[str, Any]) -> str:
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return ""


class PodInfo:
    """The parsed pod. ``cpu`` / ``memory`` / ``scalar`` are the effective requests;
    ``nz_cpu`` / ``nz_memory`` the non-zero requests used by scoring."""

    __slots__ = (
        "container_count",
        "cpu",
        "deleting",
        "has_affinity",
        "has_required_anti_affinity",
        "host_ports",
        "images",
        "key",
        "labels",
        "memory",
        "name",
        "namespace",
        "node_name",
        "nz_cpu",
        "nz_memory",
        "obj",
        "owner_uid",
        "phase",
        "preferred_affinity",
        "preferred_anti_affinity",
        "preferred_node_affinity",
        "priority",
        "requests_anything",
        "required_affinity",
        "required_anti_affinity",
        "required_node_affinity",
        "scalar",
        "scheduler_name",
        "tolerations",
        "uid",
    )

    def __init__(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        self.obj = obj
        self.namespace = str(meta.get("namespace") or "")
        self.name = str(meta.get("name") or "")
        self.key = f"{self.namespace}/{self.name}"
        self.uid = str(meta.get("uid") or "")
        self.labels: dict[str, str] = dict(meta.get("labels") or {})
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.owner_uid = controller_uid(meta)
        self.node_name = str(spec.get("nodeName") or "")
        self.scheduler_name = str(spec.get("schedulerName") or "") or DEFAULT_SCHEDULER_NAME
        self.priority = int(spec.get("priority") or 0)
        self.phase = str(status.get("phase") or "")

        requests = pod_requests(spec)
        self.cpu = requests.pop(CPU, 0)
        self.memory = requests.pop(MEMORY, 0)
        self.scalar: tuple[tuple[str, int], ...] = tuple(
            sorted((name, amount) for name, amount in requests.items() if amount > 0)
        )
        self.requests_anything = self.cpu > 0 or self.memory > 0 or bool(self.scalar)
        non_zero = pod_requests(spec, non_zero=True)
        self.nz_cpu = non_zero.get(CPU, 0)
        self.nz_memory = non_zero.get(MEMORY, 0)

        self.host_ports = _host_ports(spec)
        self.images = tuple(
            normalized_image(str(c.get("image")))
            for group in ("initContainers", "containers")
            for c in spec.get(group) or ()
            if c.get("image")
        )
        self.container_count = len(spec.get("initContainers") or ()) + len(
            spec.get("containers") or ()
        )
        self.tolerations = tuple(
            Toleration(
                str(t.get("key") or ""),
                str(t.get("operator") or "Equal"),
                str(t.get("value") or ""),
                str(t.get("effect") or ""),
            )
            for t in spec.get("tolerations") or ()
        )

        affinity = spec.get("affinity") or {}
        node_affinity = affinity.get("nodeAffinity") or {}
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        selector = tuple(
            sorted((str(k), str(v)) for k, v in (spec.get("nodeSelector") or {}).items())
        )
        terms = (
            None
            if required is None
            else tuple(NodeSelectorTerm.parse(t) for t in required.get("nodeSelectorTerms") or ())
        )
        self.required_node_affinity: RequiredNodeAffinity | None = (
            RequiredNodeAffinity(selector, terms) if selector or terms is not None else None
        )
        preferred = []
        for item in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
            weight = int(item.get("weight") or 0)
            term = NodeSelectorTerm.parse(item.get("preference"))
            if weight and term.valid:
                preferred.append((weight, term))
        self.preferred_node_affinity: tuple[tuple[int, NodeSelectorTerm], ...] = tuple(preferred)

        pod_affinity = affinity.get("podAffinity") or {}
        anti = affinity.get("podAntiAffinity") or {}
        req_key = "requiredDuringSchedulingIgnoredDuringExecution"
        pref_key = "preferredDuringSchedulingIgnoredDuringExecution"
        self.required_affinity = _terms(pod_affinity.get(req_key), self.namespace)
        self.required_anti_affinity = _terms(anti.get(req_key), self.namespace)
        self.preferred_affinity = _weighted_terms(pod_affinity.get(pref_key), self.namespace)
        self.preferred_anti_affinity = _weighted_terms(anti.get(pref_key), self.namespace)
        self.has_required_anti_affinity = bool(self.required_anti_affinity)
        self.has_affinity = bool(
            self.required_affinity
            or self.required_anti_affinity
            or self.preferred_affinity
            or self.preferred_anti_affinity
        )

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def __repr__(self) -> str:
        return f"PodInfo({self.key}, node={self.node_name or '-'})"
