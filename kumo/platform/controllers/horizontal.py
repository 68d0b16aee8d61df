"""The HorizontalPodAutoscaler controller (Kubernetes' podautoscaler, autoscaling/v2).

Every ``sync_period`` seconds (15 by default, like kube-controller-manager; also when the HPA
changes) each HPA is reconciled:
1. the target's ``scale`` subresource gives its replica count and pod selector;
2. the pods the selector matches, and their usage from the resource metrics API
   (``metrics.k8s.io``, served by the API server from the agents' samples), give one
   replica count per metric (``kumo.platform.controllers.replicacalculator``); the highest
   wins. ``Resource`` and ``ContainerResource`` metrics (cpu, memory) are supported;
   ``Pods``, ``Object`` and ``External`` metrics need a custom metrics API kumo does not
   serve, and say so in the ScalingActive condition;
3. the recommendation is stabilized and rate-limited by ``spec.behavior``
   (``kumo.platform.controllers.scalingbehavior``) and bounded by min/max replicas;
4. if it differs from the current count the scale subresource is updated and a
   ``SuccessfulRescale`` event says why; ``status`` (current and desired replicas, current
   metrics, lastScaleTime, conditions AbleToScale / ScalingActive / ScalingLimited) is
   written through the status subresource.

A target scaled to zero by hand (with minReplicas above zero) is left alone: autoscaling is
disabled until it is scaled up again, as in Kubernetes. If some metrics cannot be read, the
others may still scale up but never down. Recommendation and scale-event history lives in
memory; after a restart the scale-down window starts again from the current count.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal

from kumo.client import ApiException
from kumo.model.autoscaling import HorizontalPodAutoscaler
from kumo.model.core import Pod
from kumo.model.registry import by_kind
from kumo.model.selectors import SelectorError, parse_label_selector
from kumo.model.validation import parse_quantity
from kumo.platform.controllers.controller_utils import (
    Obj,
    find_condition,
    format_time,
    int_value,
    labels_of,
    name_of,
    namespace_of,
    parse_time,
    spec,
    status,
    utcnow,
)
from kumo.platform.controllers.informer import EventHandler, object_key, split_key
from kumo.platform.controllers.replicacalculator import (
    DEFAULT_TOLERANCE,
    PodSample,
    Recommendation,
    ResourceMetricError,
    replicas_for_resource,
)
from kumo.platform.controllers.runner import Controller, Result, write_status
from kumo.platform.controllers.scalingbehavior import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Limited,
    Timestamped,
    limit_rate,
    rules_from,
    stabilize,
)
from kumo.platform.controllers.workload import EventRecorder

log = logging.getLogger(__name__)

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
DEFAULT_SYNC_PERIOD = 15.0


def sync_period_from_environment() -> float:
    """``KUMO_HPA_SYNC_PERIOD`` (set by ``--horizontal-pod-autoscaler-sync-period``)."""
    try:
        value = float(os.environ.get("KUMO_HPA_SYNC_PERIOD", DEFAULT_SYNC_PERIOD))
    except ValueError:
        return DEFAULT_SYNC_PERIOD
    return value if value > 0 else DEFAULT_SYNC_PERIOD


def to_milli(quantity: object) -> int:
    """A quantity in milli-units (``"250m"`` cpu -> 250, ``"64Mi"`` -> 67108864000)."""
    return int(parse_quantity(str(quantity)) * Decimal(1000))


def format_milli(resource: str, milli: int) -> str:
    if resource == "cpu":
        return f"{milli}m"
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _window(text: object) -> datetime.timedelta:
    try:
        return datetime.timedelta(seconds=float(str(text).rstrip("s")))
    except ValueError:
        return datetime.timedelta(0)


def pod_samples(items: list[Obj], resource: str, container: str | None) -> dict[str, PodSample]:
    """PodMetrics (metrics.k8s.io) as one sample per pod name: the sum over its containers,
    or only ``container``'s usage (a pod without that container has no sample)."""
    samples: dict[str, PodSample] = {}
    for item in items:
        timestamp = parse_time(item.get("timestamp"))
        if timestamp is None:
            continue
        total = 0
        found = False
        for entry in item.get("containers") or []:
            if container is not None and entry.get("name") != container:
                continue
            usage = (entry.get("usage") or {}).get(resource)
            if usage is None:
                continue
            try:
                total += to_milli(usage)
            except ValueError:
                continue
            found = True
        if found:
            samples[name_of(item)] = PodSample(total, timestamp, _window(item.get("window")))
    return samples


def pod_requests(pods: list[Obj], resource: str, container: str | None) -> dict[str, int | None]:
    """Each pod's request of ``resource`` (milli-units), summed over its containers or only
    ``container``'s; None when a counted container requests none."""
    out: dict[str, int | None] = {}
    for pod in pods:
        total: int | None = 0
        for entry in spec(pod).get("containers") or []:
            if container is not None and entry.get("name") != container:
                continue
            request = ((entry.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                total = None
                break
            try:
                assert total is not None
                total += to_milli(request)
            except ValueError:
                total = None
                break
        out[name_of(pod)] = total
    return out


@dataclass(slots=True)
class MetricOutcome:
    """One metric's proposal, or why it has none."""

    replicas: int | None
    status: Obj | None  # for status.currentMetrics
    description: str  # "cpu resource utilization (percentage of request)"
    error_reason: str = ""
    error: str = ""


class Conditions:
    """An HPA's conditions being updated: a condition keeps its lastTransitionTime while its
    status stays the same, whatever its reason and message become."""

    def __init__(self, current: list[Obj], now: datetime.datetime) -> None:
        self.items = [dict(c) for c in current if isinstance(c, dict)]
        self.now = now

    def set(self, kind: str, state: str, reason: str, message: str) -> None:
        condition: Obj = {
            "type": kind,
            "status": state,
            "reason": reason,
            "message": message,
            "lastTransitionTime": format_time(self.now),
        }
        current = find_condition(self.items, kind)
        if current is None:
            self.items.append(condition)
            return
        if current.get("status") == state:
            condition["lastTransitionTime"] = current.get("lastTransitionTime")
        self.items = [condition if c is current else c for c in self.items]


@dataclass(slots=True)
class History:
    recommendations: list[Timestamped] = field(default_factory=list)
    scale_up_events: list[Timestamped] = field(default_factory=list)
    scale_down_events: list[Timestamped] = field(default_factory=list)


class HorizontalPodAutoscalerController(Controller):
    """Queue keys are ``namespace/name`` of HorizontalPodAutoscalers."""

    name = "horizontalpodautoscaling"
    workers = 2
    tolerance = DEFAULT_TOLERANCE

    def setup(self) -> None:
        self.sync_period = sync_period_from_environment()
        self.hpas = self.informers.informer(HorizontalPodAutoscaler)
        self.hpas.add_event_handler(
            EventHandler(
                on_add=self.enqueue,
                on_update=self._spec_changed,
                on_delete=self._deleted,
            )
        )
        self.pods = self.informers.informer(Pod)
        self.events = EventRecorder(self.client, "horizontal-pod-autoscaler")
        self.history: dict[str, History] = {}

    def _spec_changed(self, old: Obj, new: Obj) -> None:
        # Our own status writes need no reconcile; the periodic resync follows the metrics.
        if spec(old) != spec(new):
            self.enqueue(new)

    def _deleted(self, obj: Obj) -> None:
        self.history.pop(object_key(obj), None)

    async def reconcile(self, key: str) -> Result | None:
        namespace, name = split_key(key)
        hpa = self.hpas.get(namespace, name)
        if hpa is None:
            self.history.pop(key, None)
            return None
        await self._reconcile(key, copy.deepcopy(hpa))
        return Result(requeue_after=self.sync_period)

    # ---- one pass ---------------------------------------------------------------------------

    async def _reconcile(self, key: str, hpa: Obj) -> None:
        conditions = Conditions(list(status(hpa).get("conditions") or []), utcnow())
        hpa_spec = spec(hpa)
        target = hpa_spec.get("scaleTargetRef") or {}
        reference = f"{target.get('kind')}/{target.get('name')}"
        scale_path = self._scale_path(target, namespace_of(hpa))
        try:
            if scale_path is None:
                raise ValueError(
                    f"no resource {target.get('apiVersion')}/{target.get('kind')} "
                    f"with a scale subresource"
                )
            scale = (await self.client.request("GET", scale_path)).json()
        except (ApiException, ValueError) as exc:
            message = f"the HPA controller was unable to get the target's current scale: {exc}"
            self.events.warning(hpa, "FailedGetScale", message)
            conditions.set("AbleToScale", "False", "FailedGetScale", message)
            await self._write_status(hpa, conditions)
            return
        assert scale_path is not None
        conditions.set(
            "AbleToScale", "True", "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )  # fmt: skip
        current = int_value(spec(scale).get("replicas"))
        min_replicas = int_value(hpa_spec.get("minReplicas"), 1)
        max_replicas = int_value(hpa_spec.get("maxReplicas"), 1)
        history = self.history.setdefault(key, History())
        metrics_status: list[Obj] = []
        if current == 0 and min_replicas != 0:
            conditions.set(
                "ScalingActive", "False", "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )  # fmt: skip
            await self._write_status(hpa, conditions, current=0, desired=0)
            return
        if current > max_replicas:
            desired, reason = max_replicas, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_replicas:
            desired, reason = min_replicas, "Current number of replicas below Spec.MinReplicas"
        else:
            proposal = await self._replicas_for_metrics(hpa, scale, current, conditions.now)
            metrics_status = proposal.metrics_status
            if proposal.replicas is None:
                conditions.set("ScalingActive", "False", proposal.error_reason, proposal.error)
                self.events.warning(hpa, proposal.error_reason, proposal.error)
                await self._write_status(
                    hpa, conditions, current=current, desired=current,
                    metrics_status=metrics_status,
                )  # fmt: skip
                return
            conditions.set(
                "ScalingActive", "True", "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from "
                f"{proposal.description}",
            )  # fmt: skip
            if proposal.error:  # some metrics failed: the others may scale up, never down
                self.events.warning(hpa, proposal.error_reason, proposal.error)
            desired, limited, stabilization = self._normalize(
                hpa, history, proposal.replicas, current
            )
            conditions.set("AbleToScale", "True", *stabilization)
            if proposal.error and desired < current:
                desired = current
            reason = proposal.reason
            if limited.reason:
                conditions.set("ScalingLimited", "True", limited.reason, limited.message)
            else:
                conditions.set(
                    "ScalingLimited", "False", "DesiredWithinRange",
                    "the desired count is within the acceptable range",
                )  # fmt: skip
        if desired == current:
            await self._write_status(
                hpa, conditions, current=current, desired=desired, metrics_status=metrics_status
            )
            return
        try:
            await self._update_scale(scale_path, scale, desired)
        except ApiException as exc:
            message = f"the HPA controller was unable to update the target scale: {exc}"
            self.events.warning(hpa, "FailedRescale", f"New size: {desired}; error: {exc}")
            conditions.set("AbleToScale", "False", "FailedUpdateScale", message)
            await self._write_status(
                hpa, conditions, current=current, desired=current, metrics_status=metrics_status
            )
            raise
        change, stamp = desired - current, time.monotonic()
        if change > 0:
            history.scale_up_events.append(Timestamped(change, stamp))
        else:
            history.scale_down_events.append(Timestamped(-change, stamp))
        conditions.set(
            "AbleToScale", "True", "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
        )  # fmt: skip
        self.events.normal(hpa, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
        log.info("%s: %s scaled from %d to %d (%s)", key, reference, current, desired, reason)
        await self._write_status(
            hpa, conditions, current=current, desired=desired, metrics_status=metrics_status,
            rescaled=True,
        )  # fmt: skip

    def _scale_path(self, target: Obj, namespace: str) -> str | None:
        info = by_kind(str(target.get("apiVersion") or ""), str(target.get("kind") or ""))
        name = str(target.get("name") or "")
        if info is None or "scale" not in info.subresources or not name:
            return None
        return info.path(namespace if info.namespaced else None, name, "scale")

    async def _update_scale(self, path: str, scale: Obj, replicas: int) -> None:
        body = {
            "apiVersion": scale.get("apiVersion", "autoscaling/v1"),
            "kind": "Scale",
            "metadata": {
                "name": name_of(scale),
                "namespace": namespace_of(scale),
                "resourceVersion": (scale.get("metadata") or {}).get("resourceVersion"),
            },
            "spec": {"replicas": replicas},
        }
        await self.client.request("PUT", path, body=body)

    def _normalize(
        self, hpa: Obj, history: History, proposed: int, current: int
    ) -> tuple[int, Limited, tuple[str, str]]:
        """The stabilized, rate-limited count; why it is limited; the AbleToScale reason and
        message saying whether stabilization changed the proposal."""
        behavior = spec(hpa).get("behavior") or {}
        up = rules_from(behavior.get("scaleUp"), DEFAULT_SCALE_UP)
        down = rules_from(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN)
        clock = time.monotonic()
        if not history.recommendations and down.stabilization_window_seconds > 0:
            # A new HPA (or a restarted controller) scales down only after a full window.
            history.recommendations.append(Timestamped(current, clock))
        stabilized = stabilize(
            proposed, current, history.recommendations, up=up, down=down, now=clock
        )
        history.recommendations.append(Timestamped(proposed, clock))
        longest = max(up.stabilization_window_seconds, down.stabilization_window_seconds)
        history.recommendations = [r for r in history.recommendations if r.at > clock - longest]
        longest_period = max(
            [p.period_seconds for p in (*up.policies, *down.policies)] or [0]
        )  # fmt: skip
        for events in ("scale_up_events", "scale_down_events"):
            kept = [e for e in getattr(history, events) if e.at > clock - longest_period]
            setattr(history, events, kept)
        min_replicas = int_value(spec(hpa).get("minReplicas"), 1)
        max_replicas = int_value(spec(hpa).get("maxReplicas"), 1)
        limited = limit_rate(
            stabilized, current, min_replicas=min_replicas, max_replicas=max_replicas,
            up_events=history.scale_up_events, down_events=history.scale_down_events,
            up=up, down=down, now=clock,
        )  # fmt: skip
        if stabilized > proposed:
            stabilization = (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest "
                "recent recommendation",
            )
        elif stabilized < proposed:
            stabilization = (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent "
                "recommendation",
            )
        else:
            stabilization = ("ReadyForNewScale", "recommended size matches current size")
        return limited.replicas, limited, stabilization

    # ---- metrics ----------------------------------------------------------------------------

    async def _replicas_for_metrics(
        self, hpa: Obj, scale: Obj, current: int, now: datetime.datetime
    ) -> _Proposal:
        selector_text = str(status(scale).get("selector") or "")
        proposal = _Proposal()
        if not selector_text:
            proposal.error_reason = "InvalidSelector"
            proposal.error = "the HPA target's scale is missing a selector"
            return proposal
        try:
            selector = parse_label_selector(selector_text)
        except SelectorError as exc:
            proposal.error_reason = "InvalidSelector"
            proposal.error = (
                f"couldn't convert selector into a corresponding internal selector object: {exc}"
            )
            return proposal
        namespace = namespace_of(hpa)
        pods = [p for p in self.pods.list(namespace) if selector.matches(labels_of(p))]
        metric_items: list[Obj] | None = None
        metric_error = ""
        failures = 0
        metrics = spec(hpa).get("metrics") or []
        for metric in metrics:
            kind = str(metric.get("type") or "")
            if kind not in ("Resource", "ContainerResource"):
                failures += 1
                proposal.error_reason = f"FailedGet{kind}Metric"
                proposal.error = (
                    f"unable to get metric of type {kind}: kumo serves no custom or external "
                    f"metrics API (custom.metrics.k8s.io, external.metrics.k8s.io); use "
                    f"Resource or ContainerResource metrics"
                )
                continue
            if metric_items is None and not metric_error:
                try:
                    response = await self.client.request(
                        "GET",
                        METRICS_PATH.format(namespace=namespace),
                        params={"labelSelector": selector_text},
                    )
                    metric_items = list(response.json().get("items") or [])
                except ApiException as exc:
                    metric_error = str(exc)
            outcome = self._resource_metric(
                metric, pods, items=metric_items, metric_error=metric_error, current=current,
                now=now,
            )  # fmt: skip
            if outcome.status is not None:
                proposal.metrics_status.append(outcome.status)
            if outcome.replicas is None:
                failures += 1
                proposal.error_reason, proposal.error = outcome.error_reason, outcome.error
                continue
            if proposal.replicas is None or outcome.replicas > proposal.replicas:
                proposal.replicas = outcome.replicas
                proposal.description = outcome.description
                direction = "above" if outcome.replicas > current else "below"
                proposal.reason = f"{outcome.description} {direction} target"
        if proposal.replicas is not None and proposal.replicas < current:
            proposal.reason = "All metrics below target"
        if failures and failures >= len(metrics):
            proposal.replicas = None
        if not metrics:
            proposal.error_reason = "InvalidMetricSourceType"
            proposal.error = "the HPA has no metrics"
        return proposal

    def _resource_metric(
        self,
        metric: Obj,
        pods: list[Obj],
        *,
        items: list[Obj] | None,
        metric_error: str,
        current: int,
        now: datetime.datetime,
    ) -> MetricOutcome:
        kind = str(metric.get("type"))
        source = metric.get("resource" if kind == "Resource" else "containerResource") or {}
        resource = str(source.get("name") or "")
        container = str(source.get("container") or "") if kind == "ContainerResource" else None
        target = source.get("target") or {}
        target_type = str(target.get("type") or "")
        scope = f"container {container} " if container else ""
        description = (
            f"{resource} {scope}resource utilization (percentage of request)"
            if target_type == "Utilization"
            else f"{resource} {scope}resource"
        )
        failed = f"FailedGet{kind}Metric"
        if items is None:
            return MetricOutcome(
                None, None, description, failed,
                f"failed to get {resource} utilization: unable to get metrics for resource "
                f"{resource}: {metric_error}",
            )  # fmt: skip
        samples = pod_samples(items, resource, container)
        requests = pod_requests(pods, resource, container)
        try:
            if target_type == "Utilization":
                utilization = int_value(target.get("averageUtilization"))
                result: Recommendation = replicas_for_resource(
                    current, pods, samples, requests, resource,
                    target_utilization=utilization, now=now, tolerance=self.tolerance,
                    what=f"container {container} of " if container else "",
                )  # fmt: skip
            elif target_type == "AverageValue":
                result = replicas_for_resource(
                    current, pods, samples, requests, resource,
                    target_average=to_milli(target.get("averageValue")), now=now,
                    tolerance=self.tolerance,
                )  # fmt: skip
            else:
                raise ResourceMetricError(
                    f"invalid target type {target_type!r} for a {kind} metric: "
                    f"use Utilization or AverageValue"
                )
        except (ResourceMetricError, ValueError) as exc:
            return MetricOutcome(
                None, None, description, failed,
                f"failed to get {resource} utilization: {exc}",
            )  # fmt: skip
        current_value: Obj = {"averageValue": format_milli(resource, result.average_usage)}
        if result.utilization is not None:
            current_value["averageUtilization"] = result.utilization
        entry: Obj = {"name": resource, "current": current_value}
        if container:
            entry["container"] = container
        key = "resource" if kind == "Resource" else "containerResource"
        return MetricOutcome(result.replicas, {"type": kind, key: entry}, description)

    # ---- status -----------------------------------------------------------------------------

    async def _write_status(
        self,
        hpa: Obj,
        conditions: Conditions,
        *,
        current: int | None = None,
        desired: int | None = None,
        metrics_status: list[Obj] | None = None,
        rescaled: bool = False,
    ) -> None:
        """Status from this pass; nothing is written when it did not change."""
        old = status(hpa)
        new: Obj = {
            "observedGeneration": (hpa.get("metadata") or {}).get("generation"),
            "currentReplicas": current if current is not None else old.get("currentReplicas"),
            "desiredReplicas": desired if desired is not None else old.get("desiredReplicas", 0),
            "conditions": conditions.items,
        }
        if metrics_status:
            new["currentMetrics"] = metrics_status
        last_scale = format_time(conditions.now) if rescaled else old.get("lastScaleTime")
        if last_scale:
            new["lastScaleTime"] = last_scale
        new = {k: v for k, v in new.items() if v is not None}
        if new == old:
            return
        hpa["status"] = new
        try:
            await write_status(self.client, hpa)
        except ApiException as exc:
            if exc.not_found:
                return
            raise

    async def drain_events(self) -> None:
        """Tests: wait for the events handed to the recorder."""
        await self.events.flush()


@dataclass(slots=True)
class _Proposal:
    replicas: int | None = None
    description: str = ""
    reason: str = ""
    error_reason: str = ""
    error: str = ""
    metrics_status: list[Obj] = field(default_factory=list)
