"""The Deployment controller: one ReplicaSet per pod template (revision), rolled over by the
Deployment's strategy.

What it promises (Kubernetes' deployment controller; the arithmetic is in
``deployment_util``):
- each distinct template gets a ReplicaSet ``<deployment>-<pod-template-hash>`` whose
  selector, template and pods carry the ``pod-template-hash`` label, and whose annotation
  ``deployment.kubernetes.io/revision`` is its revision; the Deployment carries the revision
  of its current template; a template seen before (a rollback) reuses its ReplicaSet under a
  new revision number;
- RollingUpdate: the new ReplicaSet grows while the total stays within replicas + maxSurge;
  old ones shrink while the available pods (Ready for minReadySeconds, as the ReplicaSets
  report them) stay at or above replicas - maxUnavailable;
- Recreate: old ReplicaSets go to 0 and every old pod must be gone before the new
  ReplicaSet is scaled up;
- paused: no new ReplicaSet and no rollout; resizing the Deployment still resizes its
  ReplicaSets (proportionally during a rollout);
- the Progressing condition (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
  NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused, DeploymentResumed)
  and the Available condition; status counts summed from the ReplicaSets; observedGeneration
  and collisionCount;
- old, empty ReplicaSets beyond revisionHistoryLimit are deleted once a rollout completes.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from kumo.client import ApiException
from kumo.model.apps import Deployment, ReplicaSet
from kumo.model.core import Pod
from kumo.model.registry import for_model
from kumo.platform.controllers import deployment_util as util
from kumo.platform.controllers.controller_utils import (
    Obj,
    annotations_of,
    being_deleted,
    controller_ref,
    find_condition,
    int_value,
    labels_of,
    meta,
    name_of,
    namespace_of,
    new_condition,
    owner_reference,
    pod_phase,
    set_condition,
    spec,
    status,
    uid_of,
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

RS_INFO = for_model(ReplicaSet)


@dataclass(slots=True)
class Rollout:
    """One reconcile's view: the Deployment (a copy whose status conditions may change in
    memory before the one status write), the status as stored, and its ReplicaSets as
    written so far."""

    key: str
    deployment: Obj
    stored_status: Obj
    sets: list[Obj]
    new_uid: str | None = None

    def new(self) -> Obj | None:
        if self.new_uid is None:
            return None
        for rs in self.sets:
            if uid_of(rs) == self.new_uid:
                return rs
        return None

    def olds(self) -> list[Obj]:
        return [rs for rs in self.sets if uid_of(rs) != self.new_uid]

    def all(self) -> list[Obj | None]:
        return [*self.olds(), self.new()]

    def replace(self, rs: Obj) -> None:
        self.sets = [rs if uid_of(each) == uid_of(rs) else each for each in self.sets]
        if all(uid_of(each) != uid_of(rs) for each in self.sets):
            self.sets.append(rs)

    def conditions(self) -> list[Obj]:
        return [dict(c) for c in status(self.deployment).get("conditions") or []]

    def set_condition(self, condition: Obj) -> None:
        self.deployment.setdefault("status", {})["conditions"] = set_condition(
            self.conditions(), condition
        )


class DeploymentController(WorkloadController):
    """Queue keys are ``namespace/name`` of Deployments."""

    name = "deployment"
    workers = 4

    def setup(self) -> None:
        self.deployments = self.informers.informer(Deployment)
        self.sets = self.informers.informer(ReplicaSet)
        self.pods = self.informers.informer(Pod)
        self.sets.add_index(CONTROLLER_UID_INDEX, by_controller_uid)
        self.pods.add_index(CONTROLLER_UID_INDEX, by_controller_uid)
        self.deployments.add_event_handler(
            EventHandler(
                on_add=self.enqueue,
                on_update=lambda old, new: self.enqueue(new),
                on_delete=lambda d: self.expectations.forget(object_key(d)),
            )
        )
        self.sets.add_event_handler(
            EventHandler(
                on_add=self._set_changed,
                on_update=self._set_updated,
                on_delete=self._set_changed,
            )
        )
        self.pods.add_event_handler(EventHandler(on_delete=self._pod_deleted))

    # ---- events ----------------------------------------------------------------------------

    def _owner_of(self, obj: Obj) -> Obj | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        found = self.deployments.get(namespace_of(obj), str(ref.get("name")))
        if found is None or uid_of(found) != ref.get("uid"):
            return None
        return found

    def _set_changed(self, rs: Obj) -> None:
        owner = self._owner_of(rs)
        if owner is not None:
            self.enqueue(owner)
            return
        if controller_ref(rs) is None:
            labels = labels_of(rs)
            for deployment in self.deployments.list(namespace_of(rs)):
                if selector_of(deployment).matches(labels):
                    self.enqueue(deployment)

    def _set_updated(self, old: Obj, new: Obj) -> None:
        if labels_of(old) != labels_of(new) or controller_ref(old) != controller_ref(new):
            self._set_changed(old)
        self._set_changed(new)

    def _pod_deleted(self, pod: Obj) -> None:
        # Recreate waits for the last old pod to go.
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.sets.get(namespace_of(pod), str(ref.get("name")))
        if rs is not None:
            owner = self._owner_of(rs)
            if owner is not None:
                self.enqueue(owner)

    # ---- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        await self.expectations.wait(key)
        namespace, name = split_key(key)
        cached = self.deployments.get(namespace, name)
        if cached is None:
            self.expectations.forget(key)
            return None
        deployment = copy.deepcopy(cached)
        selector = selector_of(deployment)
        if selector.empty:
            self.recorder.warning(
                deployment,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            return None
        owned = await claim(
            self.client,
            deployment,
            selector,
            self.sets.list(namespace),
            can_adopt=lambda: recheck_owner(self.client, deployment),
            on_write=lambda written: self.wrote(key, self.sets, written),
        )
        rollout = Rollout(key, deployment, copy.deepcopy(status(deployment)), owned)
        if being_deleted(deployment):
            await self._sets_and_sync_revision(rollout, create=False)
            return await self._sync_status(rollout)
        await self._check_paused_conditions(rollout)
        if spec(deployment).get("paused"):
            return await self._sync(rollout)
        if self._is_scaling_event(rollout):
            return await self._sync(rollout)
        if not util.is_rolling_update(deployment):
            return await self._rollout_recreate(rollout)
        return await self._rollout_rolling(rollout)

    # ---- strategies ------------------------------------------------------------------------

    async def _rollout_rolling(self, rollout: Rollout) -> Result | None:
        await self._sets_and_sync_revision(rollout, create=True)
        if await self._reconcile_new_set(rollout):
            return await self._sync_rollout_status(rollout)
        if await self._reconcile_old_sets(rollout):
            return await self._sync_rollout_status(rollout)
        if util.deployment_complete(rollout.deployment, rollout.stored_status):
            await self._clean_up(rollout)
        return await self._sync_rollout_status(rollout)

    async def _reconcile_new_set(self, rollout: Rollout) -> bool:
        new_rs = rollout.new()
        assert new_rs is not None
        desired = util.replicas(rollout.deployment)
        current = util.replicas(new_rs)
        if current == desired:
            return False
        if current > desired:
            return await self._scale(rollout, new_rs, desired)
        size = util.new_rs_new_replicas(rollout.deployment, rollout.all(), new_rs)
        return await self._scale(rollout, new_rs, size)

    async def _reconcile_old_sets(self, rollout: Rollout) -> bool:
        deployment = rollout.deployment
        olds = util.active_sets(rollout.olds())
        if util.spec_replicas_sum(olds) == 0:
            return False
        budget = util.max_scaled_down(deployment, rollout.all(), rollout.new())
        if budget <= 0:
            return False
        steps, cleaned = util.old_sets_cleanup_unhealthy(olds, budget)
        for step in steps:
            await self._scale(rollout, step.rs, step.replicas)
        olds = util.active_sets(rollout.olds())
        scaled_down = 0
        for step in util.old_sets_scale_down(deployment, rollout.all(), olds):
            before = util.replicas(step.rs)
            if await self._scale(rollout, step.rs, step.replicas):
                scaled_down += before - step.replicas
        return cleaned + scaled_down > 0

    async def _rollout_recreate(self, rollout: Rollout) -> Result | None:
        await self._sets_and_sync_revision(rollout, create=False)
        scaled_down = False
        for rs in util.active_sets(rollout.olds()):
            if await self._scale(rollout, rs, 0):
                scaled_down = True
        if scaled_down or self._old_pods_running(rollout):
            return await self._sync_rollout_status(rollout)
        if rollout.new() is None:
            await self._sets_and_sync_revision(rollout, create=True)
        new_rs = rollout.new()
        assert new_rs is not None
        await self._scale(rollout, new_rs, util.replicas(rollout.deployment))
        if util.deployment_complete(rollout.deployment, rollout.stored_status):
            await self._clean_up(rollout)
        return await self._sync_rollout_status(rollout)

    def _old_pods_running(self, rollout: Rollout) -> bool:
        olds = rollout.olds()
        if util.status_sum(olds, "replicas") > 0:
            return True
        for rs in olds:
            for pod in self.pods.by_index(CONTROLLER_UID_INDEX, uid_of(rs)):
                if pod_phase(pod) not in ("Succeeded", "Failed"):
                    return True
        return False

    async def _sync(self, rollout: Rollout) -> Result | None:
        """Resize without rolling out (paused, or the Deployment's replicas changed)."""
        await self._sets_and_sync_revision(rollout, create=False)
        await self._scale_to_deployment(rollout)
        if spec(rollout.deployment).get("paused"):
            await self._clean_up(rollout)
        return await self._sync_status(rollout)

    def _is_scaling_event(self, rollout: Rollout) -> bool:
        desired = util.replicas(rollout.deployment)
        for rs in util.active_sets(rollout.sets):
            annotated = util.desired_replicas_annotation(rs)
            if annotated is not None and annotated != desired:
                return True
        return False

    async def _scale_to_deployment(self, rollout: Rollout) -> None:
        deployment = rollout.deployment
        desired = util.replicas(deployment)
        target = util.find_active_or_latest(rollout.new(), rollout.olds())
        if target is not None:
            if util.replicas(target) != desired:
                await self._scale(rollout, target, desired)
            return
        if util.is_saturated(deployment, rollout.new()):
            for rs in util.active_sets(rollout.olds()):
                await self._scale(rollout, rs, 0)
            return
        if util.is_rolling_update(deployment):
            for step in util.proportional_sizes(deployment, rollout.new(), rollout.olds()):
                await self._scale(rollout, step.rs, step.replicas)

    # ---- ReplicaSets -----------------------------------------------------------------------

    async def _sets_and_sync_revision(self, rollout: Rollout, *, create: bool) -> None:
        """Find (or with ``create`` make) the new ReplicaSet and bring revisions up to date
        (Kubernetes' getAllReplicaSetsAndSyncRevision)."""
        deployment = rollout.deployment
        found = util.find_new_replica_set(deployment, rollout.sets)
        olds = [rs for rs in rollout.sets if found is None or uid_of(rs) != uid_of(found)]
        new_revision = util.max_revision(olds) + 1
        if found is not None:
            rollout.new_uid = uid_of(found)
            notes, changed = util.new_replica_set_annotations(
                deployment, found, new_revision, exists=True
            )
            min_ready = int_value(spec(deployment).get("minReadySeconds"))
            if changed or int_value(spec(found).get("minReadySeconds")) != min_ready:
                body = copy.deepcopy(found)
                body["metadata"]["annotations"] = notes
                body["spec"]["minReadySeconds"] = min_ready
                updated = await self.client.replace_raw(body)
                self.wrote(rollout.key, self.sets, updated)
                rollout.replace(updated)
                found = updated
            await self._set_deployment_revision(rollout, annotations_of(found).get(util.REVISION))
            if (
                util.has_progress_deadline(deployment)
                and find_condition(rollout.conditions(), "Progressing") is None
            ):
                rollout.set_condition(
                    new_condition(
                        "Progressing",
                        "True",
                        util.FOUND_NEW_RS,
                        f'Found new replica set "{name_of(found)}"',
                        utcnow(),
                        update=True,
                    )
                )
            return
        if not create:
            return
        await self._create_new_set(rollout, olds, new_revision)

    async def _create_new_set(self, rollout: Rollout, olds: list[Obj], new_revision: int) -> None:
        deployment = rollout.deployment
        collisions = status(deployment).get("collisionCount")
        template = spec(deployment).get("template") or {}
        hash_value = util.template_hash(template, collisions)
        labelled = util.template_with_hash(template, hash_value)
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name_of(deployment)}-{hash_value}",
                "namespace": namespace_of(deployment),
                "labels": dict((labelled.get("metadata") or {}).get("labels") or {}),
                "ownerReferences": [owner_reference(deployment, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int_value(spec(deployment).get("minReadySeconds")),
                "selector": util.selector_with_hash(spec(deployment).get("selector"), hash_value),
                "template": labelled,
            },
        }
        size = util.new_rs_new_replicas(deployment, [*olds, body], body)
        body["spec"]["replicas"] = size
        notes, _ = util.new_replica_set_annotations(deployment, body, new_revision, exists=False)
        body["metadata"]["annotations"] = notes
        already_existed = False
        try:
            created = await self.client.create_raw(body, namespace_of(deployment))
        except ApiException as exc:
            if not exc.already_exists:
                if util.has_progress_deadline(deployment):
                    rollout.set_condition(
                        new_condition(
                            "Progressing",
                            "False",
                            util.FAILED_RS_CREATE,
                            f"Failed to create new replica set {name_of(body)!r}: {exc.message}",
                            utcnow(),
                            update=True,
                        )
                    )
                    await self._write_status(rollout, self._current_status(rollout))
                self.recorder.warning(
                    deployment,
                    "FailedCreate",
                    f"Failed to create new replica set {name_of(body)!r}: {exc.message}",
                )
                raise
            created = await self.client.get_raw(RS_INFO, name_of(body), namespace_of(deployment))
            ref = controller_ref(created)
            ours = ref is not None and ref.get("uid") == uid_of(deployment)
            if not (ours and util.equal_ignore_hash(spec(created).get("template"), template)):
                # Another object holds the name this template hashes to: hash differently.
                current = dict(rollout.stored_status)
                current["collisionCount"] = int_value(collisions) + 1
                await self._write_status(rollout, current)
                raise RuntimeError(
                    f"hash collision for {name_of(body)}; collisionCount is now "
                    f"{current['collisionCount']}"
                ) from exc
            already_existed = True
        self.wrote(rollout.key, self.sets, created)
        rollout.replace(created)
        rollout.new_uid = uid_of(created)
        if not already_existed and size > 0:
            self.recorder.normal(
                deployment,
                "ScalingReplicaSet",
                f"Scaled up replica set {name_of(created)} from 0 to {size}",
            )
        await self._set_deployment_revision(rollout, str(new_revision))
        if not already_existed and util.has_progress_deadline(deployment):
            rollout.set_condition(
                new_condition(
                    "Progressing",
                    "True",
                    util.NEW_RS_CREATED,
                    f'Created new replica set "{name_of(created)}"',
                    utcnow(),
                    update=True,
                )
            )

    async def _set_deployment_revision(self, rollout: Rollout, revision: str | None) -> None:
        if not revision or annotations_of(rollout.deployment).get(util.REVISION) == revision:
            return
        info = for_model(Deployment)
        patched = await self.client.patch_raw(
            info,
            name_of(rollout.deployment),
            {"metadata": {"annotations": {util.REVISION: revision}}},
            namespace_of(rollout.deployment),
        )
        self.wrote(rollout.key, self.deployments, patched)
        kept_status = rollout.deployment.get("status")
        rollout.deployment = {**patched, "status": kept_status}

    async def _scale(self, rollout: Rollout, rs: Obj, size: int) -> bool:
        """Set ``rs`` to ``size`` replicas (and the replica annotations); True if the size
        changed."""
        deployment = rollout.deployment
        before = util.replicas(rs)
        if before == size and not util.replicas_annotations_need_update(rs, deployment):
            return False
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = size
        notes = dict(annotations_of(rs))
        notes.update(util.replicas_annotations(deployment))
        body["metadata"]["annotations"] = notes
        updated = await self.client.replace_raw(body)
        self.wrote(rollout.key, self.sets, updated)
        rollout.replace(updated)
        if before != size:
            direction = "up" if size > before else "down"
            self.recorder.normal(
                deployment,
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {name_of(rs)} from {before} to {size}",
            )
            return True
        return False

    async def _clean_up(self, rollout: Rollout) -> None:
        limit = spec(rollout.deployment).get("revisionHistoryLimit")
        doomed = util.sets_to_clean_up(rollout.olds(), None if limit is None else int(limit))
        for rs in doomed:
            try:
                deleted = await self.client.delete_raw(RS_INFO, name_of(rs), namespace_of(rs))
            except ApiException as exc:
                if exc.not_found:
                    continue
                raise
            self.wrote(rollout.key, self.sets, deleted)
            log.info("deployment %s: deleted old replica set %s", rollout.key, name_of(rs))

    # ---- status ----------------------------------------------------------------------------

    async def _check_paused_conditions(self, rollout: Rollout) -> None:
        deployment = rollout.deployment
        if not util.has_progress_deadline(deployment):
            return
        condition = find_condition(rollout.conditions(), "Progressing")
        if condition is not None and condition.get("reason") == util.TIMED_OUT:
            return  # a missed deadline is not papered over by pausing
        paused = bool(spec(deployment).get("paused"))
        showing_paused = condition is not None and condition.get("reason") == util.PAUSED
        if paused and not showing_paused:
            rollout.set_condition(
                new_condition(
                    "Progressing",
                    "Unknown",
                    util.PAUSED,
                    "Deployment is paused",
                    utcnow(),
                    update=True,
                )
            )
        elif not paused and showing_paused:
            rollout.set_condition(
                new_condition(
                    "Progressing",
                    "Unknown",
                    util.RESUMED,
                    "Deployment is resumed",
                    utcnow(),
                    update=True,
                )
            )
        else:
            return
        current = dict(rollout.stored_status)
        current["conditions"] = rollout.conditions()
        await self._write_status(rollout, current)

    def _current_status(self, rollout: Rollout) -> Obj:
        current = dict(rollout.stored_status)
        current["conditions"] = rollout.conditions()
        return current

    async def _sync_status(self, rollout: Rollout) -> Result | None:
        new_status = util.calculate_status(
            rollout.all(), rollout.new(), rollout.deployment, utcnow()
        )
        await self._write_status(rollout, new_status)
        return None

    async def _sync_rollout_status(self, rollout: Rollout) -> Result | None:
        now = utcnow()
        new_status = util.rollout_status(rollout.all(), rollout.new(), rollout.deployment, now)
        await self._write_status(rollout, new_status)
        after = util.stuck_recheck_after(rollout.deployment, new_status, now)
        return Result(requeue_after=after) if after is not None else None

    async def _write_status(self, rollout: Rollout, new_status: Obj) -> None:
        if util.same_status(new_status, rollout.stored_status):
            return
        try:
            written = await write_status(self.client, {**rollout.deployment, "status": new_status})
        except ApiException as exc:
            if exc.not_found:
                return
            raise
        self.wrote(rollout.key, self.deployments, written)
        rollout.stored_status = copy.deepcopy(new_status)
        rollout.deployment = {**written, "status": copy.deepcopy(new_status)}
        if meta(written).get("resourceVersion"):
            rollout.deployment["metadata"] = written["metadata"]
