"""apps/v1 kinds: ReplicaSet and Deployment."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field

from kumo.model.base import Condition, KumoModel, LabelSelector, Resource, immutable_field
from kumo.model.common import IntOrString, scaled_value
from kumo.model.core import PodTemplateSpec, Problems
from kumo.model.selectors import SelectorError, from_label_selector


def _validate_selector_and_template(
    selector: LabelSelector | None, template: PodTemplateSpec | None, replicas: int | None
) -> Problems:
    out: Problems = []
    if replicas is not None and replicas < 0:
        out.append(
            ("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")
        )
    if selector is None:
        out.append(("spec.selector", "Required value"))
    elif not (selector.match_labels or selector.match_expressions):
        out.append(("spec.selector", "Invalid value: empty selector is invalid for deployment"))
    else:
        try:
            parsed = from_label_selector(selector)
        except SelectorError as exc:
            out.append(("spec.selector", f"Invalid value: {exc}"))
        else:
            if template is not None and not parsed.matches(template.metadata.labels or {}):
                out.append(
                    (
                        "spec.template.metadata.labels",
                        "Invalid value: `selector` does not match template `labels`",
                    )
                )
    if template is not None:
        out.extend(template.spec.validate_semantics("spec.template.spec"))
    return out


class ReplicaSetSpec(KumoModel):
    replicas: int | None = None
    min_ready_seconds: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None


class ReplicaSetStatus(KumoModel):
    replicas: int = 0
    fully_labeled_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class ReplicaSet(Resource):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["ReplicaSet"] = "ReplicaSet"
    spec: ReplicaSetSpec = Field(default_factory=ReplicaSetSpec)
    status: ReplicaSetStatus | None = None

    plural = "replicasets"
    singular = "replicaset"
    short_names = ("rs",)
    subresources = ("status", "scale")
    categories = ("all",)

    def apply_defaults(self) -> None:
        if self.spec.replicas is None:
            self.spec.replicas = 1
        if self.spec.min_ready_seconds is None:
            self.spec.min_ready_seconds = 0
        if self.spec.template is not None:
            self.spec.template.spec.apply_defaults()
        if self.status is None:
            self.status = ReplicaSetStatus()

    def validate_semantics(self) -> Problems:
        out = _validate_selector_and_template(
            self.spec.selector, self.spec.template, self.spec.replicas
        )
        if self.spec.template is None:
            out.append(("spec.template", "Required value"))
        elif self.spec.template.spec.restart_policy not in (None, "Always"):
            out.append(
                (
                    "spec.template.spec.restartPolicy",
                    f'Unsupported value: "{self.spec.template.spec.restart_policy}": supported values: "Always"',
                )
            )
        return out

    def validate_update(self, old: Self) -> Problems:
        return immutable_field("spec.selector", self.spec.selector, old.spec.selector)


class RollingUpdateDeployment(KumoModel):
    max_unavailable: IntOrString | None = None
    max_surge: IntOrString | None = None


class DeploymentStrategy(KumoModel):
    type: str | None = None
    rolling_update: RollingUpdateDeployment | None = None


class DeploymentSpec(KumoModel):
    replicas: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec
    strategy: DeploymentStrategy | None = None
    min_ready_seconds: int | None = None
    revision_history_limit: int | None = None
    paused: bool | None = None
    progress_deadline_seconds: int | None = None


class DeploymentStatus(KumoModel):
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    conditions: list[Condition] | None = None
    collision_count: int | None = None


def _check_int_or_percent(path: str, value: IntOrString | None) -> Problems:
    if value is None:
        return []
    if isinstance(value, int):
        return (
            []
            if value >= 0
            else [(path, f"Invalid value: {value}: must be greater than or equal to 0")]
        )
    text = value.strip()
    if text.endswith("%") and text[:-1].isdigit():
        if int(text[:-1]) > 100:
            return [(path, f"Invalid value: {value!r}: must not be greater than 100%")]
        return []
    return [
        (
            path,
            f"Invalid value: {value!r}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%')",
        )
    ]


class Deployment(Resource):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec
    status: DeploymentStatus | None = None

    plural = "deployments"
    singular = "deployment"
    short_names = ("deploy",)
    subresources = ("status", "scale")
    categories = ("all",)

    def apply_defaults(self) -> None:
        spec = self.spec
        if spec.replicas is None:
            spec.replicas = 1
        if spec.strategy is None:
            spec.strategy = DeploymentStrategy()
        spec.strategy.type = spec.strategy.type or "RollingUpdate"
        if spec.strategy.type == "RollingUpdate":
            rolling = spec.strategy.rolling_update or RollingUpdateDeployment()
            if rolling.max_surge is None:
                rolling.max_surge = "25%"
            if rolling.max_unavailable is None:
                rolling.max_unavailable = "25%"
            spec.strategy.rolling_update = rolling
        if spec.revision_history_limit is None:
            spec.revision_history_limit = 10
        if spec.progress_deadline_seconds is None:
            spec.progress_deadline_seconds = 600
        if spec.min_ready_seconds is None:
            spec.min_ready_seconds = 0
        spec.template.spec.apply_defaults()
        if self.status is None:
            self.status = DeploymentStatus()

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out = _validate_selector_and_template(spec.selector, spec.template, spec.replicas)
        if spec.template.spec.restart_policy not in (None, "Always"):
            out.append(
                (
                    "spec.template.spec.restartPolicy",
                    f'Unsupported value: "{spec.template.spec.restart_policy}": supported values: "Always"',
                )
            )
        strategy = spec.strategy
        if strategy is not None:
            if strategy.type not in (None, "RollingUpdate", "Recreate"):
                out.append(
                    (
                        "spec.strategy.type",
                        f'Unsupported value: "{strategy.type}": supported values: "Recreate", "RollingUpdate"',
                    )
                )
            if strategy.type == "Recreate" and strategy.rolling_update is not None:
                out.append(
                    (
                        "spec.strategy.rollingUpdate",
                        "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                    )
                )
            rolling = strategy.rolling_update
            if rolling is not None:
                out.extend(
                    _check_int_or_percent("spec.strategy.rollingUpdate.maxSurge", rolling.max_surge)
                )
                out.extend(
                    _check_int_or_percent(
                        "spec.strategy.rollingUpdate.maxUnavailable", rolling.max_unavailable
                    )
                )
                if (
                    not out
                    and scaled_value(rolling.max_surge, 100, True) == 0
                    and scaled_value(rolling.max_unavailable, 100, False) == 0
                ):
                    out.append(
                        (
                            "spec.strategy.rollingUpdate.maxUnavailable",
                            "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                        )
                    )
        for field in ("revision_history_limit", "min_ready_seconds", "progress_deadline_seconds"):
            value = getattr(spec, field)
            if value is not None and value < 0:
                wire = DeploymentSpec.model_fields[field].alias or field
                out.append(
                    (f"spec.{wire}", f"Invalid value: {value}: must be greater than or equal to 0")
                )
        if (
            spec.progress_deadline_seconds is not None
            and spec.min_ready_seconds is not None
            and spec.progress_deadline_seconds <= spec.min_ready_seconds
        ):
            out.append(
                (
                    "spec.progressDeadlineSeconds",
                    "Invalid value: must be greater than minReadySeconds",
                )
            )
        return out

    def validate_update(self, old: Self) -> Problems:
        return immutable_field("spec.selector", self.spec.selector, old.spec.selector)
