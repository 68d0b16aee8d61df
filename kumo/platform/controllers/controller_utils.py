"""Pure helpers the workload controllers share (Kubernetes' pkg/controller/controller_utils):
pod predicates, the scale-down ranking of pods, owner references, pods from templates,
status conditions, selectors and timestamps. Objects are raw API dicts; nothing here does
I/O, so every rule is unit-testable.
"""

from __future__ import annotations

import copy
import datetime
import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from kumo.model.base import LabelSelector
from kumo.model.selectors import NOTHING, Selector, SelectorError, from_label_selector

Obj = dict[str, Any]

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Creating many pods at once starts with this many and doubles while creates succeed.
SLOW_START_INITIAL_BATCH = 1

# ---- metadata and time ---------------------------------------------------------------------


def meta(obj: Obj | None) -> Obj:
    found: Obj = (obj or {}).get("metadata") or {}
    return found


def spec(obj: Obj | None) -> Obj:
    found: Obj = (obj or {}).get("spec") or {}
    return found


def status(obj: Obj | None) -> Obj:
    found: Obj = (obj or {}).get("status") or {}
    return found


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Obj) -> str:
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: Obj) -> str:
    return str(meta(obj).get("uid") or "")


def labels_of(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = meta(obj).get("labels") or {}
    return found


def annotations_of(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = meta(obj).get("annotations") or {}
    return found


def being_deleted(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def parse_time(text: Any) -> datetime.datetime | None:
    """An RFC 3339 timestamp (Time or MicroTime) as an aware datetime; None if absent/bad."""
    if not text or not isinstance(text, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def format_time(when: datetime.datetime) -> str:
    """Kubernetes' Time: second precision, UTC, 'Z'."""
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def int_value(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


# ---- selectors -----------------------------------------------------------------------------


def label_selector(raw: Any) -> Selector:
    """A ``spec.selector`` (LabelSelector dict) as a matcher. None or invalid matches nothing;
    an empty object matches everything, as in Kubernetes."""
    if not isinstance(raw, dict):
        return NOTHING
    try:
        return from_label_selector(LabelSelector.model_validate(raw))
    except (ValidationError, SelectorError):
        return NOTHING


# ---- pods ----------------------------------------------------------------------------------


def pod_phase(pod: Obj) -> str:
    return str(status(pod).get("phase") or "")


def is_pod_active(pod: Obj) -> bool:
    """Counts toward a controller's replicas: not finished and not being deleted."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not being_deleted(pod)


def is_pod_terminal(pod: Obj) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def pod_condition(pod: Obj, kind: str) -> Obj | None:
    for condition in status(pod).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return None


def is_pod_ready(pod: Obj) -> bool:
    condition = pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def pod_ready_since(pod: Obj) -> datetime.datetime | None:
    """When the pod last became Ready (None if it is not Ready or the time is unknown)."""
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return None
    return parse_time(condition.get("lastTransitionTime"))


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime.datetime) -> bool:
    """Ready for at least ``min_ready_seconds`` (Kubernetes' IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_since(pod)
    if since is None:
        return False
    return since + datetime.timedelta(seconds=min_ready_seconds) < now


def max_container_restarts(pod: Obj) -> int:
    counts = [
        int_value(s.get("restartCount"))
        for s in status(pod).get("containerStatuses") or []
        if isinstance(s, dict)
    ]
    return max(counts, default=0)


def deletion_cost(pod: Obj) -> int:
    value = annotations_of(pod).get(POD_DELETION_COST)
    if value is None:
        return 0
    try:
        cost = int(value)
    except ValueError:
        return 0
    return cost if -(2**31) <= cost < 2**31 else 0


_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def _after_or_zero(first: datetime.datetime | None, second: datetime.datetime | None) -> bool:
    """Kubernetes' afterOrZero: a missing time sorts first, otherwise the later one does."""
    if first is None or second is None:
        return first is None
    return first > second


def _log_rank_diff(
    first: datetime.datetime, second: datetime.datetime, now: datetime.datetime
) -> int:
    """Compare ages on a log2 scale of nanoseconds (LogarithmicScaleDown)."""

    def rank(when: datetime.datetime) -> int:
        nanos = (now - when).total_seconds() * 1e9
        return int(math.log2(nanos)) if nanos > 0 else -1

    return rank(first) - rank(second)


def _compare_times(
    first: datetime.datetime | None,
    second: datetime.datetime | None,
    first_uid: str,
    second_uid: str,
    *,
    now: datetime.datetime,
    logarithmic: bool,
) -> int | None:
    """-1 when ``first`` should go first, 1 when ``second`` should, None when equal."""
    if first == second:
        return None
    if not logarithmic or first is None or second is None:
        return -1 if _after_or_zero(first, second) else 1
    diff = _log_rank_diff(first, second, now)
    if diff == 0:
        if first_uid == second_uid:
            return None
        return -1 if first_uid < second_uid else 1
    return -1 if diff < 0 else 1


def rank_pods_for_deletion(
    pods: Sequence[Obj],
    related: Iterable[Obj] = (),
    *,
    now: datetime.datetime | None = None,
    logarithmic: bool = True,
) -> list[Obj]:
    """``pods`` ordered most-deletable first, by Kubernetes' ActivePodsWithRanks:
    unscheduled, then Pending < Unknown < Running, not ready, lower deletion cost, more
    related pods on the same node, ready more recently, more restarts, created more recently.
    ``related`` are the pods of every ReplicaSet of the same owner (for the node ranks)."""
    when = now or utcnow()
    on_node: dict[str, int] = {}
    for pod in related:
        if is_pod_active(pod):
            node = str(spec(pod).get("nodeName") or "")
            on_node[node] = on_node.get(node, 0) + 1
    ranks = {id(pod): on_node.get(str(spec(pod).get("nodeName") or ""), 0) for pod in pods}

    def compare(a: Obj, b: Obj) -> int:
        node_a, node_b = str(spec(a).get("nodeName") or ""), str(spec(b).get("nodeName") or "")
        if node_a != node_b and (not node_a or not node_b):
            return -1 if not node_a else 1
        phase_a = _PHASE_ORDER.get(pod_phase(a), 0)
        phase_b = _PHASE_ORDER.get(pod_phase(b), 0)
        if phase_a != phase_b:
            return -1 if phase_a < phase_b else 1
        ready_a, ready_b = is_pod_ready(a), is_pod_ready(b)
        if ready_a != ready_b:
            return -1 if not ready_a else 1
        cost_a, cost_b = deletion_cost(a), deletion_cost(b)
        if cost_a != cost_b:
            return -1 if cost_a < cost_b else 1
        rank_a, rank_b = ranks[id(a)], ranks[id(b)]
        if rank_a != rank_b:
            return -1 if rank_a > rank_b else 1
        if ready_a and ready_b:
            order = _compare_times(
                pod_ready_since(a),
                pod_ready_since(b),
                uid_of(a),
                uid_of(b),
                now=when,
                logarithmic=logarithmic,
            )
            if order is not None:
                return order
        restarts_a, restarts_b = max_container_restarts(a), max_container_restarts(b)
        if restarts_a != restarts_b:
            return -1 if restarts_a > restarts_b else 1
        order = _compare_times(
            parse_time(meta(a).get("creationTimestamp")),
            parse_time(meta(b).get("creationTimestamp")),
            uid_of(a),
            uid_of(b),
            now=when,
            logarithmic=logarithmic,
        )
        return order or 0

    return sorted(pods, key=functools.cmp_to_key(compare))


def pods_to_delete(
    pods: Sequence[Obj],
    count: int,
    related: Iterable[Obj] = (),
    *,
    now: datetime.datetime | None = None,
) -> list[Obj]:
    """The ``count`` pods a scale-down removes."""
    if count <= 0:
        return []
    if count >= len(pods):
        return list(pods)
    return rank_pods_for_deletion(pods, related, now=now)[:count]


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes for creating ``count`` objects: 1, 2, 4, ... (Kubernetes' slowStartBatch)."""
    out: list[int] = []
    size = max(initial, 1)
    remaining = count
    while remaining > 0:
        batch = min(size, remaining)
        out.append(batch)
        remaining -= batch
        size *= 2
    return out


# ---- owners ----------------------------------------------------------------------------------


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Obj, api_version: str, kind: str) -> Obj:
    """A controller reference to ``owner`` that blocks its foreground deletion."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_controlled_by(obj: Obj, owner_uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and str(ref.get("uid")) == owner_uid


def pod_from_template(
    template: Obj,
    owner: Obj,
    owner_ref: Obj,
    *,
    extra_finalizers: Sequence[str] = (),
) -> Obj:
    """A new Pod for ``owner`` (Kubernetes' GetPodFromTemplate): the template's labels,
    annotations, finalizers and spec, ``generateName`` ``<owner>-`` and the controller ref."""
    template_meta = template.get("metadata") or {}
    pod_meta: Obj = {
        "generateName": f"{name_of(owner)}-",
        "namespace": namespace_of(owner),
        "ownerReferences": [owner_ref],
    }
    if template_meta.get("labels"):
        pod_meta["labels"] = dict(template_meta["labels"])
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    finalizers = [*(template_meta.get("finalizers") or []), *extra_finalizers]
    if finalizers:
        pod_meta["finalizers"] = list(dict.fromkeys(finalizers))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


# ---- conditions ------------------------------------------------------------------------------


def find_condition(conditions: Iterable[Obj] | None, kind: str) -> Obj | None:
    for condition in conditions or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return None


def new_condition(
    kind: str, state: str, reason: str, message: str, now: datetime.datetime, *, update: bool
) -> Obj:
    stamp = format_time(now)
    condition: Obj = {
        "type": kind,
        "status": state,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
    }
    if update:
        condition["lastUpdateTime"] = stamp
    return condition


def set_condition(conditions: list[Obj], condition: Obj) -> list[Obj]:
    """Kubernetes' SetDeploymentCondition: unchanged when status and reason are the same; the
    transition time survives when only the reason changes; otherwise replace the condition."""
    current = find_condition(conditions, str(condition["type"]))
    if (
        current is not None
        and current.get("status") == condition.get("status")
        and current.get("reason") == condition.get("reason")
    ):
        return conditions
    if current is not None and current.get("status") == condition.get("status"):
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    return [c for c in conditions if c.get("type") != condition["type"]] + [condition]


def remove_condition(conditions: list[Obj], kind: str) -> list[Obj]:
    return [c for c in conditions if c.get("type") != kind]


def strip_volatile(
    value: Any, keys: Sequence[str] = ("lastUpdateTime", "lastTransitionTime")
) -> Any:
    """``value`` without timestamps, to compare what a status says rather than when."""
    if isinstance(value, dict):
        return {k: strip_volatile(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [strip_volatile(v, keys) for v in value]
    return value


def sorted_by_creation(objs: Iterable[Obj], *, newest_first: bool = False) -> list[Obj]:
    """Oldest first (name breaks ties), like Kubernetes' ...ByCreationTimestamp."""
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    ordered = sorted(
        objs,
        key=lambda o: (parse_time(meta(o).get("creationTimestamp")) or epoch, name_of(o)),
    )
    return list(reversed(ordered)) if newest_first else ordered


def labels_match(selector: Selector, obj: Obj) -> bool:
    return selector.matches(labels_of(obj))
