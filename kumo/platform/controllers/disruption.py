"""The disruption controller: keeps every PodDisruptionBudget's status current, which is
what the eviction subresource (``kumo.platform.api.disruption``) decides on.

For each budget (Kubernetes' disruption controller):
- the pods it covers are the pods of its namespace its selector matches;
- ``minAvailable: N``: N pods must stay healthy, out of the pods there are;
- ``minAvailable: P%`` and ``maxUnavailable``: counted against the replicas the pods'
  controllers want (a Deployment's through its ReplicaSets, a ReplicaSet's own, any other
  controller's ``scale`` subresource). Pods without a controller cannot be counted that way:
  they are left out and a ``UnmanagedPods`` warning event says to use an integer
  minAvailable;
- healthy pods are Ready and not being deleted, less the pods an eviction recorded in
  ``disruptedPods`` that are not gone yet; a record is dropped once its pod is gone or after
  two minutes (an eviction whose delete never happened);
- ``disruptionsAllowed`` = healthy - desired healthy (never below 0, and 0 with no expected
  pods), with condition ``DisruptionAllowed`` (SufficientPods / InsufficientPods);
- status goes through the status subresource, with ``observedGeneration``, only when changed.
"""

from __future__ import annotations

import copy
import datetime
import logging
from dataclasses import dataclass

from kumo.client import ApiException
from kumo.model.apps import Deployment, ReplicaSet
from kumo.model.common import scaled_value
from kumo.model.core import Pod
from kumo.model.policy import PodDisruptionBudget
from kumo.model.registry import by_kind
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    controller_ref,
    format_time,
    int_value,
    is_pod_ready,
    label_selector,
    labels_of,
    meta,
    name_of,
    namespace_of,
    parse_time,
    spec,
    status,
    utcnow,
)
from kumo.platform.controllers.informer import EventHandler, split_key
from kumo.platform.controllers.runner import Controller, Result, write_status
from kumo.platform.controllers.workload import EventRecorder

log = logging.getLogger(__name__)

# How long an eviction's record keeps its pod out of the healthy count (Kubernetes'
# DeletionTimeout).
DELETION_TIMEOUT = datetime.timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Counts:
    expected: int
    desired_healthy: int
    unmanaged: tuple[str, ...] = ()


def desired_counts(
    budget: Obj, pods: list[Obj], controller_of: dict[str, tuple[str, int] | None]
) -> Counts:
    """Expected pods and desired healthy pods for ``budget`` covering ``pods``;
    ``controller_of`` maps each pod name to (controller key, its wanted replicas) or None
    for a pod without a controller. Pure."""
    budget_spec = spec(budget)
    min_available = budget_spec.get("minAvailable")
    max_unavailable = budget_spec.get("maxUnavailable")
    if isinstance(min_available, int) and max_unavailable is None:
        return Counts(len(pods), min_available)
    if min_available is None and max_unavailable is None:
        return Counts(0, 0)
    wanted: dict[str, int] = {}
    unmanaged = []
    for pod in pods:
        found = controller_of.get(name_of(pod))
        if found is None:
            unmanaged.append(name_of(pod))
            continue
        wanted[found[0]] = found[1]
    expected = sum(wanted.values())
    if max_unavailable is not None:
        unavailable = scaled_value(max_unavailable, expected, round_up=True)
        desired = max(expected - unavailable, 0)
    else:
        desired = scaled_value(min_available, expected, round_up=True)
    return Counts(expected, desired, tuple(sorted(unmanaged)))


def live_disruptions(
    budget: Obj, pods_by_name: dict[str, Obj], now: datetime.datetime
) -> tuple[dict[str, str], datetime.datetime | None]:
    """``disruptedPods`` without the records that no longer hold a pod back (gone, being
    deleted, or older than the timeout), and when the oldest kept one expires. Pure."""
    kept: dict[str, str] = {}
    expires: datetime.datetime | None = None
    for name, when in (status(budget).get("disruptedPods") or {}).items():
        pod = pods_by_name.get(name)
        stamp = parse_time(when)
        if pod is None or being_deleted(pod) or stamp is None:
            continue
        deadline = stamp + DELETION_TIMEOUT
        if deadline <= now:
            continue
        kept[name] = str(when)
        expires = deadline if expires is None else min(expires, deadline)
    return kept, expires


def budget_status(
    budget: Obj, pods: list[Obj], counts: Counts, disrupted: dict[str, str], now: datetime.datetime
) -> Obj:
    """The status ``budget`` should have (conditions keep their transition time while their
    status holds). Pure."""
    healthy = sum(
        1
        for pod in pods
        if is_pod_ready(pod) and not being_deleted(pod) and name_of(pod) not in disrupted
    )
    allowed = healthy - counts.desired_healthy
    if counts.expected <= 0 or allowed < 0:
        allowed = 0
    generation = meta(budget).get("generation")
    state, reason = ("True", "SufficientPods") if allowed > 0 else ("False", "InsufficientPods")
    old_condition = next(
        (
            c
            for c in status(budget).get("conditions") or []
            if isinstance(c, dict) and c.get("type") == "DisruptionAllowed"
        ),
        None,
    )
    transition = format_time(now)
    if old_condition is not None and old_condition.get("status") == state:
        transition = str(old_condition.get("lastTransitionTime") or transition)
    new: Obj = {
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": counts.desired_healthy,
        "expectedPods": counts.expected,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": state,
                "reason": reason,
                "message": "",
                "observedGeneration": generation,
                "lastTransitionTime": transition,
            }
        ],
    }
    if disrupted:
        new["disruptedPods"] = disrupted
    return new


class DisruptionController(Controller):
    """Queue keys are ``namespace/name`` of PodDisruptionBudgets."""

    name = "disruption"
    workers = 2

    def setup(self) -> None:
        self.budgets = self.informers.informer(PodDisruptionBudget)
        self.budgets.add_event_handler(self.enqueue_handler())
        self.pods = self.informers.informer(Pod)
        self.pods.add_event_handler(
            EventHandler(
                on_add=self._pod_changed,
                on_update=lambda old, new: self._pod_changed(new, old),
                on_delete=self._pod_changed,
            )
        )
        self.replicasets = self.informers.informer(ReplicaSet)
        self.deployments = self.informers.informer(Deployment)
        for informer in (self.replicasets, self.deployments):
            informer.add_event_handler(EventHandler.for_each(self._owner_changed))
        self.events = EventRecorder(self.client, "controllermanager")

    def _pod_changed(self, pod: Obj, old: Obj | None = None) -> None:
        labels = [labels_of(pod)] + ([labels_of(old)] if old is not None else [])
        for budget in self.budgets.list(namespace_of(pod)):
            selector = label_selector(spec(budget).get("selector"))
            if any(selector.matches(found) for found in labels):
                self.enqueue(budget)

    def _owner_changed(self, owner: Obj) -> None:
        for budget in self.budgets.list(namespace_of(owner)):
            self.enqueue(budget)

    async def reconcile(self, key: str) -> Result | None:
        namespace, name = split_key(key)
        found = self.budgets.get(namespace, name)
        if found is None:
            return None
        budget = copy.deepcopy(found)
        now = utcnow()
        selector = label_selector(spec(budget).get("selector"))
        pods = [p for p in self.pods.list(namespace) if selector.matches(labels_of(p))]
        controller_of = {name_of(pod): await self._controller_of(pod) for pod in pods}
        counts = desired_counts(budget, pods, controller_of)
        if counts.unmanaged:
            self.events.warning(
                budget,
                "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget were found to be unmanaged "
                f"({', '.join(counts.unmanaged[:5])}). As a result, the status of the PDB "
                f"cannot be calculated correctly. To account for these pods please set "
                f'".spec.minAvailable" field of the PDB to an integer value.',
            )
        if not pods:
            self.events.normal(budget, "NoPods", "No matching pods found")
        disrupted, expires = live_disruptions(budget, {name_of(p): p for p in pods}, now)
        new = budget_status(budget, pods, counts, disrupted, now)
        if new != status(budget):
            budget["status"] = new
            try:
                await write_status(self.client, budget)
            except ApiException as exc:
                if not exc.not_found:
                    raise
        if expires is not None:
            return Result(requeue_after=max((expires - now).total_seconds(), 0.5))
        return None

    async def _controller_of(self, pod: Obj) -> tuple[str, int] | None:
        """The pod's controller (as a key) and the replicas it wants; None without one."""
        ref = controller_ref(pod)
        if ref is None:
            return None
        namespace = namespace_of(pod)
        kind, ref_name = str(ref.get("kind")), str(ref.get("name"))
        if kind == "ReplicaSet" and str(ref.get("apiVersion", "")).startswith("apps/"):
            replica_set = self.replicasets.get(namespace, ref_name)
            if replica_set is None:
                return None
            owner = controller_ref(replica_set)
            if owner is not None and owner.get("kind") == "Deployment":
                deployment = self.deployments.get(namespace, str(owner.get("name")))
                if deployment is not None:
                    return (
                        f"Deployment/{name_of(deployment)}",
                        int_value(spec(deployment).get("replicas"), 1),
                    )
            return f"ReplicaSet/{ref_name}", int_value(spec(replica_set).get("replicas"), 1)
        info = by_kind(str(ref.get("apiVersion") or ""), kind)
        if info is None or "scale" not in info.subresources:
            return None
        try:
            scale = (
                await self.client.request("GET", info.path(namespace, ref_name, "scale"))
            ).json()
        except ApiException as exc:
            if exc.not_found:
                return None
            raise
        return f"{kind}/{ref_name}", int_value(spec(scale).get("replicas"))
