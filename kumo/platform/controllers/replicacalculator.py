"""How many replicas a metric asks for: the arithmetic of Kubernetes' HPA replica calculator,
free of I/O (the HPA controller feeds it pods and their metrics).

What callers may rely on:
- usage and requests are in milli-units (millicores for cpu, millibytes for memory), so
  every sum is an exact integer;
- pods being deleted or Failed are ignored; Pending pods, and for cpu pods that are not Ready
  yet (or whose sample was taken before they became Ready), count as *unready*; pods with no
  sample are *missing*;
- the ratio comes from the ready pods with samples. Within ``tolerance`` of 1 the answer is
  the current replica count. Otherwise, when no pod is unready or missing, it is
  ``ceil(ratio * ready pods)``;
- missing pods are assumed to use their whole target when the ratio says scale down (100% of
  their request for utilization), nothing when it says scale up; unready pods are assumed to
  use nothing, and only when scaling up. If these assumptions flip the direction or bring
  the ratio within tolerance, the current count stands: the HPA never acts on a guess;
- ``ResourceMetricError`` says what is missing (no pods, no metrics, a container without a
  request), in words an operator can act on.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    name_of,
    parse_time,
    pod_condition,
    pod_phase,
    status,
)

DEFAULT_TOLERANCE = 0.1
# Kubernetes' --horizontal-pod-autoscaler-cpu-initialization-period and
# --horizontal-pod-autoscaler-initial-readiness-delay.
CPU_INITIALIZATION_PERIOD = datetime.timedelta(minutes=5)
INITIAL_READINESS_DELAY = datetime.timedelta(seconds=30)


class ResourceMetricError(Exception):
    """The replica count cannot be computed from this metric; the message says why."""


@dataclass(frozen=True, slots=True)
class PodSample:
    """One pod's usage of a resource (milli-units) and when it was measured."""

    usage: int
    timestamp: datetime.datetime
    window: datetime.timedelta


@dataclass(frozen=True, slots=True)
class Recommendation:
    replicas: int
    # average utilization in percent of the request (utilization targets only)
    utilization: int | None
    # average usage per pod, milli-units
    average_usage: int


def _unready_for_cpu(
    pod: Obj,
    sample: PodSample,
    now: datetime.datetime,
    initialization_period: datetime.timedelta,
    readiness_delay: datetime.timedelta,
) -> bool:
    ready = pod_condition(pod, "Ready")
    started = parse_time(status(pod).get("startTime"))
    if ready is None or started is None:
        return True
    changed = parse_time(ready.get("lastTransitionTime")) or started
    if started + initialization_period > now:
        # Young pods burn cpu starting up: trust only samples taken wholly after readiness.
        return ready.get("status") != "True" or sample.timestamp < changed + sample.window
    # Older pods: unready only if they never became ready shortly after starting.
    return ready.get("status") == "False" and started + readiness_delay > changed


def group_pods(
    pods: Sequence[Obj],
    samples: Mapping[str, PodSample],
    resource: str,
    *,
    now: datetime.datetime,
    initialization_period: datetime.timedelta = CPU_INITIALIZATION_PERIOD,
    readiness_delay: datetime.timedelta = INITIAL_READINESS_DELAY,
) -> tuple[list[str], list[str], list[str]]:
    """Names of the ready pods (with samples), the unready ones and the missing ones."""
    ready: list[str] = []
    unready: list[str] = []
    missing: list[str] = []
    for pod in pods:
        name = name_of(pod)
        if being_deleted(pod) or pod_phase(pod) == "Failed":
            continue
        if pod_phase(pod) == "Pending":
            unready.append(name)
            continue
        sample = samples.get(name)
        if sample is None:
            missing.append(name)
            continue
        if resource == "cpu" and _unready_for_cpu(
            pod, sample, now, initialization_period, readiness_delay
        ):
            unready.append(name)
            continue
        ready.append(name)
    return ready, unready, missing


def _within(ratio: float, tolerance: float) -> bool:
    return abs(1.0 - ratio) <= tolerance


def _settle(
    current_replicas: int,
    ratio: float,
    usage: dict[str, int],
    *,
    ready_count: int,
    unready: Sequence[str],
    missing: Sequence[str],
    fill_missing_down: Mapping[str, int],
    recompute: _Ratio,
    tolerance: float,
) -> int:
    """The replica count for ``ratio``, with the assumptions about missing and unready pods
    of the module docstring; ``recompute`` turns the completed ``usage`` into a new ratio."""
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if _within(ratio, tolerance):
            return current_replicas
        return math.ceil(ratio * ready_count)
    for name in missing:
        usage[name] = fill_missing_down[name] if ratio < 1.0 else 0
    if scale_up_with_unready:
        for name in unready:
            usage[name] = 0
    new_ratio = recompute(usage)
    if (
        _within(new_ratio, tolerance)
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current_replicas
    replicas = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and replicas > current_replicas) or (
        new_ratio > 1.0 and replicas < current_replicas
    ):
        return current_replicas
    return replicas


class _Ratio:
    """Turns per-pod usage into the ratio against the target (a callable, for ``_settle``)."""

    def __init__(self, requests: Mapping[str, int] | None, target: int) -> None:
        self.requests = requests
        self.target = target

    def utilization(self, usage: Mapping[str, int]) -> int:
        assert self.requests is not None
        requested = sum(self.requests[name] for name in usage)
        return int(sum(usage.values()) * 100 / requested) if requested else 0

    def __call__(self, usage: Mapping[str, int]) -> float:
        if self.requests is not None:
            return self.utilization(usage) / self.target
        return sum(usage.values()) / (self.target * len(usage)) if usage else 0.0


def replicas_for_resource(
    current_replicas: int,
    pods: Sequence[Obj],
    samples: Mapping[str, PodSample],
    requests: Mapping[str, int | None],
    resource: str,
    *,
    target_utilization: int | None = None,
    target_average: int | None = None,
    now: datetime.datetime,
    tolerance: float = DEFAULT_TOLERANCE,
    what: str = "",
) -> Recommendation:
    """Replicas for a Resource (or ContainerResource) metric with a target of
    ``target_utilization`` percent of the request, or ``target_average`` milli-units per pod.
    ``requests`` maps each pod to its request of the resource (None when a container has
    none); ``what`` names the pods' containers in errors (``container "app" of``)."""
    if not pods:
        raise ResourceMetricError("no pods returned by selector while calculating replica count")
    ready, unready, missing = group_pods(pods, samples, resource, now=now)
    usage = {name: samples[name].usage for name in ready}
    if not usage:
        raise ResourceMetricError(
            f"did not receive metrics for targeted pods (pods might be unready): "
            f"{len(unready)} unready, {len(missing)} without metrics"
        )
    if target_utilization is not None:
        pod_requests: dict[str, int] = {}
        for name in [*ready, *missing, *unready]:
            request = requests.get(name)
            if request is None:
                raise ResourceMetricError(f"missing request for {resource} in {what}pod {name}")
            pod_requests[name] = request
        ratio_of = _Ratio(pod_requests, max(target_utilization, 1))
        ratio = ratio_of(usage)
        utilization = ratio_of.utilization(usage)
        replicas = _settle(
            current_replicas, ratio, usage, ready_count=len(ready), unready=unready,
            missing=missing, fill_missing_down=pod_requests, recompute=ratio_of,
            tolerance=tolerance,
        )  # fmt: skip
        average = sum(samples[name].usage for name in ready) // len(ready)
        return Recommendation(replicas, utilization, average)
    if target_average is None:
        raise ResourceMetricError("the metric has no target utilization or average value")
    ratio_of = _Ratio(None, max(target_average, 1))
    ratio = ratio_of(usage)
    average = sum(usage.values()) // len(usage)
    replicas = _settle(
        current_replicas, ratio, usage, ready_count=len(ready), unready=unready,
        missing=missing, fill_missing_down=dict.fromkeys(missing, target_average),
        recompute=ratio_of, tolerance=tolerance,
    )  # fmt: skip
    return Recommendation(replicas, None, average)
