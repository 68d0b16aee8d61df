"""batch/v1 Job."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field

from kumo.model import cron
from kumo.model.base import (
    Condition,
    KumoModel,
    LabelSelector,
    ObjectMeta,
    Resource,
    immutable_field,
)
from kumo.model.core import ObjectReference, PodTemplateSpec, Problems
from kumo.model.selectors import SelectorError, from_label_selector

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class JobSpec(KumoModel):
    parallelism: int | None = None
    completions: int | None = None
    active_deadline_seconds: int | None = None
    backoff_limit: int | None = None
    selector: LabelSelector | None = None
    manual_selector: bool | None = None
    template: PodTemplateSpec
    ttl_seconds_after_finished: int | None = None
    completion_mode: str | None = None
    suspend: bool | None = None


class UncountedTerminatedPods(KumoModel):
    succeeded: list[str] | None = None
    failed: list[str] | None = None


class JobStatus(KumoModel):
    conditions: list[Condition] | None = None
    start_time: str | None = None
    completion_time: str | None = None
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    ready: int | None = None
    terminating: int | None = None
    uncounted_terminated_pods: UncountedTerminatedPods | None = None


class Job(Resource):
    api_version: Literal["batch/v1"] = "batch/v1"
    kind: Literal["Job"] = "Job"
    spec: JobSpec
    status: JobStatus | None = None

    plural = "jobs"
    singular = "job"
    subresources = ("status",)
    categories = ("all",)

    def apply_defaults(self) -> None:
        spec = self.spec
        if spec.parallelism is None:
            spec.parallelism = 1
        if spec.completions is None and spec.completion_mode != "Indexed":
            spec.completions = 1
        if spec.backoff_limit is None:
            spec.backoff_limit = 6
        spec.completion_mode = spec.completion_mode or "NonIndexed"
        if spec.suspend is None:
            spec.suspend = False
        if not spec.manual_selector and self.metadata.uid:
            generated = {CONTROLLER_UID_LABEL: self.metadata.uid, JOB_NAME_LABEL: self.name}
            if spec.selector is None:
                spec.selector = LabelSelector(
                    match_labels={CONTROLLER_UID_LABEL: self.metadata.uid}
                )
            spec.template.metadata.labels = {**(spec.template.metadata.labels or {}), **generated}
        spec.template.spec.apply_defaults()
        if self.status is None:
            self.status = JobStatus()

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out: Problems = []
        for field in ("parallelism", "completions", "backoff_limit"):
            value = getattr(spec, field)
            if value is not None and value < 0:
                wire = JobSpec.model_fields[field].alias or field
                out.append(
                    (f"spec.{wire}", f"Invalid value: {value}: must be greater than or equal to 0")
                )
        if spec.active_deadline_seconds is not None and spec.active_deadline_seconds <= 0:
            out.append(
                (
                    "spec.activeDeadlineSeconds",
                    f"Invalid value: {spec.active_deadline_seconds}: must be greater than 0",
                )
            )
        if spec.template.spec.restart_policy not in ("Never", "OnFailure"):
            out.append(
                (
                    "spec.template.spec.restartPolicy",
                    'Required value: valid values: "OnFailure", "Never"'
                    if spec.template.spec.restart_policy is None
                    else f'Unsupported value: "{spec.template.spec.restart_policy}": supported values: "OnFailure", "Never"',
                )
            )
        if spec.completion_mode not in (None, "NonIndexed", "Indexed"):
            out.append(
                (
                    "spec.completionMode",
                    f'Unsupported value: "{spec.completion_mode}": supported values: "NonIndexed", "Indexed"',
                )
            )
        if spec.manual_selector:
            if spec.selector is None:
                out.append(("spec.selector", "Required value"))
        elif spec.selector is not None and self.metadata.uid:
            labels = spec.selector.match_labels or {}
            if labels.get(CONTROLLER_UID_LABEL) not in (None, self.metadata.uid):
                out.append(("spec.selector", "Invalid value: `selector` not auto-generated"))
        if spec.selector is not None:
            try:
                if not from_label_selector(spec.selector).matches(
                    spec.template.metadata.labels or {}
                ):
                    out.append(
                        (
                            "spec.template.metadata.labels",
                            "Invalid value: `selector` does not match template `labels`",
                        )
                    )
            except SelectorError as exc:
                out.append(("spec.selector", f"Invalid value: {exc}"))
        out.extend(spec.template.spec.validate_semantics("spec.template.spec"))
        return out

    def validate_update(self, old: Self) -> Problems:
        spec, before = self.spec, old.spec
        return [
            *immutable_field("spec.selector", spec.selector, before.selector),
            *immutable_field("spec.template", spec.template, before.template),
            *immutable_field("spec.completionMode", spec.completion_mode, before.completion_mode),
        ]


# ---- CronJob -------------------------------------------------------------------------------

CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"


class JobTemplateSpec(KumoModel):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: JobSpec


class CronJobSpec(KumoModel):
    schedule: str
    time_zone: str | None = None
    starting_deadline_seconds: int | None = None
    concurrency_policy: str | None = None
    suspend: bool | None = None
    job_template: JobTemplateSpec
    successful_jobs_history_limit: int | None = None
    failed_jobs_history_limit: int | None = None


class CronJobStatus(KumoModel):
    active: list[ObjectReference] | None = None
    last_schedule_time: str | None = None
    last_successful_time: str | None = None


class CronJob(Resource):
    api_version: Literal["batch/v1"] = "batch/v1"
    kind: Literal["CronJob"] = "CronJob"
    spec: CronJobSpec
    status: CronJobStatus | None = None

    plural = "cronjobs"
    singular = "cronjob"
    short_names = ("cj",)
    subresources = ("status",)
    categories = ("all",)

    def apply_defaults(self) -> None:
        spec = self.spec
        spec.concurrency_policy = spec.concurrency_policy or "Allow"
        if spec.suspend is None:
            spec.suspend = False
        if spec.successful_jobs_history_limit is None:
            spec.successful_jobs_history_limit = 3
        if spec.failed_jobs_history_limit is None:
            spec.failed_jobs_history_limit = 1
        spec.job_template.spec.template.spec.apply_defaults()
        if self.status is None:
            self.status = CronJobStatus()

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out: Problems = []
        try:
            cron.parse(spec.schedule, spec.time_zone)
        except cron.CronError as exc:
            where = (
                "spec.timeZone" if "time zone" in str(exc) and spec.time_zone else "spec.schedule"
            )
            out.append((where, f'Invalid value: "{spec.schedule if where == "spec.schedule" else spec.time_zone}": {exc}'))  # fmt: skip
        if spec.concurrency_policy not in (None, *CONCURRENCY_POLICIES):
            out.append(
                (
                    "spec.concurrencyPolicy",
                    f'Unsupported value: "{spec.concurrency_policy}": supported values: '
                    f'"Allow", "Forbid", "Replace"',
                )
            )
        for field in (
            "starting_deadline_seconds",
            "successful_jobs_history_limit",
            "failed_jobs_history_limit",
        ):
            value = getattr(spec, field)
            if value is not None and value < 0:
                wire = CronJobSpec.model_fields[field].alias or field
                out.append(
                    (f"spec.{wire}", f"Invalid value: {value}: must be greater than or equal to 0")
                )
        template = Job(metadata=ObjectMeta(name=self.name), spec=spec.job_template.spec)
        for path, problem in template.validate_semantics():
            out.append((path.replace("spec.", "spec.jobTemplate.spec.", 1), problem))
        return out
