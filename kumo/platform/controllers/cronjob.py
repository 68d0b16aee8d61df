"""The CronJob controller: runs a Job from ``spec.jobTemplate`` at each time of
``spec.schedule`` (Kubernetes' cronjob controller v2).

What it promises:
- the Job for scheduled time T is named ``<cronjob>-<T in minutes since the epoch>``, carries
  the template's labels and annotations plus ``batch.kubernetes.io/cronjob-scheduled-timestamp``
  and a controller ownerReference: a retried reconcile finds the Job it made instead of making
  another;
- only the most recent missed time runs (after downtime there is one catch-up run, not one per
  missed time); a time more than ``startingDeadlineSeconds`` late is skipped with a
  ``MissSchedule`` warning; more than 100 missed times also warn (``TooManyMissedTimes``);
- ``concurrencyPolicy``: ``Allow`` runs Jobs side by side, ``Forbid`` skips a time while a Job
  is active (``JobAlreadyActive``), ``Replace`` deletes the active Jobs first;
- ``suspend: true`` starts nothing (active Jobs go on);
- ``status.active`` lists the unfinished Jobs it owns (finished ones leave, with a
  ``SawCompletedJob`` event); ``lastScheduleTime`` and ``lastSuccessfulTime`` follow;
- finished Jobs beyond ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` are deleted,
  oldest first, with their pods (background propagation);
- schedules are evaluated in ``spec.timeZone`` (UTC when unset); the key is requeued for the
  next scheduled time.
"""

from __future__ import annotations

import copy
import datetime
import logging

from kumo.client import ApiException
from kumo.model.batch import SCHEDULED_TIMESTAMP_ANNOTATION, CronJob, Job
from kumo.model.cron import CronError, Schedule, most_recent, parse
from kumo.model.registry import for_model
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    controller_ref,
    format_time,
    int_value,
    meta,
    name_of,
    namespace_of,
    parse_time,
    spec,
    status,
    uid_of,
    utcnow,
)
from kumo.platform.controllers.informer import EventHandler, split_key
from kumo.platform.controllers.job import finished_condition
from kumo.platform.controllers.runner import Controller, Result, write_status
from kumo.platform.controllers.workload import EventRecorder

log = logging.getLogger(__name__)

JOB_INFO = for_model(Job)
# Jobs are made a little after their time, never before: a requeue this much later.
NEXT_RUN_SLACK = datetime.timedelta(milliseconds=100)


def job_name(cronjob: Obj, scheduled: datetime.datetime) -> str:
    return f"{name_of(cronjob)}-{int(scheduled.timestamp()) // 60}"


def job_for(cronjob: Obj, scheduled: datetime.datetime) -> Obj:
    """The Job the CronJob runs at ``scheduled`` (pure)."""
    template = copy.deepcopy(spec(cronjob).get("jobTemplate") or {})
    template_meta = template.get("metadata") or {}
    annotations = dict(template_meta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = format_time(scheduled)
    job_meta: Obj = {
        "name": job_name(cronjob, scheduled),
        "namespace": namespace_of(cronjob),
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": name_of(cronjob),
                "uid": uid_of(cronjob),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if template_meta.get("labels"):
        job_meta["labels"] = dict(template_meta["labels"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": template.get("spec") or {},
    }


def job_reference(job: Obj) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name_of(job),
        "namespace": namespace_of(job),
        "uid": uid_of(job),
        "resourceVersion": meta(job).get("resourceVersion"),
    }


def finished_at(job: Obj) -> datetime.datetime:
    condition = finished_condition(job) or {}
    return (
        parse_time(status(job).get("completionTime"))
        or parse_time(condition.get("lastTransitionTime"))
        or parse_time(meta(job).get("creationTimestamp"))
        or datetime.datetime.min.replace(tzinfo=datetime.UTC)
    )


def jobs_to_delete(jobs: list[Obj], successful_limit: int, failed_limit: int) -> list[Obj]:
    """Finished Jobs past the history limits, oldest first (pure)."""
    doomed: list[Obj] = []
    for kind, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        finished = [j for j in jobs if (finished_condition(j) or {}).get("type") == kind]
        finished.sort(key=finished_at)
        doomed.extend(finished[: max(len(finished) - limit, 0)])
    return doomed


class CronJobController(Controller):
    """Queue keys are ``namespace/name`` of CronJobs."""

    name = "cronjob"
    workers = 2

    def setup(self) -> None:
        self.cronjobs = self.informers.informer(CronJob)
        self.cronjobs.add_event_handler(self.enqueue_handler())
        self.jobs = self.informers.informer(Job)
        self.jobs.add_event_handler(EventHandler.for_each(self._job_changed))
        self.events = EventRecorder(self.client, "cronjob-controller")

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{namespace_of(job)}/{ref.get('name')}")

    async def reconcile(self, key: str) -> Result | None:
        namespace, name = split_key(key)
        found = self.cronjobs.get(namespace, name)
        if found is None or being_deleted(found):
            return None
        cronjob = copy.deepcopy(found)
        now = utcnow()
        owned = [
            j
            for j in self.jobs.list(namespace)
            if (controller_ref(j) or {}).get("uid") == uid_of(cronjob)
        ]
        new_status = self._follow_jobs(cronjob, owned)
        cronjob_spec = spec(cronjob)
        try:
            schedule = parse(str(cronjob_spec.get("schedule")), cronjob_spec.get("timeZone"))
        except CronError as exc:
            self.events.warning(cronjob, "UnparseableSchedule", f"unparseable schedule: {exc}")
            await self._write_status(cronjob, new_status)
            return None
        requeue: float | None = None
        if not cronjob_spec.get("suspend"):
            await self._run_due(cronjob, schedule, owned, new_status, now)
            upcoming = schedule.next(now)
            if upcoming is not None:
                requeue = ((upcoming - now) + NEXT_RUN_SLACK).total_seconds()
        await self._write_status(cronjob, new_status)
        await self._clean_up(cronjob, owned)
        return Result(requeue_after=requeue) if requeue is not None else None

    def _follow_jobs(self, cronjob: Obj, owned: list[Obj]) -> Obj:
        """Status with ``active`` made of the unfinished owned Jobs, and
        ``lastSuccessfulTime`` from the finished ones."""
        new_status = copy.deepcopy(status(cronjob))
        previously_active = {ref.get("uid") for ref in new_status.get("active") or []}
        active = []
        last_success = parse_time(new_status.get("lastSuccessfulTime"))
        for job in sorted(owned, key=lambda j: str(meta(j).get("creationTimestamp"))):
            done = finished_condition(job)
            if done is None and not being_deleted(job):
                active.append(job_reference(job))
                continue
            if done is not None and uid_of(job) in previously_active:
                self.events.normal(
                    cronjob, "SawCompletedJob", f"Saw completed job: {name_of(job)}, status: {done.get('type')}"
                )  # fmt: skip
            if done is not None and done.get("type") == "Complete":
                when = finished_at(job)
                if last_success is None or when > last_success:
                    last_success = when
        new_status["active"] = active or None
        if last_success is not None:
            new_status["lastSuccessfulTime"] = format_time(last_success)
        return {k: v for k, v in new_status.items() if v is not None}

    async def _run_due(
        self,
        cronjob: Obj,
        schedule: Schedule,
        owned: list[Obj],
        new_status: Obj,
        now: datetime.datetime,
    ) -> None:
        cronjob_spec = spec(cronjob)
        earliest = parse_time(new_status.get("lastScheduleTime")) or parse_time(
            meta(cronjob).get("creationTimestamp")
        )
        if earliest is None:
            earliest = now
        deadline = cronjob_spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - datetime.timedelta(seconds=int_value(deadline)))
        scheduled, missed = most_recent(schedule, earliest, now)
        if scheduled is None:
            return
        if missed > 100:
            self.events.warning(
                cronjob,
                "TooManyMissedTimes",
                "too many missed start times (> 100); set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew",
            )
        if (
            deadline is not None
            and scheduled + datetime.timedelta(seconds=int_value(deadline)) < now
        ):
            self.events.warning(
                cronjob, "MissSchedule", f"Missed scheduled time to start a job: {format_time(scheduled)}"
            )  # fmt: skip
            return
        name = job_name(cronjob, scheduled)
        if any(name_of(j) == name for j in owned):
            new_status["lastScheduleTime"] = format_time(scheduled)
            return  # made already (an earlier pass whose status write was lost)
        active = new_status.get("active") or []
        policy = cronjob_spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            log.info("cronjob %s: a job is still active, skipping %s", name_of(cronjob), scheduled)
            self.events.normal(
                cronjob, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid"
            )  # fmt: skip
            return
        if policy == "Replace":
            for ref in active:
                try:
                    await self.client.delete_raw(
                        JOB_INFO, str(ref.get("name")), namespace_of(cronjob),
                        propagation="Background",
                    )  # fmt: skip
                except ApiException as exc:
                    if not exc.not_found:
                        raise
                self.events.normal(cronjob, "SuccessfulDelete", f"Deleted job {ref.get('name')}")
            active = []
        try:
            created = await self.client.create_raw(
                job_for(cronjob, scheduled), namespace_of(cronjob)
            )
        except ApiException as exc:
            if not exc.already_exists:
                self.events.warning(cronjob, "FailedCreate", f"Error creating job: {exc}")
                raise
            created = await self.client.get_raw(JOB_INFO, name, namespace_of(cronjob))
        else:
            self.events.normal(cronjob, "SuccessfulCreate", f"Created job {name}")
        new_status["active"] = [*active, job_reference(created)]
        new_status["lastScheduleTime"] = format_time(scheduled)

    async def _write_status(self, cronjob: Obj, new_status: Obj) -> None:
        if new_status == status(cronjob):
            return
        cronjob["status"] = new_status
        try:
            await write_status(self.client, cronjob)
        except ApiException as exc:
            if not exc.not_found:
                raise

    async def _clean_up(self, cronjob: Obj, owned: list[Obj]) -> None:
        cronjob_spec = spec(cronjob)
        doomed = jobs_to_delete(
            [j for j in owned if not being_deleted(j)],
            int_value(cronjob_spec.get("successfulJobsHistoryLimit"), 3),
            int_value(cronjob_spec.get("failedJobsHistoryLimit"), 1),
        )
        for job in doomed:
            try:
                await self.client.delete_raw(
                    JOB_INFO, name_of(job), namespace_of(job), propagation="Background"
                )
            except ApiException as exc:
                if not exc.not_found:
                    raise
                continue
            self.events.normal(cronjob, "SuccessfulDelete", f"Deleted job {name_of(job)}")
