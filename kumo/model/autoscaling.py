"""autoscaling/v2 HorizontalPodAutoscaler."""

from __future__ import annotations

from typing import Literal

from kumo.model.base import Condition, KumoModel, LabelSelector, Resource
from kumo.model.common import Quantity
from kumo.model.core import Problems


class CrossVersionObjectReference(KumoModel):
    api_version: str | None = None
    kind: str
    name: str


class MetricTarget(KumoModel):
    type: str
    value: Quantity | None = None
    average_value: Quantity | None = None
    average_utilization: int | None = None


class MetricIdentifier(KumoModel):
    name: str
    selector: LabelSelector | None = None


class ResourceMetricSource(KumoModel):
    name: str
    target: MetricTarget


class ContainerResourceMetricSource(KumoModel):
    name: str
    container: str
    target: MetricTarget


class PodsMetricSource(KumoModel):
    metric: MetricIdentifier
    target: MetricTarget


class ObjectMetricSource(KumoModel):
    described_object: CrossVersionObjectReference
    metric: MetricIdentifier
    target: MetricTarget


class ExternalMetricSource(KumoModel):
    metric: MetricIdentifier
    target: MetricTarget


class MetricSpec(KumoModel):
    type: str
    resource: ResourceMetricSource | None = None
    container_resource: ContainerResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object: ObjectMetricSource | None = None
    external: ExternalMetricSource | None = None


class HPAScalingPolicy(KumoModel):
    type: str
    value: int
    period_seconds: int


class HPAScalingRules(KumoModel):
    stabilization_window_seconds: int | None = None
    select_policy: str | None = None
    policies: list[HPAScalingPolicy] | None = None
    tolerance: Quantity | None = None


class HorizontalPodAutoscalerBehavior(KumoModel):
    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


class HorizontalPodAutoscalerSpec(KumoModel):
    scale_target_ref: CrossVersionObjectReference
    min_replicas: int | None = None
    max_replicas: int
    metrics: list[MetricSpec] | None = None
    behavior: HorizontalPodAutoscalerBehavior | None = None


class MetricValueStatus(KumoModel):
    value: Quantity | None = None
    average_value: Quantity | None = None
    average_utilization: int | None = None


class ResourceMetricStatus(KumoModel):
    name: str
    current: MetricValueStatus


class ContainerResourceMetricStatus(KumoModel):
    name: str
    container: str
    current: MetricValueStatus


class PodsMetricStatus(KumoModel):
    metric: MetricIdentifier
    current: MetricValueStatus


class MetricStatus(KumoModel):
    type: str
    resource: ResourceMetricStatus | None = None
    container_resource: ContainerResourceMetricStatus | None = None
    pods: PodsMetricStatus | None = None


class HorizontalPodAutoscalerStatus(KumoModel):
    observed_generation: int | None = None
    last_scale_time: str | None = None
    current_replicas: int | None = None
    desired_replicas: int = 0
    current_metrics: list[MetricStatus] | None = None
    conditions: list[Condition] | None = None


_METRIC_SOURCES = {
    "Resource": "resource",
    "ContainerResource": "container_resource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
}


class HorizontalPodAutoscaler(Resource):
    api_version: Literal["autoscaling/v2"] = "autoscaling/v2"
    kind: Literal["HorizontalPodAutoscaler"] = "HorizontalPodAutoscaler"
    spec: HorizontalPodAutoscalerSpec
    status: HorizontalPodAutoscalerStatus | None = None

    plural = "horizontalpodautoscalers"
    singular = "horizontalpodautoscaler"
    short_names = ("hpa",)
    subresources = ("status",)
    categories = ("all",)

    def apply_defaults(self) -> None:
        spec = self.spec
        if spec.min_replicas is None:
            spec.min_replicas = 1
        if not spec.metrics:
            spec.metrics = [
                MetricSpec(
                    type="Resource",
                    resource=ResourceMetricSource(
                        name="cpu", target=MetricTarget(type="Utilization", average_utilization=80)
                    ),
                )
            ]
        behavior = spec.behavior or HorizontalPodAutoscalerBehavior()
        if behavior.scale_up is None:
            behavior.scale_up = HPAScalingRules()
        up = behavior.scale_up
        if up.stabilization_window_seconds is None:
            up.stabilization_window_seconds = 0
        up.select_policy = up.select_policy or "Max"
        if up.policies is None:
            up.policies = [
                HPAScalingPolicy(type="Pods", value=4, period_seconds=15),
                HPAScalingPolicy(type="Percent", value=100, period_seconds=15),
            ]
        if behavior.scale_down is None:
            behavior.scale_down = HPAScalingRules()
        down = behavior.scale_down
        if down.stabilization_window_seconds is None:
            down.stabilization_window_seconds = 300
        down.select_policy = down.select_policy or "Max"
        if down.policies is None:
            down.policies = [HPAScalingPolicy(type="Percent", value=100, period_seconds=15)]
        spec.behavior = behavior
        if self.status is None:
            self.status = HorizontalPodAutoscalerStatus()

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out: Problems = []
        if spec.min_replicas is not None and spec.min_replicas < 0:
            out.append(
                (
                    "spec.minReplicas",
                    f"Invalid value: {spec.min_replicas}: must be greater than or equal to 0",
                )
            )
        if spec.max_replicas < 1:
            out.append(
                ("spec.maxReplicas", f"Invalid value: {spec.max_replicas}: must be greater than 0")
            )
        if spec.min_replicas is not None and spec.min_replicas > spec.max_replicas:
            out.append(
                (
                    "spec.maxReplicas",
                    f"Invalid value: {spec.max_replicas}: must be greater than or equal to `minReplicas`",
                )
            )
        for i, metric in enumerate(spec.metrics or []):
            here = f"spec.metrics[{i}]"
            source = _METRIC_SOURCES.get(metric.type)
            if source is None:
                out.append(
                    (
                        f"{here}.type",
                        f'Unsupported value: "{metric.type}": supported values: "ContainerResource", "External", "Object", "Pods", "Resource"',
                    )
                )
                continue
            if getattr(metric, source) is None:
                out.append(
                    (
                        f"{here}.{source}",
                        f"Required value: must populate information for the given metric source (type {metric.type})",
                    )
                )
            for other, attr in _METRIC_SOURCES.items():
                if other != metric.type and getattr(metric, attr) is not None:
                    out.append(
                        (f"{here}.{attr}", "Forbidden: must populate the given metric source only")
                    )
            if metric.resource is not None:
                target = metric.resource.target
                if target.type not in ("Utilization", "AverageValue", "Value"):
                    out.append(
                        (f"{here}.resource.target.type", f'Unsupported value: "{target.type}"')
                    )
                if target.type == "Utilization" and (target.average_utilization or 0) <= 0:
                    out.append(
                        (
                            f"{here}.resource.target.averageUtilization",
                            "Invalid value: must be greater than 0",
                        )
                    )
        behavior = spec.behavior
        for name, rules in (
            ("scaleUp", behavior.scale_up if behavior else None),
            ("scaleDown", behavior.scale_down if behavior else None),
        ):
            if rules is None:
                continue
            if rules.select_policy not in (None, "Max", "Min", "Disabled"):
                out.append(
                    (
                        f"spec.behavior.{name}.selectPolicy",
                        f'Unsupported value: "{rules.select_policy}": supported values: "Disabled", "Max", "Min"',
                    )
                )
            if (
                rules.stabilization_window_seconds is not None
                and not 0 <= rules.stabilization_window_seconds <= 3600
            ):
                out.append(
                    (
                        f"spec.behavior.{name}.stabilizationWindowSeconds",
                        "Invalid value: must be between 0 and 3600",
                    )
                )
            for j, policy in enumerate(rules.policies or []):
                if policy.type not in ("Pods", "Percent"):
                    out.append(
                        (
                            f"spec.behavior.{name}.policies[{j}].type",
                            f'Unsupported value: "{policy.type}": supported values: "Percent", "Pods"',
                        )
                    )
                if policy.value <= 0:
                    out.append(
                        (
                            f"spec.behavior.{name}.policies[{j}].value",
                            "Invalid value: must be greater than zero",
                        )
                    )
                if not 0 < policy.period_seconds <= 1800:
                    out.append(
                        (
                            f"spec.behavior.{name}.policies[{j}].periodSeconds",
                            "Invalid value: must be between 1 and 1800",
                        )
                    )
        return out
