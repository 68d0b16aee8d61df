"""Subresource and helper types that are not stored: Scale, Binding, WatchEvent, ..."""

from __future__ import annotations

import datetime
import time
from typing import Literal

from pydantic import Field

from kumo.model.base import KumoModel, ObjectMeta
from kumo.model.core import ObjectReference

_last_second: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """Kubernetes' Time: second precision, UTC, 'Z'."""
    global _last_second
    second = int(time.time())
    if second != _last_second[0]:  # formatted once a second: writes ask for it often
        text = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_second = (second, text)
    return _last_second[1]


def now_micro() -> str:
    """Kubernetes' MicroTime (Lease renewTime, Event eventTime)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class ScaleSpec(KumoModel):
    replicas: int | None = None


class ScaleStatus(KumoModel):
    replicas: int = 0
    selector: str | None = None


class Scale(KumoModel):
    api_version: Literal["autoscaling/v1"] = "autoscaling/v1"
    kind: Literal["Scale"] = "Scale"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ScaleSpec = Field(default_factory=ScaleSpec)
    status: ScaleStatus = Field(default_factory=ScaleStatus)


class Binding(KumoModel):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Binding"] = "Binding"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    target: ObjectReference
