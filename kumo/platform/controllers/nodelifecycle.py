"""The node lifecycle controller: notices nodes whose agent went quiet, taints them, and
evicts their pods so their owners recreate them elsewhere.

What it promises (Kubernetes' node lifecycle controller and NoExecute taint manager):
- a node's heartbeat is the later of its Lease's ``spec.renewTime`` (Lease named after the
  node in namespace ``kube-node-lease``) and its Ready condition's ``lastHeartbeatTime``
  (its creation time if it has neither). When the heartbeat is older than
  ``grace_period`` (default 40 s) the node's conditions become Unknown (Ready: reason
  NodeStatusUnknown, "Kubelet stopped posting node status."), its pods' Ready condition
  becomes False, and it gets the taints ``node.kubernetes.io/unreachable`` NoExecute and
  NoSchedule;
- a node that reports Ready=False (with a fresh heartbeat) gets ``node.kubernetes.io/
  not-ready`` NoExecute and NoSchedule instead; a cordoned node gets
  ``node.kubernetes.io/unschedulable`` NoSchedule; these taints go away when the reason
  does (a renewed lease lifts ``unreachable``);
- pods on a node with NoExecute taints are deleted: at ``timeAdded + tolerationSeconds`` of
  a matching toleration; never if it tolerates without ``tolerationSeconds``; for the
  not-ready / unreachable taints without a toleration, after ``eviction_timeout`` (default
  300 s: Kubernetes' DefaultTolerationSeconds); immediately for other untolerated NoExecute
  taints;
- an evicted pod on an unreachable node cannot be finished by its agent, so once its grace
  period is over it is removed for good (``force_delete``; the agent reaps its containers
  if it ever comes back).

Timeouts come from the constructor, else ``KUMO_NODE_MONITOR_GRACE_PERIOD`` and
``KUMO_POD_EVICTION_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from kumo.client import ApiException, AsyncClient
from kumo.model.coordination import Lease
from kumo.model.core import Node, Pod
from kumo.model.registry import for_model
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    find_condition,
    format_time,
    is_pod_terminal,
    meta,
    name_of,
    namespace_of,
    parse_time,
    spec,
    status,
    utcnow,
)
from kumo.platform.controllers.informer import EventHandler, InformerFactory, object_key
from kumo.platform.controllers.runner import Result, write_status
from kumo.platform.controllers.workload import WorkloadController
from kumo.platform.controllers.workqueue import ExponentialBackoff

log = logging.getLogger(__name__)

NODE_LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MANAGED_TAINTS = {
    (UNREACHABLE, "NoExecute"),
    (UNREACHABLE, "NoSchedule"),
    (NOT_READY, "NoExecute"),
    (NOT_READY, "NoSchedule"),
    (UNSCHEDULABLE, "NoSchedule"),
}
# Node conditions the agent reports; all turn Unknown when it stops reporting.
AGENT_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
NODE_INDEX = "node-name"
POD_INFO = for_model(Pod)


@dataclass(frozen=True, slots=True)
class Settings:
    grace_period: float = 40.0
    eviction_timeout: float = 300.0
    force_delete: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            grace_period=float(os.environ.get("KUMO_NODE_MONITOR_GRACE_PERIOD") or 40.0),
            eviction_timeout=float(os.environ.get("KUMO_POD_EVICTION_TIMEOUT") or 300.0),
        )


# ---- pure rules ------------------------------------------------------------------------------


def heartbeat(node: Obj, lease: Obj | None) -> datetime.datetime | None:
    """The node's last sign of life: lease renewal, Ready heartbeat, or its creation."""
    times = []
    if lease is not None:
        times.append(parse_time(spec(lease).get("renewTime")))
    ready = find_condition(status(node).get("conditions"), "Ready")
    if ready is not None:
        times.append(parse_time(ready.get("lastHeartbeatTime")))
    found = [t for t in times if t is not None]
    if found:
        return max(found)
    return parse_time(meta(node).get("creationTimestamp"))


def is_stale(beat: datetime.datetime | None, now: datetime.datetime, grace: float) -> bool:
    return beat is None or (now - beat).total_seconds() > grace


def unknown_conditions(node: Obj, now: datetime.datetime) -> list[Obj] | None:
    """The node's conditions once its agent is presumed gone; None if already so."""
    stamp = format_time(now)
    conditions = [dict(c) for c in status(node).get("conditions") or [] if isinstance(c, dict)]
    changed = False
    if find_condition(conditions, "Ready") is None:
        conditions.append(
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": format_time(
                    parse_time(meta(node).get("creationTimestamp")) or now
                ),
                "lastTransitionTime": stamp,
            }
        )
        changed = True
    for condition in conditions:
        if condition.get("type") not in AGENT_CONDITIONS or condition.get("status") == "Unknown":
            continue
        condition["status"] = "Unknown"
        condition["reason"] = "NodeStatusUnknown"
        condition["message"] = "Kubelet stopped posting node status."
        condition["lastTransitionTime"] = stamp
        changed = True
    return conditions if changed else None


def wanted_taints(node: Obj, unreachable: bool, now: datetime.datetime) -> list[Obj]:
    """The node's taints with the managed ones set for its state (times of taints that stay
    are kept)."""
    existing = [dict(t) for t in spec(node).get("taints") or [] if isinstance(t, dict)]
    ready = find_condition(status(node).get("conditions"), "Ready")
    wanted: set[tuple[str, str]] = set()
    if unreachable:
        wanted |= {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
    elif ready is not None and ready.get("status") == "False":
        wanted |= {(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")}
    if spec(node).get("unschedulable"):
        wanted.add((UNSCHEDULABLE, "NoSchedule"))
    out = []
    have: set[tuple[str, str]] = set()
    for taint in existing:
        ident = (str(taint.get("key")), str(taint.get("effect")))
        if ident in MANAGED_TAINTS and ident not in wanted:
            continue
        have.add(ident)
        out.append(taint)
    for key, effect in sorted(wanted - have):
        added: Obj = {"key": key, "effect": effect}
        if effect == "NoExecute":
            added["timeAdded"] = format_time(now)
        out.append(added)
    return out


def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Kubernetes' Toleration.ToleratesTaint."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def eviction_time(
    pod: Obj, taints: Iterable[Obj], default_seconds: float, now: datetime.datetime
) -> datetime.datetime | None:
    """When the NoExecute ``taints`` evict ``pod`` (None: never)."""
    tolerations = [t for t in spec(pod).get("tolerations") or [] if isinstance(t, dict)]
    earliest: datetime.datetime | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        added = parse_time(taint.get("timeAdded")) or now
        matching = [t for t in tolerations if tolerates(t, taint)]
        if matching:
            limits = [t.get("tolerationSeconds") for t in matching]
            if any(limit is None for limit in limits):
                continue  # tolerated for ever
            seconds = float(min(max(int(limit), 0) for limit in limits if limit is not None))
        elif taint.get("key") in (UNREACHABLE, NOT_READY):
            seconds = default_seconds
        else:
            seconds = 0.0
        when = added + datetime.timedelta(seconds=seconds)
        if earliest is None or when < earliest:
            earliest = when
    return earliest


def not_ready_status(pod: Obj, now: datetime.datetime) -> Obj | None:
    """The pod's status with Ready=False; None if it is not Ready=True now."""
    conditions = [dict(c) for c in status(pod).get("conditions") or [] if isinstance(c, dict)]
    ready = find_condition(conditions, "Ready")
    if ready is None or ready.get("status") != "True":
        return None
    ready["status"] = "False"
    ready["lastTransitionTime"] = format_time(now)
    ready["reason"] = "NodeNotReady"
    ready["message"] = "the node's agent stopped reporting"
    return {**status(pod), "conditions": conditions}


def by_node_name(obj: Obj) -> list[str]:
    node = spec(obj).get("nodeName")
    return [str(node)] if node else []


# ---- the controller --------------------------------------------------------------------------


class NodeLifecycleController(WorkloadController):
    """Queue keys are node names."""

    name = "nodelifecycle"
    workers = 2

    def __init__(
        self,
        client: AsyncClient,
        informers: InformerFactory,
        *,
        grace_period: float | None = None,
        eviction_timeout: float | None = None,
        force_delete: bool | None = None,
        workers: int | None = None,
        backoff: ExponentialBackoff[str] | None = None,
    ) -> None:
        defaults = Settings.from_env()
        self.settings = Settings(
            grace_period=defaults.grace_period if grace_period is None else grace_period,
            eviction_timeout=(
                defaults.eviction_timeout if eviction_timeout is None else eviction_timeout
            ),
            force_delete=defaults.force_delete if force_delete is None else force_delete,
        )
        super().__init__(client, informers, workers=workers, backoff=backoff)

    def setup(self) -> None:
        self.nodes = self.informers.informer(Node)
        self.leases = self.informers.informer(Lease)
        self.pods = self.informers.informer(Pod)
        self.pods.add_index(NODE_INDEX, by_node_name)
        self.nodes.add_event_handler(self.enqueue_handler())
        self.leases.add_event_handler(
            EventHandler(
                on_add=self._lease_changed,
                on_update=lambda old, new: self._lease_changed(new),
                on_delete=self._lease_changed,
            )
        )
        self.pods.add_event_handler(
            EventHandler(
                on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new)
            )
        )

    def _lease_changed(self, lease: Obj) -> None:
        if namespace_of(lease) == NODE_LEASE_NAMESPACE:
            self.queue.add(name_of(lease))

    def _pod_changed(self, pod: Obj) -> None:
        node_name = spec(pod).get("nodeName")
        if not node_name:
            return
        node = self.nodes.get(None, str(node_name))
        if node is None:
            return
        if any(t.get("effect") == "NoExecute" for t in spec(node).get("taints") or []):
            self.queue.add(str(node_name))

    async def reconcile(self, key: str) -> Result | None:
        await self.expectations.wait(key)
        node = self.nodes.get(None, key)
        if node is None:
            self.expectations.forget(key)
            return None
        now = utcnow()
        lease = self.leases.get(NODE_LEASE_NAMESPACE, key)
        beat = heartbeat(node, lease)
        stale = is_stale(beat, now, self.settings.grace_period)
        wake: list[datetime.datetime] = []
        if stale:
            node = await self._mark_unknown(key, node, now)
        elif beat is not None:
            wake.append(beat + datetime.timedelta(seconds=self.settings.grace_period))
        node = await self._set_taints(key, node, stale, now)
        ready = find_condition(status(node).get("conditions"), "Ready")
        if stale or (ready is not None and ready.get("status") == "False"):
            await self._mark_pods_not_ready(key, node, now)
        wake.extend(await self._evict(key, node, stale, now))
        if not wake:
            return None
        after = (min(wake) - utcnow()).total_seconds()
        return Result(requeue_after=max(after, 0.0) + 0.05)

    async def _mark_unknown(self, key: str, node: Obj, now: datetime.datetime) -> Obj:
        conditions = unknown_conditions(node, now)
        if conditions is None:
            return node
        body = {**node, "status": {**status(node), "conditions": conditions}}
        written = await write_status(self.client, body)
        self.wrote(key, self.nodes, written)
        log.info("node %s: agent stopped reporting; Ready is Unknown", key)
        self.recorder.normal(written, "NodeNotReady", f"Node {key} status is now: NodeNotReady")
        return written

    async def _set_taints(
        self, key: str, node: Obj, unreachable: bool, now: datetime.datetime
    ) -> Obj:
        taints = wanted_taints(node, unreachable, now)
        if taints == [dict(t) for t in spec(node).get("taints") or []]:
            return node
        patch = {
            "metadata": {"resourceVersion": meta(node).get("resourceVersion")},
            "spec": {"taints": taints or None},
        }
        written = await self.client.patch_raw(self.nodes.info, key, patch)
        self.wrote(key, self.nodes, written)
        return written

    async def _mark_pods_not_ready(self, key: str, node: Obj, now: datetime.datetime) -> None:
        for pod in self.pods.by_index(NODE_INDEX, key):
            if is_pod_terminal(pod):
                continue
            new_status = not_ready_status(pod, now)
            if new_status is None:
                continue
            try:
                written = await write_status(self.client, {**pod, "status": new_status})
            except ApiException as exc:
                if exc.not_found:
                    continue
                raise
            self.wrote(key, self.pods, written)

    async def _evict(
        self, key: str, node: Obj, unreachable: bool, now: datetime.datetime
    ) -> list[datetime.datetime]:
        """Delete pods whose NoExecute time has come; the times still ahead."""
        taints = [t for t in spec(node).get("taints") or [] if t.get("effect") == "NoExecute"]
        ahead: list[datetime.datetime] = []
        for pod in self.pods.by_index(NODE_INDEX, key):
            if is_pod_terminal(pod):
                continue
            if being_deleted(pod):
                if unreachable and self.settings.force_delete:
                    due = parse_time(meta(pod).get("deletionTimestamp")) or now
                    if due <= now:
                        await self._delete(key, pod, grace=0)
                    else:
                        ahead.append(due)
                continue
            if not taints:
                continue
            when = eviction_time(pod, taints, self.settings.eviction_timeout, now)
            if when is None:
                continue
            if when > now:
                ahead.append(when)
                continue
            log.info("node %s: evicting pod %s/%s", key, namespace_of(pod), name_of(pod))
            self.recorder.normal(
                pod,
                "TaintManagerEviction",
                f"Marking for deletion Pod {namespace_of(pod)}/{name_of(pod)}",
            )
            deleted = await self._delete(key, pod, grace=None)
            if deleted is not None and unreachable and self.settings.force_delete:
                finish_by = parse_time(meta(deleted).get("deletionTimestamp"))
                if being_deleted(deleted) and finish_by is not None:
                    ahead.append(finish_by)
        return ahead

    async def _delete(self, key: str, pod: Obj, grace: int | None) -> Obj | None:
        try:
            deleted = await self.client.delete_raw(
                POD_INFO, name_of(pod), namespace_of(pod), grace_period=grace
            )
        except ApiException as exc:
            if exc.not_found:
                return None
            raise
        self.wrote(key, self.pods, deleted)
        return deleted

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))
