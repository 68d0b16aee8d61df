"""The HPA's replica arithmetic (kumo.platform.controllers.replicacalculator), table-driven,
with the cases of Kubernetes' replica_calculator_test where they apply."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kumo.platform.controllers.replicacalculator import (
    PodSample,
    ResourceMetricError,
    group_pods,
    replicas_for_resource,
)

NOW = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.UTC)
WINDOW = datetime.timedelta(seconds=10)
OLD = NOW - datetime.timedelta(minutes=30)  # started long before: past cpu initialization


def stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    started: datetime.datetime = OLD,
    ready_since: datetime.datetime | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = stamp(NOW)
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "app"}]},
        "status": {
            "phase": phase,
            "startTime": stamp(started),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": stamp(ready_since or started),
                }
            ],
        },
    }


def sample(usage: int, at: datetime.datetime = NOW) -> PodSample:
    return PodSample(usage, at, WINDOW)


def names(count: int) -> list[str]:
    return [f"p{i}" for i in range(count)]


# (case, current replicas, pods, usage by pod (millicores), request per pod, target %, expected
#  replicas, expected utilization)
UTILIZATION_CASES = [
    ("scale up", 3, names(3), [300, 500, 700], 1000, 30, 5, 50),
    ("scale down", 5, names(5), [100, 300, 500, 250, 250], 1000, 50, 3, 28),
    ("within tolerance", 3, names(3), [1010, 1030, 1020], 1000, 100, 3, 102),
    ("just outside tolerance", 3, names(3), [1120, 1120, 1120], 1000, 100, 4, 112),
    ("exact target", 4, names(4), [500, 500, 500, 500], 1000, 50, 4, 50),
    ("idle scales to one", 4, names(4), [0, 0, 0, 0], 100, 50, 0, 0),
]


@pytest.mark.parametrize(
    (
        "case",
        "current",
        "pod_names",
        "usage",
        "per_pod_request",
        "target",
        "replicas",
        "utilization",
    ),
    UTILIZATION_CASES,
    ids=[c[0] for c in UTILIZATION_CASES],
)
def test_utilization_targets(
    case: str,
    current: int,
    pod_names: list[str],
    usage: list[int],
    per_pod_request: int,
    target: int,
    replicas: int,
    utilization: int,
) -> None:
    pods = [pod(n) for n in pod_names]
    samples = {n: sample(u) for n, u in zip(pod_names, usage, strict=True)}
    result = replicas_for_resource(
        current,
        pods,
        samples,
        dict.fromkeys(pod_names, per_pod_request),
        "cpu",
        target_utilization=target,
        now=NOW,
    )
    assert (result.replicas, result.utilization) == (replicas, utilization), case


def test_missing_pods_are_assumed_at_their_request_when_scaling_down() -> None:
    # Two pods report 10%, a third has no sample: assumed at 100% it keeps the ratio above
    # target, so the HPA does not scale down on the guess.
    pods = [pod("a"), pod("b"), pod("c")]
    samples = {"a": sample(100), "b": sample(100)}
    result = replicas_for_resource(
        3, pods, samples, dict.fromkeys("abc", 1000), "cpu", target_utilization=50, now=NOW
    )
    assert result.replicas == 3


def test_missing_pods_count_as_idle_when_scaling_up() -> None:
    # 4 pods at 100% of request against a 50% target, 2 more without samples (0%): ratio
    # 4*100/6/50 = 1.33 -> ceil(1.33*6) = 8.
    pods = [pod(n) for n in "abcdef"]
    samples = {n: sample(1000) for n in "abcd"}
    result = replicas_for_resource(
        6, pods, samples, dict.fromkeys("abcdef", 1000), "cpu", target_utilization=50, now=NOW
    )
    assert result.replicas == 8


def test_unready_pods_are_assumed_idle_only_for_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c", phase="Pending")]
    hot = {"a": sample(900), "b": sample(900)}
    up = replicas_for_resource(
        3, pods, hot, dict.fromkeys("abc", 1000), "cpu", target_utilization=50, now=NOW
    )
    # ratio from ready pods 90/50 = 1.8; with the pending pod at 0: 60/50 = 1.2 -> ceil(3.6)
    assert up.replicas == 4
    cold = {"a": sample(100), "b": sample(100)}
    down = replicas_for_resource(
        3, pods, cold, dict.fromkeys("abc", 1000), "cpu", target_utilization=50, now=NOW
    )
    # scaling down ignores unready pods: ceil(0.2 * 2 ready pods) = 1
    assert down.replicas == 1


def test_a_guess_that_flips_direction_keeps_the_current_count() -> None:
    # Ready pods say scale up (60% vs 50%), but counting two missing pods at 0% the ratio
    # falls below 1: the HPA does nothing rather than act on the guess.
    pods = [pod(n) for n in "abcd"]
    samples = {"a": sample(600), "b": sample(600)}
    result = replicas_for_resource(
        4, pods, samples, dict.fromkeys("abcd", 1000), "cpu", target_utilization=50, now=NOW
    )
    assert result.replicas == 4


def test_deleted_and_failed_pods_are_ignored() -> None:
    pods = [pod("a"), pod("b", deleting=True), pod("c", phase="Failed")]
    samples = {"a": sample(1000), "b": sample(0), "c": sample(0)}
    result = replicas_for_resource(
        3, pods, samples, dict.fromkeys("abc", 1000), "cpu", target_utilization=50, now=NOW
    )
    assert (result.replicas, result.utilization) == (2, 100)


def test_average_value_target() -> None:
    # memory: 3 pods averaging 300Mi against a 200Mi target per pod -> ceil(1.5 * 3) = 5
    mib = 1024 * 1024 * 1000
    pods = [pod(n) for n in "abc"]
    samples = {"a": sample(200 * mib), "b": sample(300 * mib), "c": sample(400 * mib)}
    result = replicas_for_resource(
        3, pods, samples, {}, "memory", target_average=200 * mib, now=NOW
    )
    assert (result.replicas, result.utilization, result.average_usage) == (5, None, 300 * mib)


@pytest.mark.parametrize(
    ("pods", "samples", "requests", "message"),
    [
        ([], {}, {}, "no pods returned by selector"),
        ([pod("a")], {}, {"a": 100}, "did not receive metrics for targeted pods"),
        ([pod("a")], {"a": sample(10)}, {"a": None}, "missing request for cpu in pod a"),
    ],
    ids=["no pods", "no metrics", "no request"],
)
def test_errors_say_what_is_missing(
    pods: list[dict[str, Any]],
    samples: dict[str, PodSample],
    requests: dict[str, int | None],
    message: str,
) -> None:
    with pytest.raises(ResourceMetricError, match=message):
        replicas_for_resource(1, pods, samples, requests, "cpu", target_utilization=50, now=NOW)


# (case, pod, sample time, expected group)
READINESS_CASES = [
    ("old and ready", pod("p"), NOW, "ready"),
    ("pending", pod("p", phase="Pending"), NOW, "unready"),
    (
        "young, sample after readiness + window",
        pod("p", started=NOW - datetime.timedelta(minutes=1)),
        NOW,
        "ready",
    ),
    (
        "young, sample overlaps start-up",
        pod(
            "p",
            started=NOW - datetime.timedelta(minutes=1),
            ready_since=NOW - datetime.timedelta(seconds=5),
        ),
        NOW,
        "unready",
    ),
    (
        "young, not ready",
        pod("p", started=NOW - datetime.timedelta(minutes=1), ready=False),
        NOW,
        "unready",
    ),
    (
        "old, never became ready soon after start",
        pod("p", ready=False, ready_since=OLD + datetime.timedelta(seconds=10)),
        NOW,
        "unready",
    ),
    (
        "old, went unready later",
        pod("p", ready=False, ready_since=OLD + datetime.timedelta(minutes=10)),
        NOW,
        "ready",
    ),
]


@pytest.mark.parametrize(
    ("case", "the_pod", "at", "group"), READINESS_CASES, ids=[c[0] for c in READINESS_CASES]
)
def test_cpu_readiness_grouping(
    case: str, the_pod: dict[str, Any], at: datetime.datetime, group: str
) -> None:
    ready, unready, missing = group_pods([the_pod], {"p": sample(1, at)}, "cpu", now=NOW)
    found = "ready" if ready else "unready" if unready else "missing" if missing else "ignored"
    assert found == group, case


def test_memory_ignores_cpu_readiness_rules() -> None:
    young = pod("p", started=NOW - datetime.timedelta(minutes=1), ready=False)
    ready, unready, _ = group_pods([young], {"p": sample(1)}, "memory", now=NOW)
    assert (ready, unready) == (["p"], [])
