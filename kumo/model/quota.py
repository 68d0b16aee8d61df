"""Resource quota accounting, as Kubernetes' quota evaluators do it. Pure: objects are wire
dicts, amounts are exact decimals, nothing here does I/O.

- ``usage(plural, group, obj)``: what one object counts against every quota resource name
  it can be charged to (``pods``, ``count/pods``, ``requests.cpu``, ``cpu``,
  ``limits.memory``, ``services.nodeports``, ``count/deployments.apps``, ...);
- ``tracks(plural, group, name)``: whether a quota's hard resource ``name`` is charged by
  objects of that kind at all;
- ``matches_scopes(scopes, plural, group, obj)``: whether a scoped quota covers the object;
- ``missing_requests(required, pod)``: Kubernetes' "must specify" rule for pods under a
  quota on cpu or memory;
- ``format_amount(name, amount)``: a decimal back to a quantity string (``500m``, ``1Gi``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kumo.model.validation import QuantityError, parse_quantity

Obj = Mapping[str, Any]
Amounts = dict[str, Decimal]

# Names a quota may use for an object count without the count/ prefix (core group only).
LEGACY_COUNTS = (
    "pods",
    "services",
    "secrets",
    "configmaps",
    "resourcequotas",
    "replicationcontrollers",
    "persistentvolumeclaims",
)
# Bare names that mean the request: "cpu" is "requests.cpu".
REQUEST_ALIASES = ("cpu", "memory", "ephemeral-storage")
# Quota names under which a pod must state a request or limit for every container.
CONSTRAINED = (
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
)
SERVICE_RESOURCES = ("services.nodeports", "services.loadbalancers")
ZERO = Decimal(0)


def count_name(plural: str, group: str) -> str:
    """``count/pods``, ``count/deployments.apps``."""
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def _is_pod(plural: str, group: str) -> bool:
    return plural == "pods" and group == ""


def _is_service(plural: str, group: str) -> bool:
    return plural == "services" and group == ""


def tracks(plural: str, group: str, name: str) -> bool:
    """Whether objects of this kind are charged to the quota resource ``name``."""
    if name == count_name(plural, group):
        return True
    if group == "" and name == plural and plural in LEGACY_COUNTS:
        return True
    if _is_pod(plural, group):
        return (
            name in REQUEST_ALIASES
            or name.startswith(("requests.", "limits.", "hugepages-"))
            or name == "pods"
        )
    if _is_service(plural, group):
        return name in SERVICE_RESOURCES
    return False


# ---- pods ------------------------------------------------------------------------------------


# Kubernetes quantities stop at 2^63-1 units; clamping keeps sums of absurd ones finite.
MAX_AMOUNT = Decimal(2**63 - 1)


def _amount(text: Any) -> Decimal | None:
    if text is None:
        return None
    try:
        value = parse_quantity(text if isinstance(text, str | int | float) else str(text))
    except QuantityError:
        return None
    return max(min(value, MAX_AMOUNT), -MAX_AMOUNT)


def _add(into: Amounts, extra: Mapping[str, Decimal]) -> None:
    for name, value in extra.items():
        into[name] = into.get(name, ZERO) + value


def _max(into: Amounts, other: Mapping[str, Decimal]) -> None:
    for name, value in other.items():
        if name not in into or value > into[name]:
            into[name] = value


def container_resources(container: Obj, kind: str) -> Amounts:
    """A container's ``requests`` or ``limits`` as decimals (unparseable ones left out)."""
    resources = container.get("resources") or {}
    out: Amounts = {}
    for name, text in (resources.get(kind) or {}).items():
        value = _amount(text)
        if value is not None:
            out[str(name)] = value
    return out


def pod_resources(spec: Obj, kind: str) -> Amounts:
    """The pod's effective ``requests`` or ``limits`` (Kubernetes' PodRequests / PodLimits):
    its containers plus sidecars (restartable init containers), or the largest init
    container (with the sidecars started before it), whichever is more, plus overhead."""
    total: Amounts = {}
    for container in spec.get("containers") or []:
        _add(total, container_resources(container, kind))
    sidecars: Amounts = {}
    init_peak: Amounts = {}
    for container in spec.get("initContainers") or []:
        own = container_resources(container, kind)
        if container.get("restartPolicy") == "Always":
            _add(total, own)
            _add(sidecars, own)
            step = dict(sidecars)
        else:
            step = dict(own)
            _add(step, sidecars)
        _max(init_peak, step)
    _max(total, init_peak)
    overhead = spec.get("overhead") or {}
    for name, text in overhead.items():
        value = _amount(text)
        if value is not None and (kind == "requests" or name in total):
            total[name] = total.get(name, ZERO) + value
    return total


def pod_charged(pod: Obj, now: datetime.datetime | None = None) -> bool:
    """Kubernetes' QuotaV1Pod: finished pods, and pods stuck terminating past their grace
    period, no longer count."""
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted = meta.get("deletionTimestamp")
    grace = meta.get("deletionGracePeriodSeconds")
    if deleted and isinstance(grace, int):
        try:
            when = datetime.datetime.fromisoformat(str(deleted).replace("Z", "+00:00"))
        except ValueError:
            return True
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        current = now or datetime.datetime.now(datetime.UTC)
        if current > when + datetime.timedelta(seconds=grace):
            return False
    return True


def pod_compute_usage(spec: Obj) -> Amounts:
    out: Amounts = {}
    for name, value in pod_resources(spec, "requests").items():
        out[f"requests.{name}"] = value
        if name in REQUEST_ALIASES:
            out[name] = value
        if name.startswith("hugepages-"):
            out[name] = value
    for name, value in pod_resources(spec, "limits").items():
        out[f"limits.{name}"] = value
    return out


def is_best_effort(spec: Obj) -> bool:
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = container.get("resources") or {}
        if resources.get("requests") or resources.get("limits"):
            return False
    return True


def is_terminating(spec: Obj) -> bool:
    deadline = spec.get("activeDeadlineSeconds")
    return isinstance(deadline, int) and deadline >= 0


def matches_scopes(scopes: Iterable[str], plural: str, group: str, obj: Obj) -> bool:
    """A quota without scopes covers every object; scopes only ever match pods."""
    wanted = list(scopes)
    if not wanted:
        return True
    if not _is_pod(plural, group):
        return False
    spec = obj.get("spec") or {}
    for scope in wanted:
        if scope == "BestEffort" and not is_best_effort(spec):
            return False
        if scope == "NotBestEffort" and is_best_effort(spec):
            return False
        if scope == "Terminating" and not is_terminating(spec):
            return False
        if scope == "NotTerminating" and is_terminating(spec):
            return False
    return True


def missing_requests(required: Iterable[str], pod: Obj) -> dict[str, list[str]]:
    """Resource name -> containers that do not state it, for the quota names in ``required``
    that demand an explicit request or limit from every container (cpu, memory)."""
    wanted = [name for name in required if name in CONSTRAINED]
    out: dict[str, list[str]] = {}
    if not wanted:
        return out
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        for name in wanted:
            kind, _, resource = name.rpartition(".")
            source = limits if kind == "limits" else requests
            if resource not in source:
                out.setdefault(name, []).append(str(container.get("name", "")))
    return out


# ---- every kind ------------------------------------------------------------------------------


def usage(plural: str, group: str, obj: Obj, now: datetime.datetime | None = None) -> Amounts:
    """What ``obj`` (of the kind ``plural``.``group``) counts against quota; empty when it
    counts for nothing (a finished pod)."""
    if _is_pod(plural, group) and not pod_charged(obj, now):
        return {}
    out: Amounts = {count_name(plural, group): Decimal(1)}
    if group == "" and plural in LEGACY_COUNTS:
        out[plural] = Decimal(1)
    if _is_pod(plural, group):
        out.update(pod_compute_usage(obj.get("spec") or {}))
    elif _is_service(plural, group):
        spec = obj.get("spec") or {}
        kind = spec.get("type") or "ClusterIP"
        ports = len(spec.get("ports") or [])
        if kind == "LoadBalancer":
            out["services.loadbalancers"] = Decimal(1)
            if spec.get("allocateLoadBalancerNodePorts", True) is not False:
                out["services.nodeports"] = Decimal(ports)
        elif kind == "NodePort":
            out["services.nodeports"] = Decimal(ports)
    return out


def total_usage(
    plural: str,
    group: str,
    objects: Iterable[Obj],
    scopes: Iterable[str] = (),
    now: datetime.datetime | None = None,
) -> Amounts:
    scopes = list(scopes)
    total: Amounts = {}
    for obj in objects:
        if matches_scopes(scopes, plural, group, obj):
            _add(total, usage(plural, group, obj, now))
    return total


def subtract_non_negative(new: Mapping[str, Decimal], old: Mapping[str, Decimal]) -> Amounts:
    """``new - old`` per resource, never below zero (Kubernetes' SubtractWithNonNegativeResult)."""
    out: Amounts = {}
    for name, value in new.items():
        delta = value - old.get(name, ZERO)
        out[name] = delta if delta > 0 else ZERO
    return out


def parse_hard(hard: Mapping[str, Any] | None) -> Amounts:
    out: Amounts = {}
    for name, text in (hard or {}).items():
        value = _amount(text)
        if value is not None:
            out[str(name)] = value
    return out


# ---- formatting ---------------------------------------------------------------------------------

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))
_BYTES = ("memory", "storage", "hugepages")


def format_amount(name: str, amount: Decimal) -> str:
    """A quantity string for ``amount`` of resource ``name``: ``500m``, ``2``, ``256Mi``."""
    if amount != amount.to_integral_value():
        millis = (amount * 1000).to_integral_value(rounding=ROUND_CEILING)
        return f"{int(millis)}m"
    whole = int(amount)
    if whole and any(part in name for part in _BYTES):
        for suffix, size in _BINARY:
            if whole % size == 0:
                return f"{whole // size}{suffix}"
        for suffix, size in _DECIMAL:
            if whole % size == 0:
                return f"{whole // size}{suffix}"
    return str(whole)


def pretty(amounts: Mapping[str, Decimal]) -> str:
    """``pods=1,requests.cpu=500m`` (Kubernetes' prettyPrint: sorted by name)."""
    return ",".join(f"{name}={format_amount(name, amounts[name])}" for name in sorted(amounts))
