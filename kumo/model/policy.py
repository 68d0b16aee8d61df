"""policy/v1 PodDisruptionBudget: how many of a set of pods voluntary disruptions (evictions,
``kumo drain``) must leave running."""

from __future__ import annotations

from typing import Literal

from kumo.model.base import Condition, KumoModel, LabelSelector, Resource
from kumo.model.common import IntOrString
from kumo.model.core import Problems
from kumo.model.selectors import SelectorError, from_label_selector

UNHEALTHY_POLICIES = ("IfHealthyBudget", "AlwaysAllow")


class PodDisruptionBudgetSpec(KumoModel):
    min_available: IntOrString | None = None
    max_unavailable: IntOrString | None = None
    selector: LabelSelector | None = None
    unhealthy_pod_eviction_policy: str | None = None


class PodDisruptionBudgetStatus(KumoModel):
    observed_generation: int | None = None
    disrupted_pods: dict[str, str] | None = None
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0
    conditions: list[Condition] | None = None


def _count_problems(path: str, value: int | str) -> Problems:
    if isinstance(value, int):
        if value < 0:
            return [(path, f"Invalid value: {value}: must be greater than or equal to 0")]
        return []
    text = value.strip()
    if not text.endswith("%") or not text[:-1].isdigit():
        return [(path, f'Invalid value: "{value}": a valid percent string must be a numeric string followed by an ending \'%\'')]  # fmt: skip
    if int(text[:-1]) > 100:
        return [(path, f'Invalid value: "{value}": must not be greater than 100%')]
    return []


class PodDisruptionBudget(Resource):
    api_version: Literal["policy/v1"] = "policy/v1"
    kind: Literal["PodDisruptionBudget"] = "PodDisruptionBudget"
    spec: PodDisruptionBudgetSpec
    status: PodDisruptionBudgetStatus | None = None

    plural = "poddisruptionbudgets"
    singular = "poddisruptionbudget"
    short_names = ("pdb",)
    subresources = ("status",)

    def apply_defaults(self) -> None:
        if self.status is None:
            self.status = PodDisruptionBudgetStatus()

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out: Problems = []
        if spec.min_available is not None and spec.max_unavailable is not None:
            out.append(
                ("spec", "Invalid value: minAvailable and maxUnavailable cannot be both set")
            )
        if spec.min_available is not None:
            out += _count_problems("spec.minAvailable", spec.min_available)
        if spec.max_unavailable is not None:
            out += _count_problems("spec.maxUnavailable", spec.max_unavailable)
        policy = spec.unhealthy_pod_eviction_policy
        if policy is not None and policy not in UNHEALTHY_POLICIES:
            out.append(
                (
                    "spec.unhealthyPodEvictionPolicy",
                    f'Unsupported value: "{policy}": supported values: "AlwaysAllow", '
                    f'"IfHealthyBudget"',
                )
            )
        if spec.selector is not None:
            try:
                from_label_selector(spec.selector)
            except SelectorError as exc:
                out.append(("spec.selector", f"Invalid value: {exc}"))
        return out
