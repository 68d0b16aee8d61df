"""The ReplicaSet controller: keeps ``spec.replicas`` active pods for each ReplicaSet.

What it promises (Kubernetes' replicaset controller):
- pods are created from ``spec.template`` with ``generateName: <rs>-``, the template's
  labels and annotations, and a controller ownerReference (``blockOwnerDeletion: true``);
  many at once are created in slow-start batches (1, 2, 4, ...) that stop at the first
  failure;
- active pods (not finished, not being deleted) that match the selector and have no
  controller are adopted; owned pods that stop matching are released;
- scaling down deletes the most expendable pods first (``rank_pods_for_deletion``:
  unscheduled, pending, not ready, low deletion cost, doubled up on a node, ready most
  recently, most restarts, newest);
- status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas honoring
  ``minReadySeconds``, observedGeneration, a ReplicaFailure condition when creates or
  deletes fail) goes through the status subresource;
- failures become Warning events (FailedCreate / FailedDelete) and the key is retried with
  backoff; a reconcile never acts on a cache that misses its own previous writes.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from kumo.client import ApiException
from kumo.model.apps import ReplicaSet
from kumo.model.core import Pod
from kumo.model.registry import for_model
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    controller_ref,
    find_condition,
    int_value,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    namespace_of,
    new_condition,
    owner_reference,
    pod_from_template,
    pods_to_delete,
    remove_condition,
    slow_start_batches,
    spec,
    status,
    utcnow,
)
from kumo.platform.controllers.informer import EventHandler, object_key, split_key
from kumo.platform.controllers.runner import Result, write_status
from kumo.platform.controllers.workload import (
    CONTROLLER_UID_INDEX,
    WorkloadController,
    by_controller_uid,
    claim,
    recheck_owner,
    selector_of,
)

log = logging.getLogger(__name__)

POD_INFO = for_model(Pod)


def replica_set_status(
    rs: Obj, pods: list[Obj], now: datetime.datetime, failure: str | None = None
) -> Obj:
    """The status ``rs`` should report for its active pods ``pods`` (pure)."""
    rs_spec = spec(rs)
    template_labels = (rs_spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    min_ready = int_value(rs_spec.get("minReadySeconds"))
    fully_labeled = sum(
        1 for pod in pods if all(labels_of(pod).get(k) == v for k, v in template_labels.items())
    )
    current = status(rs)
    new: Obj = {
        "replicas": len(pods),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": sum(1 for pod in pods if is_pod_ready(pod)),
        "availableReplicas": sum(1 for pod in pods if is_pod_available(pod, min_ready, now)),
        "observedGeneration": int_value(meta(rs).get("generation"), 1),
    }
    conditions = [dict(c) for c in current.get("conditions") or [] if isinstance(c, dict)]
    existing = find_condition(conditions, "ReplicaFailure")
    if failure is not None and existing is None:
        diff = len(pods) - int_value(rs_spec.get("replicas"), 1)
        reason = "FailedCreate" if diff < 0 else "FailedDelete"
        conditions.append(
            new_condition("ReplicaFailure", "True", reason, failure, now, update=False)
        )
    elif failure is None and existing is not None:
        conditions = remove_condition(conditions, "ReplicaFailure")
    if conditions:
        new["conditions"] = conditions
    return new


class ReplicaSetController(WorkloadController):
    """Queue keys are ``namespace/name`` of ReplicaSets."""

    name = "replicaset"
    workers = 4
    # At most this many pods are created or deleted in one reconcile (Kubernetes' burst).
    burst_replicas = 500

    def setup(self) -> None:
        self.sets = self.informers.informer(ReplicaSet)
        self.pods = self.informers.informer(Pod)
        self.pods.add_index(CONTROLLER_UID_INDEX, by_controller_uid)
        self.sets.add_index(CONTROLLER_UID_INDEX, by_controller_uid)
        self.sets.add_event_handler(
            EventHandler(
                on_add=self.enqueue,
                on_update=lambda old, new: self.enqueue(new),
                on_delete=self._set_deleted,
            )
        )
        self.pods.add_event_handler(
            EventHandler(
                on_add=self._pod_changed,
                on_update=self._pod_updated,
                on_delete=self._pod_changed,
            )
        )

    # ---- events ----------------------------------------------------------------------------

    def _set_deleted(self, rs: Obj) -> None:
        self.expectations.forget(object_key(rs))

    def _owners_of(self, pod: Obj) -> list[Obj]:
        """The ReplicaSet controlling ``pod``, or for an orphan every one that matches it."""
        namespace = namespace_of(pod)
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != "ReplicaSet":
                return []
            rs = self.sets.get(namespace, str(ref.get("name")))
            if rs is None or meta(rs).get("uid") != ref.get("uid"):
                return []
            return [rs]
        labels = labels_of(pod)
        return [rs for rs in self.sets.list(namespace) if selector_of(rs).matches(labels)]

    def _pod_changed(self, pod: Obj) -> None:
        for rs in self._owners_of(pod):
            self.enqueue(rs)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if labels_of(old) != labels_of(new) or controller_ref(old) != controller_ref(new):
            self._pod_changed(old)
        for rs in self._owners_of(new):
            self.enqueue(rs)
            min_ready = int_value(spec(rs).get("minReadySeconds"))
            if min_ready > 0 and is_pod_ready(new) and not is_pod_ready(old):
                # It becomes available minReadySeconds from now: look again then.
                self.queue.add_after(object_key(rs), min_ready + 1.0)

    # ---- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        await self.expectations.wait(key)
        namespace, name = split_key(key)
        rs = self.sets.get(namespace, name)
        if rs is None:
            self.expectations.forget(key)
            return None
        candidates = [pod for pod in self.pods.list(namespace) if is_pod_active(pod)]
        owned = await claim(
            self.client,
            rs,
            selector_of(rs),
            candidates,
            can_adopt=lambda: recheck_owner(self.client, rs),
            on_write=lambda written: self.wrote(key, self.pods, written),
        )
        failure: Exception | None = None
        if not being_deleted(rs):
            try:
                await self._manage_replicas(key, rs, owned)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = exc
        now = utcnow()
        new_status = replica_set_status(
            rs, owned, now, None if failure is None else _message(failure)
        )
        await self._write_status(key, rs, new_status)
        if failure is not None:
            raise failure
        min_ready = int_value(spec(rs).get("minReadySeconds"))
        want = int_value(spec(rs).get("replicas"), 1)
        if (
            min_ready > 0
            and new_status["readyReplicas"] == want
            and new_status["availableReplicas"] != want
        ):
            return Result(requeue_after=float(min_ready))
        return None

    async def _write_status(self, key: str, rs: Obj, new_status: Obj) -> None:
        if status(rs) == new_status:
            return
        try:
            written = await write_status(self.client, {**rs, "status": new_status})
        except ApiException as exc:
            if exc.not_found:
                return
            raise
        self.wrote(key, self.sets, written)

    async def _manage_replicas(self, key: str, rs: Obj, owned: list[Obj]) -> None:
        want = int_value(spec(rs).get("replicas"), 1)
        diff = len(owned) - want
        if diff < 0:
            await self._create_pods(key, rs, min(-diff, self.burst_replicas))
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            victims = pods_to_delete(owned, count, self._related_pods(rs))
            await self._delete_pods(key, rs, victims)

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of every ReplicaSet with the same controller as ``rs`` (or of ``rs`` alone)."""
        owner = controller_ref(rs)
        sets = [rs]
        if owner is not None:
            sets = self.sets.by_index(CONTROLLER_UID_INDEX, str(owner.get("uid")))
        pods: list[Obj] = []
        for each in sets:
            pods.extend(self.pods.by_index(CONTROLLER_UID_INDEX, str(meta(each).get("uid"))))
        return pods

    async def _create_pods(self, key: str, rs: Obj, count: int) -> None:
        template = spec(rs).get("template") or {}
        ref = owner_reference(rs, "apps/v1", "ReplicaSet")
        body = pod_from_template(template, rs, ref)
        namespace = namespace_of(rs)
        for batch in slow_start_batches(count):
            results = await asyncio.gather(
                *(self.client.create_raw(body, namespace) for _ in range(batch)),
                return_exceptions=True,
            )
            failures: list[BaseException] = []
            for result in results:
                if isinstance(result, BaseException):
                    failures.append(result)
                    continue
                self.wrote(key, self.pods, result)
                self.recorder.normal(rs, "SuccessfulCreate", f"Created pod: {name_of(result)}")
            if failures:
                for failure in failures:
                    if _namespace_terminating(failure):
                        return  # pods cannot be made there any more; nothing to retry
                    self.recorder.warning(
                        rs, "FailedCreate", f"Error creating: {_message(failure)}"
                    )
                first = failures[0]
                raise first if isinstance(first, Exception) else RuntimeError(str(first))

    async def _delete_pods(self, key: str, rs: Obj, victims: list[Obj]) -> None:
        async def delete(pod: Obj) -> Obj | None:
            try:
                return await self.client.delete_raw(POD_INFO, name_of(pod), namespace_of(pod))
            except ApiException as exc:
                if exc.not_found:
                    return None
                raise

        results = await asyncio.gather(*(delete(pod) for pod in victims), return_exceptions=True)
        failures: list[BaseException] = []
        for pod, result in zip(victims, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
                self.recorder.warning(rs, "FailedDelete", f"Error deleting: {_message(result)}")
                continue
            if result is not None:
                self.wrote(key, self.pods, result)
            self.recorder.normal(rs, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
        if failures:
            first = failures[0]
            raise first if isinstance(first, Exception) else RuntimeError(str(first))


def _message(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return error.message
    return str(error) or type(error).__name__


def _namespace_terminating(error: BaseException) -> bool:
    return (
        isinstance(error, ApiException)
        and error.code == 403
        and "being terminated" in error.message
    )
