"""coordination.k8s.io/v1 Lease."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kumo.model.base import KumoModel, Resource


class LeaseSpec(KumoModel):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None


class Lease(Resource):
    api_version: Literal["coordination.k8s.io/v1"] = "coordination.k8s.io/v1"
    kind: Literal["Lease"] = "Lease"
    spec: LeaseSpec = Field(default_factory=LeaseSpec)

    plural = "leases"
    singular = "lease"
