"""The pure helpers of the HPA controller (kumo.platform.controllers.horizontal): reading
PodMetrics and requests, quantities, conditions."""

from __future__ import annotations

import datetime

import pytest

from kumo.platform.controllers.horizontal import (
    Conditions,
    format_milli,
    pod_requests,
    pod_samples,
    to_milli,
)

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("quantity", "milli"),
    [("250m", 250), ("1", 1000), ("1500000n", 1), ("64Mi", 64 * 1024 * 1024 * 1000), (2, 2000)],
)
def test_to_milli(quantity: object, milli: int) -> None:
    assert to_milli(quantity) == milli


def test_format_milli() -> None:
    assert format_milli("cpu", 149) == "149m"
    assert format_milli("memory", 64 * 1024 * 1024 * 1000) == str(64 * 1024 * 1024)
    assert format_milli("memory", 1500) == "1500m"


METRICS = [
    {
        "metadata": {"name": "a"},
        "timestamp": "2026-11-29T12:00:00Z",
        "window": "10.000s",
        "containers": [
            {"name": "app", "usage": {"cpu": "120000000n", "memory": "1024Ki"}},
            {"name": "sidecar", "usage": {"cpu": "30m", "memory": "2048Ki"}},
        ],
    },
    {"metadata": {"name": "no-time"}, "containers": [{"name": "app", "usage": {"cpu": "1m"}}]},
    {
        "metadata": {"name": "b"},
        "timestamp": "2026-11-29T12:00:00Z",
        "window": "10s",
        "containers": [{"name": "sidecar", "usage": {"cpu": "5m"}}],
    },
]


def test_pod_samples_sum_containers_or_take_one() -> None:
    whole = pod_samples(METRICS, "cpu", None)
    assert {name: s.usage for name, s in whole.items()} == {"a": 150, "b": 5}
    assert whole["a"].timestamp == NOW
    assert whole["a"].window == datetime.timedelta(seconds=10)
    # a pod without the named container has no sample
    assert {n: s.usage for n, s in pod_samples(METRICS, "cpu", "app").items()} == {"a": 120}
    assert pod_samples(METRICS, "memory", None)["a"].usage == 3 * 1024 * 1024 * 1000


def pod(name: str, *containers: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"containers": list(containers)}}


def test_pod_requests_need_every_counted_container() -> None:
    pods = [
        pod(
            "both",
            {"name": "app", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "sidecar", "resources": {"requests": {"cpu": "50m"}}},
        ),
        pod(
            "half",
            {"name": "app", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "sidecar"},
        ),
    ]
    assert pod_requests(pods, "cpu", None) == {"both": 150, "half": None}
    assert pod_requests(pods, "cpu", "app") == {"both": 100, "half": 100}


def test_conditions_keep_the_transition_time_while_the_status_holds() -> None:
    earlier = NOW - datetime.timedelta(minutes=5)
    conditions = Conditions(
        [
            {
                "type": "ScalingActive",
                "status": "True",
                "reason": "ValidMetricFound",
                "message": "old",
                "lastTransitionTime": "2026-11-29T11:55:00Z",
            }
        ],
        NOW,
    )
    conditions.set("ScalingActive", "True", "ValidMetricFound", "new message")
    conditions.set("AbleToScale", "True", "SucceededGetScale", "ok")
    active, able = conditions.items
    assert active["message"] == "new message"
    assert active["lastTransitionTime"] == earlier.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert able["lastTransitionTime"] == "2026-11-29T12:00:00Z"
    conditions.set("ScalingActive", "False", "FailedGetResourceMetric", "no metrics")
    assert conditions.items[0]["lastTransitionTime"] == "2026-11-29T12:00:00Z"
    assert [c["type"] for c in conditions.items] == ["ScalingActive", "AbleToScale"]
