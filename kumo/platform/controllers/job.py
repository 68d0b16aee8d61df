"""The Job controller: runs pods until ``completions`` of them succeed, at most
``parallelism`` at a time, and gives up after ``backoffLimit`` failures or
``activeDeadlineSeconds``.

What it promises (Kubernetes' job controller, NonIndexed completion mode):
- pods come from the template (its restartPolicy, Never or OnFailure, is the pod's) with a
  controller ownerReference and the ``batch.kubernetes.io/job-tracking`` finalizer;
- a finished pod is counted exactly once, even if it is deleted later: its uid is first
  recorded in ``status.uncountedTerminatedPods``, then its finalizer is removed, then it
  moves into ``succeeded`` / ``failed``. A pod deleted before it succeeded counts as failed;
- after a failure the next pod waits ``backoff_base * 2**(failures-1)`` seconds (capped);
- more than ``backoffLimit`` failed pods (or, for OnFailure, that many container restarts)
  fails the Job with reason BackoffLimitExceeded; running longer than
  ``activeDeadlineSeconds`` fails it with DeadlineExceeded; either way its active pods are
  deleted;
- ``completions`` successes (with no pod still active) complete it: condition Complete
  (reason CompletionsReached) and ``completionTime``; a Job without ``completions`` is
  complete when one pod has succeeded and none is active;
- status: startTime, active, ready, terminating, succeeded, failed, conditions.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import os
import time
from dataclasses import dataclass

from kumo.client import ApiException, AsyncClient
from kumo.client.client import JSON_PATCH
from kumo.model.batch import Job
from kumo.model.core import Pod
from kumo.model.registry import for_model
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    controller_ref,
    find_condition,
    format_time,
    int_value,
    is_pod_active,
    is_pod_ready,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    parse_time,
    pod_from_template,
    pod_phase,
    pods_to_delete,
    slow_start_batches,
    spec,
    status,
    uid_of,
    utcnow,
)
from kumo.platform.controllers.informer import (
    EventHandler,
    InformerFactory,
    object_key,
    split_key,
)
from kumo.platform.controllers.runner import Result, write_status
from kumo.platform.controllers.workload import (
    CONTROLLER_UID_INDEX,
    WorkloadController,
    by_controller_uid,
    claim,
    recheck_owner,
    selector_of,
)
from kumo.platform.controllers.workqueue import ExponentialBackoff

log = logging.getLogger(__name__)

POD_INFO = for_model(Pod)
JOB_INFO = for_model(Job)
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
POD_KEY_PREFIX = "pod:"
DEFAULT_BACKOFF_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 360.0


def finished_condition(job: Obj) -> Obj | None:
    for kind in ("Complete", "Failed"):
        condition = find_condition(status(job).get("conditions"), kind)
        if condition is not None and condition.get("status") == "True":
            return condition
    return None


def job_condition(kind: str, reason: str, message: str, now: datetime.datetime) -> Obj:
    stamp = format_time(now)
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def restarts_of(pod: Obj) -> int:
    total = 0
    for group in ("initContainerStatuses", "containerStatuses"):
        for entry in status(pod).get(group) or []:
            if isinstance(entry, dict):
                total += int_value(entry.get("restartCount"))
    return total


def past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """OnFailure pods restart in place: their container restarts count against the limit."""
    template_spec = (spec(job).get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(restarts_of(p) for p in pods if pod_phase(p) in ("Pending", "Running"))
    limit = int_value(spec(job).get("backoffLimit"), 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def active_deadline_left(job: Obj, start_time: str | None, now: datetime.datetime) -> float | None:
    """Seconds until ``activeDeadlineSeconds`` passes (negative once it has); None if the
    Job has no deadline or has not started."""
    deadline = spec(job).get("activeDeadlineSeconds")
    started = parse_time(start_time)
    if deadline is None or started is None:
        return None
    end = started + datetime.timedelta(seconds=int_value(deadline))
    return (end - now).total_seconds()


def wanted_active(job: Obj, active: int, succeeded: int) -> int:
    """How many pods should be running now (Kubernetes' manageJob, NonIndexed)."""
    job_spec = spec(job)
    if job_spec.get("suspend"):
        return 0
    parallelism = int_value(job_spec.get("parallelism"), 1)
    completions = job_spec.get("completions")
    if completions is None:
        return active if succeeded > 0 else parallelism
    return max(min(int_value(completions) - succeeded, parallelism), 0)


def is_complete(job: Obj, active: int, succeeded: int) -> bool:
    completions = spec(job).get("completions")
    if completions is None:
        return succeeded > 0 and active == 0
    return succeeded >= int_value(completions) and active == 0


@dataclass(slots=True)
class FailureRecord:
    """Failures since the last success, and when the last one was seen (monotonic)."""

    failed: int = 0
    succeeded: int = 0
    consecutive: int = 0
    last_failure: float = 0.0


class JobController(WorkloadController):
    """Queue keys are ``namespace/name`` of Jobs, and ``pod:namespace/name`` of pods whose
    tracking finalizer outlived their Job."""

    name = "job"
    workers = 3

    def __init__(
        self,
        client: AsyncClient,
        informers: InformerFactory,
        *,
        backoff_seconds: float | None = None,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
        workers: int | None = None,
        backoff: ExponentialBackoff[str] | None = None,
    ) -> None:
        if backoff_seconds is None:
            backoff_seconds = float(
                os.environ.get("KUMO_JOB_BACKOFF_SECONDS") or DEFAULT_BACKOFF_SECONDS
            )
        self.pod_backoff = backoff_seconds
        self.max_pod_backoff = max_backoff_seconds
        self._failures: dict[str, FailureRecord] = {}
        super().__init__(client, informers, workers=workers, backoff=backoff)

    def setup(self) -> None:
        self.jobs = self.informers.informer(Job)
        self.pods = self.informers.informer(Pod)
        self.pods.add_index(CONTROLLER_UID_INDEX, by_controller_uid)
        self.jobs.add_event_handler(
            EventHandler(
                on_add=self.enqueue,
                on_update=lambda old, new: self.enqueue(new),
                on_delete=self._job_deleted,
            )
        )
        self.pods.add_event_handler(
            EventHandler(
                on_add=self._pod_changed,
                on_update=lambda old, new: self._pod_changed(new),
                on_delete=self._pod_changed,
            )
        )

    # ---- events ----------------------------------------------------------------------------

    def _job_deleted(self, job: Obj) -> None:
        key = object_key(job)
        self.expectations.forget(key)
        self._failures.pop(key, None)
        for pod in self.pods.by_index(CONTROLLER_UID_INDEX, uid_of(job)):
            if TRACKING_FINALIZER in (meta(pod).get("finalizers") or []):
                self.queue.add(POD_KEY_PREFIX + object_key(pod))

    def _pod_changed(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "Job":
            job = self.jobs.get(namespace_of(pod), str(ref.get("name")))
            if job is not None and uid_of(job) == ref.get("uid"):
                self.enqueue(job)
                return
        elif ref is None:
            for job in self.jobs.list(namespace_of(pod)):
                if selector_of(job).matches(meta(pod).get("labels") or {}):
                    self.enqueue(job)
        if TRACKING_FINALIZER in (meta(pod).get("finalizers") or []):
            self.queue.add(POD_KEY_PREFIX + object_key(pod))

    # ---- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        if key.startswith(POD_KEY_PREFIX):
            await self._release_orphan(key[len(POD_KEY_PREFIX) :])
            return None
        await self.expectations.wait(key)
        namespace, name = split_key(key)
        cached = self.jobs.get(namespace, name)
        if cached is None:
            self.expectations.forget(key)
            return None
        job = copy.deepcopy(cached)
        pods = await claim(
            self.client,
            job,
            selector_of(job),
            self.pods.list(namespace),
            can_adopt=lambda: recheck_owner(self.client, job),
            on_write=lambda written: self.wrote(key, self.pods, written),
        )
        if finished_condition(job) is not None:
            await self._remove_finalizers(key, [p for p in pods if _tracked(p)])
            return None
        return await self._sync(key, job, pods)

    async def _sync(self, key: str, job: Obj, pods: list[Obj]) -> Result | None:
        now = utcnow()
        stored: Obj = copy.deepcopy(status(job))
        new_status: Obj = copy.deepcopy(stored)
        if not new_status.get("startTime") and not spec(job).get("suspend"):
            new_status["startTime"] = format_time(now)
        uncounted = stored.get("uncountedTerminatedPods") or {}
        uncounted_ok = set(uncounted.get("succeeded") or [])
        uncounted_failed = set(uncounted.get("failed") or [])
        for pod in pods:
            uid = uid_of(pod)
            if not _tracked(pod) or uid in uncounted_ok or uid in uncounted_failed:
                continue
            if pod_phase(pod) == "Succeeded":
                uncounted_ok.add(uid)
            elif pod_phase(pod) == "Failed" or being_deleted(pod):
                uncounted_failed.add(uid)
        succeeded = int_value(stored.get("succeeded")) + len(uncounted_ok)
        failed = int_value(stored.get("failed")) + len(uncounted_failed)
        record = self._record(key, succeeded, failed)
        active = [p for p in pods if is_pod_active(p)]

        finish: Obj | None = None
        requeue: float | None = None
        backoff_limit = int_value(spec(job).get("backoffLimit"), 6)
        left = active_deadline_left(job, new_status.get("startTime"), now)
        if failed > backoff_limit or past_backoff_limit_on_failure(job, active):
            finish = job_condition(
                "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now
            )
        elif left is not None and left <= 0:
            finish = job_condition(
                "Failed", "DeadlineExceeded", "Job was active longer than specified deadline", now
            )
        elif left is not None:
            requeue = left + 0.05

        if finish is not None:
            # Its active pods are stopped, and count as failed.
            for pod in await self._delete_pods(key, job, active):
                if _tracked(pod) and uid_of(pod) not in uncounted_ok:
                    uncounted_failed.add(uid_of(pod))
            failed = int_value(stored.get("failed")) + len(uncounted_failed)
            active = []
        else:
            active, wait = await self._manage(key, job, active, succeeded, record)
            if wait is not None:
                requeue = wait if requeue is None else min(requeue, wait)
            if is_complete(job, len(active), succeeded):
                finish = job_condition(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                )

        new_status["active"] = len(active)
        new_status["ready"] = sum(1 for p in active if is_pod_ready(p))
        new_status["terminating"] = sum(
            1 for p in pods if being_deleted(p) and pod_phase(p) not in ("Succeeded", "Failed")
        )
        new_status.setdefault("succeeded", 0)
        new_status.setdefault("failed", 0)
        # 1. Record the newly finished pods before their finalizers go ...
        new_status["uncountedTerminatedPods"] = _uncounted(uncounted_ok, uncounted_failed)
        job, stored = await self._write_status(key, job, new_status, stored)
        # 2. ... let them go ...
        finished_uids = uncounted_ok | uncounted_failed
        await self._remove_finalizers(
            key, [p for p in pods if _tracked(p) and uid_of(p) in finished_uids]
        )
        # 3. ... count them, and finish the Job once nothing is left uncounted.
        new_status = copy.deepcopy(new_status)
        new_status["succeeded"] = succeeded
        new_status["failed"] = failed
        new_status["uncountedTerminatedPods"] = {}
        if finish is not None:
            others = [
                c for c in new_status.get("conditions") or [] if c.get("type") != finish["type"]
            ]
            new_status["conditions"] = [*others, finish]
            if finish["type"] == "Complete":
                new_status["completionTime"] = format_time(now)
                self.recorder.normal(job, "Completed", "Job completed")
            else:
                self.recorder.warning(job, str(finish["reason"]), str(finish["message"]))
        await self._write_status(key, job, new_status, stored)
        if finish is not None:
            self._failures.pop(key, None)
            return None
        return Result(requeue_after=requeue) if requeue is not None else None

    def _record(self, key: str, succeeded: int, failed: int) -> FailureRecord:
        record = self._failures.setdefault(key, FailureRecord(failed=failed, succeeded=succeeded))
        if succeeded > record.succeeded:
            record.consecutive = 0
        if failed > record.failed:
            record.consecutive += failed - record.failed
            record.last_failure = time.monotonic()
        record.failed, record.succeeded = failed, succeeded
        return record

    def _backoff_left(self, record: FailureRecord) -> float:
        if record.consecutive <= 0 or record.last_failure == 0.0:
            return 0.0
        delay = min(self.pod_backoff * 2.0 ** (record.consecutive - 1), self.max_pod_backoff)
        return record.last_failure + delay - time.monotonic()

    async def _manage(
        self, key: str, job: Obj, active: list[Obj], succeeded: int, record: FailureRecord
    ) -> tuple[list[Obj], float | None]:
        """Create or delete pods toward ``wanted_active``; (active pods now, seconds to wait
        before creating more because of failure backoff)."""
        want = wanted_active(job, len(active), succeeded)
        if len(active) > want:
            victims = pods_to_delete(active, len(active) - want)
            deleted = await self._delete_pods(key, job, victims)
            gone = {uid_of(p) for p in deleted}
            return [p for p in active if uid_of(p) not in gone], None
        if len(active) < want:
            wait = self._backoff_left(record)
            if wait > 0:
                return active, wait
            created = await self._create_pods(key, job, want - len(active))
            return [*active, *created], None
        return active, None

    # ---- writes ----------------------------------------------------------------------------

    async def _create_pods(self, key: str, job: Obj, count: int) -> list[Obj]:
        template = spec(job).get("template") or {}
        body = pod_from_template(
            template,
            job,
            owner_reference(job, "batch/v1", "Job"),
            extra_finalizers=[TRACKING_FINALIZER],
        )
        made: list[Obj] = []
        for batch in slow_start_batches(count):
            results = await asyncio.gather(
                *(self.client.create_raw(body, namespace_of(job)) for _ in range(batch)),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for result in results:
                if isinstance(result, BaseException):
                    continue
                self.wrote(key, self.pods, result)
                made.append(result)
                self.recorder.normal(job, "SuccessfulCreate", f"Created pod: {name_of(result)}")
            if failures:
                for failure in failures:
                    message = failure.message if isinstance(failure, ApiException) else str(failure)
                    self.recorder.warning(job, "FailedCreate", f"Error creating: {message}")
                first = failures[0]
                raise first if isinstance(first, Exception) else RuntimeError(str(first))
        return made

    async def _delete_pods(self, key: str, job: Obj, victims: list[Obj]) -> list[Obj]:
        deleted: list[Obj] = []
        for pod in victims:
            try:
                result = await self.client.delete_raw(POD_INFO, name_of(pod), namespace_of(pod))
            except ApiException as exc:
                if exc.not_found:
                    deleted.append(pod)
                    continue
                self.recorder.warning(job, "FailedDelete", f"Error deleting: {exc.message}")
                raise
            self.wrote(key, self.pods, result)
            deleted.append(pod)
            self.recorder.normal(job, "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
        return deleted

    async def _remove_finalizers(self, key: str, pods: list[Obj]) -> None:
        async def release(pod: Obj) -> None:
            result = await _drop_finalizer(self.client, pod)
            if result is not None:
                self.wrote(key, self.pods, result)

        await asyncio.gather(*(release(p) for p in pods))

    async def _write_status(
        self, key: str, job: Obj, new_status: Obj, stored: Obj
    ) -> tuple[Obj, Obj]:
        """Write ``new_status`` unless it is what is stored; (latest Job, stored status)."""
        if new_status == stored:
            return job, stored
        written = await write_status(self.client, {**job, "status": new_status})
        self.wrote(key, self.jobs, written)
        return written, copy.deepcopy(new_status)

    async def _release_orphan(self, pod_key: str) -> None:
        """Drop the tracking finalizer of a pod whose Job is gone."""
        namespace, name = split_key(pod_key)
        pod = self.pods.get(namespace, name)
        if pod is None or not _tracked(pod):
            return
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "Job":
            try:
                job = await self.client.get_raw(JOB_INFO, str(ref.get("name")), namespace)
            except ApiException as exc:
                if not exc.not_found:
                    raise
            else:
                if uid_of(job) == ref.get("uid"):
                    return  # its Job is alive and will count it
        await _drop_finalizer(self.client, pod)


def _tracked(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (meta(pod).get("finalizers") or [])


def _uncounted(succeeded: set[str], failed: set[str]) -> Obj:
    out: Obj = {}
    if succeeded:
        out["succeeded"] = sorted(succeeded)
    if failed:
        out["failed"] = sorted(failed)
    return out


async def _drop_finalizer(client: AsyncClient, pod: Obj) -> Obj | None:
    """Remove the tracking finalizer, only if it is still where the cached pod had it."""
    finalizers = list(meta(pod).get("finalizers") or [])
    if TRACKING_FINALIZER not in finalizers:
        return None
    at = f"/metadata/finalizers/{finalizers.index(TRACKING_FINALIZER)}"
    patch = [
        {"op": "test", "path": at, "value": TRACKING_FINALIZER},
        {"op": "remove", "path": at},
    ]
    try:
        return await client.patch_raw(
            POD_INFO, name_of(pod), patch, namespace_of(pod), patch_type=JSON_PATCH
        )
    except ApiException as exc:
        if exc.not_found:
            return None
        raise
