"""LimitRange admission (Kubernetes' LimitRanger) for pods being created.

1. Defaults: a container without a request or limit for a resource gets the ``default`` /
   ``defaultRequest`` of the namespace's ``Container`` items (first LimitRange by name wins),
   noted in the ``kubernetes.io/limit-ranger`` annotation as Kubernetes does. The pod is
   validated again afterwards (a default limit below an explicit request is a 422).
2. Bounds: ``min``, ``max`` and ``maxLimitRequestRatio`` of ``Container`` items hold for each
   container, those of ``Pod`` items for the pod's total. Violations are a 403 worded like
   Kubernetes', each naming the LimitRange::

       pods "web" is forbidden: maximum cpu usage per Container is 1, but limit is 2 (LimitRange "limits")
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from kumo.auth.user import UserInfo
from kumo.model.core import LimitRange, Pod, qos_class
from kumo.model.quota import Amounts, container_resources, format_amount, pod_resources
from kumo.model.registry import ResourceInfo, for_model
from kumo.model.validation import QuantityError, parse_quantity
from kumo.platform.api.admission import validation_causes
from kumo.platform.api.errors import forbidden, invalid

LIMIT_RANGE_INFO = for_model(LimitRange)
ANNOTATION = "kubernetes.io/limit-ranger"
Obj = dict[str, Any]


# ---- defaults ----------------------------------------------------------------------------------


def default_requirements(limit_range: Obj) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits) a container without its own gets from this LimitRange."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") != "Container":
            continue
        requests.update(item.get("defaultRequest") or {})
        limits.update(item.get("default") or {})
    return requests, limits


def apply_defaults(limit_range: Obj, pod: Obj) -> list[str]:
    """Fill in missing requests and limits from ``limit_range``; return the annotation notes."""
    default_requests, default_limits = default_requirements(limit_range)
    notes: list[str] = []
    if not default_requests and not default_limits:
        return notes
    spec = pod.get("spec") or {}
    groups = (
        ("init container", spec.get("initContainers") or []),
        ("container", spec.get("containers") or []),
    )
    for prefix, containers in groups:
        for container in containers:
            resources = container.setdefault("resources", {})
            limits = resources.setdefault("limits", {})
            requests = resources.setdefault("requests", {})
            set_limits = [name for name in default_limits if name not in limits]
            for name in set_limits:
                limits[name] = default_limits[name]
            set_requests = [name for name in default_requests if name not in requests]
            for name in set_requests:
                requests[name] = default_requests[name]
            for key in ("limits", "requests"):
                if not resources[key]:
                    del resources[key]
            name = container.get("name", "")
            if set_requests:
                notes.append(f"{', '.join(sorted(set_requests))} request for {prefix} {name}")
            if set_limits:
                notes.append(f"{', '.join(sorted(set_limits))} limit for {prefix} {name}")
    return notes


# ---- bounds ------------------------------------------------------------------------------------


def _parse(text: Any) -> Decimal | None:
    try:
        return parse_quantity(text)
    except (QuantityError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Observed:
    """What a container (or a whole pod) requests and is limited to; ``*_texts`` are the
    quantities as written, shown in messages when there are any."""

    kind: str  # "Container" or "Pod"
    requests: Amounts
    limits: Amounts
    request_texts: dict[str, Any] | None = None
    limit_texts: dict[str, Any] | None = None

    def request(self, name: str) -> str:
        return _show(name, self.requests, self.request_texts)

    def limit(self, name: str) -> str:
        return _show(name, self.limits, self.limit_texts)


def _show(name: str, amounts: Amounts, texts: dict[str, Any] | None) -> str:
    if texts and name in texts:
        return str(texts[name])
    return format_amount(name, amounts[name])


def _min(seen: Observed, name: str, enforced: str) -> str | None:
    bound = _parse(enforced)
    if bound is None:
        return None
    head = f"minimum {name} usage per {seen.kind} is {enforced}"
    if name not in seen.requests:
        return f"{head}.  No request is specified"
    if seen.requests[name] < bound:
        return f"{head}, but request is {seen.request(name)}"
    if name in seen.limits and seen.limits[name] < bound:
        return f"{head}, but limit is {seen.limit(name)}"
    return None


def _max(seen: Observed, name: str, enforced: str) -> str | None:
    bound = _parse(enforced)
    if bound is None:
        return None
    head = f"maximum {name} usage per {seen.kind} is {enforced}"
    if name not in seen.limits:
        return f"{head}.  No limit is specified"
    if seen.limits[name] > bound:
        return f"{head}, but limit is {seen.limit(name)}"
    if name in seen.requests and seen.requests[name] > bound:
        return f"{head}, but request is {seen.request(name)}"
    return None


def _ratio(seen: Observed, name: str, enforced: str) -> str | None:
    bound = _parse(enforced)
    if bound is None:
        return None
    head = f"{name} max limit to request ratio per {seen.kind} is {enforced}"
    request, limit = seen.requests.get(name), seen.limits.get(name)
    if not request:
        return f"{head}, but no request is specified or request is 0"
    if not limit:
        return f"{head}, but no limit is specified or limit is 0"
    try:
        observed = limit / request
    except ArithmeticError:  # too large to represent: certainly over any bound
        observed = Decimal("Infinity")
    if observed > bound:
        return f"{head}, but provided ratio is {float(observed):f}"
    return None


def _check(item: Obj, seen: Observed) -> list[str]:
    problems: list[str | None] = []
    for name, enforced in sorted((item.get("min") or {}).items()):
        problems.append(_min(seen, name, str(enforced)))
    for name, enforced in sorted((item.get("max") or {}).items()):
        problems.append(_max(seen, name, str(enforced)))
    for name, enforced in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        problems.append(_ratio(seen, name, str(enforced)))
    return [p for p in problems if p]


def violations(limit_range: Obj, pod: Obj) -> list[str]:
    """Every way ``pod`` breaks ``limit_range`` (Kubernetes' PodValidateLimitFunc)."""
    spec = pod.get("spec") or {}
    out: list[str] = []
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        kind = item.get("type")
        if kind == "Container":
            for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                resources = container.get("resources") or {}
                seen = Observed(
                    "Container",
                    container_resources(container, "requests"),
                    container_resources(container, "limits"),
                    resources.get("requests"),
                    resources.get("limits"),
                )
                out.extend(_check(item, seen))
        elif kind == "Pod":
            seen = Observed("Pod", pod_resources(spec, "requests"), pod_resources(spec, "limits"))
            out.extend(_check(item, seen))
    return out


# ---- the plugin -----------------------------------------------------------------------------


class LimitRanger:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def _ranges(self, namespace: str) -> list[Obj]:
        prefix = f"registry/core/{LIMIT_RANGE_INFO.plural}/{namespace}/"
        result = await self.store.list(prefix)
        return [copy.deepcopy(entry.obj) for entry in result.items]

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: Obj,
        old: Obj | None,
        user: UserInfo,
    ) -> list[str] | None:
        if info.kind != "Pod" or info.group or operation != "CREATE":
            return None
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        ranges = await self._ranges(namespace) if namespace else []
        if not ranges:
            return None
        notes: list[str] = []
        for limit_range in ranges:
            notes.extend(apply_defaults(limit_range, obj))
        name = str(meta.get("name") or "")
        if notes:
            obj.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION] = (
                "LimitRanger plugin set: " + "; ".join(notes)
            )
            _revalidate(info, obj, name)
        problems = [
            f'{problem} (LimitRange "{(limit_range.get("metadata") or {}).get("name", "")}")'
            for limit_range in ranges
            for problem in violations(limit_range, obj)
        ]
        if problems:
            detail = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
            raise forbidden(f'pods "{name}" is forbidden: {detail}', info, name or None)
        return None


def _revalidate(info: ResourceInfo, obj: Obj, name: str) -> None:
    """The pod as defaulted must still be valid; its QoS class follows its new resources."""
    try:
        pod = Pod.model_validate(obj)
    except ValidationError as exc:
        raise invalid(info.kind, info.group, name, validation_causes(exc)) from exc
    problems = pod.validate_semantics()
    if problems:
        raise invalid(info.kind, info.group, name, problems)
    status = obj.setdefault("status", {})
    status["qosClass"] = qos_class(pod.spec)
