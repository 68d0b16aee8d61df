"""Pure ReplicaSet logic: Kubernetes' ranking of pods for scale-down, slow-start batches, pods
from templates, and the status a ReplicaSet reports."""

from __future__ import annotations

import datetime
import random
from typing import Any

from kumo.platform.controllers.controller_utils import (
    POD_DELETION_COST,
    find_condition,
    format_time,
    is_pod_available,
    label_selector,
    pod_from_template,
    pods_to_delete,
    rank_pods_for_deletion,
    set_condition,
    slow_start_batches,
)
from kumo.platform.controllers.replicaset import replica_set_status

Obj = dict[str, Any]
NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def ago(seconds: float) -> str:
    return format_time(NOW - datetime.timedelta(seconds=seconds))


def pod(
    name: str,
    *,
    node: str | None = "n1",
    phase: str = "Running",
    ready: bool = True,
    ready_for: float = 600,
    created: float = 3600,
    restarts: int = 0,
    cost: int | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    conditions = [
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": ago(ready_for),
        }
    ]
    meta: Obj = {
        "name": name,
        "uid": f"uid-{name}",
        "creationTimestamp": ago(created),
        "labels": labels or {"app": "web"},
    }
    if cost is not None:
        meta["annotations"] = {POD_DELETION_COST: str(cost)}
    return {
        "metadata": meta,
        "spec": {"nodeName": node} if node else {},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"name": "main", "restartCount": restarts}],
        },
    }


def order(
    pods: list[Obj], related: list[Obj] | None = None, logarithmic: bool = False
) -> list[str]:
    shuffled = list(pods)
    random.Random(7).shuffle(shuffled)
    ranked = rank_pods_for_deletion(shuffled, related or [], now=NOW, logarithmic=logarithmic)
    return [p["metadata"]["name"] for p in ranked]


def test_unscheduled_before_scheduled() -> None:
    assert order([pod("bound"), pod("floating", node=None, phase="Pending", ready=False)]) == [
        "floating",
        "bound",
    ]


def test_pending_then_unknown_then_running() -> None:
    pods = [pod("run"), pod("pend", phase="Pending"), pod("unk", phase="Unknown")]
    assert order(pods) == ["pend", "unk", "run"]


def test_not_ready_before_ready() -> None:
    assert order([pod("ready"), pod("sick", ready=False)]) == ["sick", "ready"]


def test_lower_deletion_cost_first() -> None:
    pods = [pod("precious", cost=100), pod("cheap", cost=-5), pod("plain")]
    assert order(pods) == ["cheap", "plain", "precious"]


def test_doubled_up_pods_first() -> None:
    crowded = pod("crowded", node="busy")
    alone = pod("alone", node="quiet")
    related = [crowded, alone, pod("x", node="busy"), pod("y", node="busy")]
    assert order([alone, crowded], related) == ["crowded", "alone"]


def test_ready_more_recently_first() -> None:
    pods = [pod("veteran", ready_for=3000), pod("rookie", ready_for=10)]
    assert order(pods) == ["rookie", "veteran"]


def test_more_restarts_first() -> None:
    pods = [pod("steady", ready_for=100), pod("crashy", ready_for=100, restarts=4)]
    assert order(pods) == ["crashy", "steady"]


def test_newest_first() -> None:
    pods = [pod("old", ready_for=100, created=5000), pod("new", ready_for=100, created=200)]
    assert order(pods) == ["new", "old"]


def test_logarithmic_buckets_break_ties_by_uid() -> None:
    # 100 s and 101 s old fall in the same log2 bucket: uid decides, not exact age.
    same_bucket = [
        pod("b", ready=False, created=100),
        pod("a", ready=False, created=101),
    ]
    assert order(same_bucket, logarithmic=True) == ["a", "b"]
    assert order(same_bucket, logarithmic=False) == ["b", "a"]
    far_apart = [pod("young", ready=False, created=10), pod("elder", ready=False, created=10000)]
    assert order(far_apart, logarithmic=True) == ["young", "elder"]


def test_pods_to_delete_counts() -> None:
    pods = [pod("a"), pod("b", ready=False), pod("c", node=None, phase="Pending", ready=False)]
    assert [p["metadata"]["name"] for p in pods_to_delete(pods, 2, now=NOW)] == ["c", "b"]
    assert pods_to_delete(pods, 0) == []
    assert len(pods_to_delete(pods, 5)) == 3


def test_slow_start_batches() -> None:
    assert slow_start_batches(10) == [1, 2, 4, 3]
    assert slow_start_batches(1) == [1]
    assert slow_start_batches(0) == []
    assert sum(slow_start_batches(500)) == 500


def test_pod_from_template() -> None:
    owner = {"metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"}}
    template = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["x"]},
        "spec": {"containers": [{"name": "main", "image": "web:1"}]},
    }
    ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-abc",
        "uid": "u1",
        "controller": True,
    }
    made = pod_from_template(template, owner, ref, extra_finalizers=["y"])
    assert made["metadata"] == {
        "generateName": "web-abc-",
        "namespace": "ns",
        "ownerReferences": [ref],
        "labels": {"app": "web"},
        "annotations": {"a": "b"},
        "finalizers": ["x", "y"],
    }
    assert made["spec"] == template["spec"] and made["spec"] is not template["spec"]


def test_availability_honours_min_ready_seconds() -> None:
    fresh = pod("fresh", ready_for=5)
    assert is_pod_available(fresh, 0, NOW)
    assert not is_pod_available(fresh, 10, NOW)
    assert is_pod_available(pod("old", ready_for=11), 10, NOW)
    assert not is_pod_available(pod("sick", ready=False), 0, NOW)


def rs(replicas: int = 3, min_ready: int = 0, conditions: list[Obj] | None = None) -> Obj:
    return {
        "metadata": {"name": "web", "generation": 4},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}},
        },
        "status": {"conditions": conditions} if conditions else {},
    }


def test_replica_set_status() -> None:
    pods = [
        pod("a", labels={"app": "web", "tier": "front"}, ready_for=60),
        pod("b", labels={"app": "web"}, ready_for=5),
        pod("c", ready=False, labels={"app": "web", "tier": "front"}),
    ]
    status = replica_set_status(rs(min_ready=10), pods, NOW)
    assert status == {
        "replicas": 3,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "observedGeneration": 4,
    }


def test_replica_failure_condition_comes_and_goes() -> None:
    failing = replica_set_status(rs(3), [], NOW, "quota exceeded")
    condition = find_condition(failing["conditions"], "ReplicaFailure")
    assert condition is not None
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "FailedCreate",
        "quota exceeded",
    )
    recovered = replica_set_status(rs(3, conditions=failing["conditions"]), [], NOW)
    assert "conditions" not in recovered
    deleting = replica_set_status(rs(0), [pod("a")], NOW, "forbidden")
    condition = find_condition(deleting["conditions"], "ReplicaFailure")
    assert condition is not None and condition["reason"] == "FailedDelete"


def test_set_condition_keeps_transition_time_when_only_the_reason_changes() -> None:
    first = {"type": "Progressing", "status": "True", "reason": "A", "lastTransitionTime": "t1"}
    same = set_condition([first], {**first, "lastTransitionTime": "t2"})
    assert same == [first]
    moved = set_condition([first], {**first, "reason": "B", "lastTransitionTime": "t2"})
    assert moved == [{**first, "reason": "B", "lastTransitionTime": "t1"}]
    flipped = set_condition([first], {**first, "status": "False", "lastTransitionTime": "t3"})
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_label_selector_parsing() -> None:
    selector = label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
        }
    )
    assert selector.matches({"app": "web", "tier": "front"})
    assert not selector.matches({"app": "web", "tier": "db"})
    assert not label_selector(None).matches({"app": "web"})
    assert not label_selector({"matchExpressions": [{"key": "x", "operator": "Bogus"}]}).matches({})
    assert label_selector({}).matches({"anything": "x"})
