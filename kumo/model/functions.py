"""kumo.dev/v1 Function: source or image, served over HTTP, scaled from zero."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kumo.model.base import Condition, KumoModel, Resource
from kumo.model.core import EnvVar, Problems, ResourceRequirements

RUNTIMES = ("python3.11", "node20", "busybox")
#: Set by the gateway when a request arrives for a Function with no ready pod (cold start);
#: the only change the gateway may make to a Function.
ACTIVATION_ANNOTATION = "kumo.dev/activation-requested-at"


class FunctionSource(KumoModel):
    """Where the code comes from: an uploaded archive (by digest) the builder turns into an image."""

    archive_digest: str | None = None
    runtime: str | None = None
    handler: str | None = None


class FunctionScale(KumoModel):
    min_scale: int | None = None
    max_scale: int | None = None
    target_concurrency: int | None = None
    scale_to_zero_after_seconds: int | None = None


class FunctionSpec(KumoModel):
    image: str | None = None
    source: FunctionSource | None = None
    env: list[EnvVar] | None = None
    resources: ResourceRequirements | None = None
    scale: FunctionScale | None = None
    timeout_seconds: int | None = None
    container_port: int | None = None
    service_account_name: str | None = None


class FunctionStatus(KumoModel):
    observed_generation: int | None = None
    image: str | None = None
    url: str | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    conditions: list[Condition] | None = None


class Function(Resource):
    api_version: Literal["kumo.dev/v1"] = "kumo.dev/v1"
    kind: Literal["Function"] = "Function"
    spec: FunctionSpec = Field(default_factory=FunctionSpec)
    status: FunctionStatus | None = None

    plural = "functions"
    singular = "function"
    short_names = ("fn",)
    subresources = ("status",)
    categories = ("all",)
    name_rule = "label"

    def apply_defaults(self) -> None:
        scale = self.spec.scale or FunctionScale()
        if scale.min_scale is None:
            scale.min_scale = 0
        if scale.max_scale is None:
            scale.max_scale = 10
        if scale.target_concurrency is None:
            scale.target_concurrency = 10
        if scale.scale_to_zero_after_seconds is None:
            scale.scale_to_zero_after_seconds = 60
        self.spec.scale = scale
        if self.spec.timeout_seconds is None:
            self.spec.timeout_seconds = 30
        if self.spec.container_port is None:
            self.spec.container_port = 8080
        if self.status is None:
            self.status = FunctionStatus()

    def validate_semantics(self) -> Problems:
        spec = self.spec
        out: Problems = []
        if not spec.image and (spec.source is None or not spec.source.archive_digest):
            out.append(
                (
                    "spec.image",
                    "Required value: give an image, or deploy source with `kumo fn deploy`",
                )
            )
        if spec.source is not None and spec.source.runtime and spec.source.runtime not in RUNTIMES:
            out.append(
                (
                    "spec.source.runtime",
                    f'Unsupported value: "{spec.source.runtime}": supported values: '
                    + ", ".join(f'"{r}"' for r in RUNTIMES),
                )
            )
        scale = spec.scale
        if scale is not None:
            if scale.min_scale is not None and scale.min_scale < 0:
                out.append(
                    ("spec.scale.minScale", "Invalid value: must be greater than or equal to 0")
                )
            if scale.max_scale is not None and scale.max_scale < 1:
                out.append(("spec.scale.maxScale", "Invalid value: must be greater than 0"))
            if (
                scale.min_scale is not None
                and scale.max_scale is not None
                and scale.min_scale > scale.max_scale
            ):
                out.append(
                    (
                        "spec.scale.maxScale",
                        "Invalid value: must be greater than or equal to minScale",
                    )
                )
            if scale.target_concurrency is not None and scale.target_concurrency < 1:
                out.append(
                    ("spec.scale.targetConcurrency", "Invalid value: must be greater than 0")
                )
        if spec.timeout_seconds is not None and spec.timeout_seconds <= 0:
            out.append(("spec.timeoutSeconds", "Invalid value: must be greater than 0"))
        return out
