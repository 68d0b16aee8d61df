"""Pure logic of the Endpoints, Job and node lifecycle controllers, and of the workload CLI
helpers (durations, kubectl drain's filters, event order)."""

from __future__ import annotations

import datetime
import random
from typing import Any

import click
import pytest

from kumo.cli.workload_commands import drain_plan, parse_duration, sort_events
from kumo.platform.controllers.controller_utils import format_time
from kumo.platform.controllers.endpoints import (
    build_subsets,
    endpoints_labels,
    normalized,
    resolve_target_port,
)
from kumo.platform.controllers.job import (
    active_deadline_left,
    is_complete,
    past_backoff_limit_on_failure,
    wanted_active,
)
from kumo.platform.controllers.nodelifecycle import (
    NOT_READY,
    UNREACHABLE,
    UNSCHEDULABLE,
    eviction_time,
    heartbeat,
    is_stale,
    not_ready_status,
    tolerates,
    unknown_conditions,
    wanted_taints,
)

Obj = dict[str, Any]
NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def ago(seconds: float) -> str:
    return format_time(NOW - datetime.timedelta(seconds=seconds))


# ---- endpoints -------------------------------------------------------------------------------


def web_pod(
    name: str,
    host_port: int,
    *,
    ready: bool = True,
    host_ip: str = "127.0.0.1",
    published_ip: str | None = None,
    container_port: int = 8080,
    deleting: bool = False,
    phase: str = "Running",
    extra_ports: list[Obj] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = ago(0)
    published = [
        {
            "containerName": "main",
            "name": "http",
            "containerPort": container_port,
            "protocol": "TCP",
            "hostIP": host_ip if published_ip is None else published_ip,
            "hostPort": host_port,
        },
        *(extra_ports or []),
    ]
    return {
        "metadata": meta,
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "main",
                    "ports": [
                        {"name": "http", "containerPort": container_port},
                        {"name": "admin", "containerPort": 9000},
                    ],
                }
            ],
        },
        "status": {
            "phase": phase,
            "hostIP": host_ip,
            "publishedPorts": published,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(ports: list[Obj], **spec: Any) -> Obj:
    return {
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": ports, **spec},
    }


HTTP = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}


def test_resolve_target_port() -> None:
    pod = web_pod("a", 30001)
    assert resolve_target_port(pod, {"port": 80, "targetPort": 8080}) == 8080
    assert resolve_target_port(pod, {"port": 80, "targetPort": "http"}) == 8080
    assert resolve_target_port(pod, {"port": 80, "targetPort": "admin"}) == 9000
    assert resolve_target_port(pod, {"port": 80, "targetPort": "nope"}) is None
    assert resolve_target_port(pod, {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None
    assert resolve_target_port(pod, {"port": 8080}) == 8080


def test_ready_and_not_ready_pods_in_their_own_subsets() -> None:
    pods = [web_pod("a", 30001), web_pod("b", 30002), web_pod("c", 30003, ready=False)]
    subsets = build_subsets(service([HTTP]), pods)
    assert subsets == [
        {
            "addresses": [
                {
                    "ip": "127.0.0.1",
                    "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
                }
            ],
            "ports": [{"name": "http", "port": 30001, "protocol": "TCP"}],
        },
        {
            "addresses": [
                {
                    "ip": "127.0.0.1",
                    "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "uid-b"},
                }
            ],
            "ports": [{"name": "http", "port": 30002, "protocol": "TCP"}],
        },
        {
            "notReadyAddresses": [
                {
                    "ip": "127.0.0.1",
                    "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "namespace": "ns", "name": "c", "uid": "uid-c"},
                }
            ],
            "ports": [{"name": "http", "port": 30003, "protocol": "TCP"}],
        },
    ]


def test_the_same_host_port_on_two_nodes_shares_a_subset_and_order_is_stable() -> None:
    pods = [
        web_pod("a", 31000, host_ip="127.0.0.2"),
        web_pod("b", 31000, host_ip="127.0.0.1"),
        web_pod("c", 31000, host_ip="127.0.0.3", ready=False),
    ]
    subsets = build_subsets(service([HTTP]), pods)
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["127.0.0.1", "127.0.0.2"]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["127.0.0.3"]
    for seed in range(5):
        shuffled = list(pods)
        random.Random(seed).shuffle(shuffled)
        assert build_subsets(service([HTTP]), shuffled) == subsets


def test_left_out_pods() -> None:
    unpublished = web_pod("u", 30001)
    unpublished["status"]["publishedPorts"] = []
    elsewhere = web_pod("other-port", 30005)
    elsewhere["status"]["publishedPorts"][0]["containerPort"] = 7070
    no_node = web_pod("n", 30002)
    no_node["status"] = {"phase": "Pending"}
    pods = [
        unpublished,
        no_node,
        web_pod("gone", 30003, deleting=True),
        web_pod("done", 30004, phase="Succeeded"),
        elsewhere,
    ]
    assert build_subsets(service([HTTP]), pods) == []
    # publishNotReadyAddresses keeps terminating pods, all as ready addresses.
    kept = build_subsets(
        service([HTTP], publishNotReadyAddresses=True),
        [web_pod("gone", 30003, deleting=True, ready=False)],
    )
    assert [a["targetRef"]["name"] for a in kept[0]["addresses"]] == ["gone"]


def test_multi_port_service_and_wildcard_published_address() -> None:
    admin = {
        "containerName": "main",
        "name": "admin",
        "containerPort": 9000,
        "protocol": "TCP",
        "hostIP": "0.0.0.0",
        "hostPort": 40000,
    }
    pod = web_pod("a", 30001, published_ip="0.0.0.0", extra_ports=[admin])
    ports = [HTTP, {"name": "admin", "port": 9000, "targetPort": 9000, "protocol": "TCP"}]
    (subset,) = build_subsets(service(ports), [pod])
    assert subset["addresses"][0]["ip"] == "127.0.0.1", "0.0.0.0 means the node's address"
    assert subset["ports"] == [
        {"name": "admin", "port": 40000, "protocol": "TCP"},
        {"name": "http", "port": 30001, "protocol": "TCP"},
    ]
    # A pod publishing only one of the two ports sits in a subset of its own.
    half = web_pod("b", 30002)
    subsets = build_subsets(service(ports), [pod, half])
    assert len(subsets) == 2


def test_normalized_comparison_and_labels() -> None:
    built = build_subsets(service([HTTP]), [web_pod("a", 30001)])
    stored = [
        {
            "ports": [{"protocol": "TCP", "port": 30001, "name": "http"}],
            "addresses": built[0]["addresses"],
        }
    ]
    assert normalized(stored) == normalized(built)
    assert normalized(None) == normalized([]) == []
    assert endpoints_labels(service([HTTP])) == {"team": "a"}
    assert endpoints_labels(service([HTTP], clusterIP="None")) == {
        "team": "a",
        "service.kubernetes.io/headless": "",
    }


# ---- job -------------------------------------------------------------------------------------


def job(**spec: Any) -> Obj:
    return {"spec": {"template": {"spec": {"restartPolicy": spec.pop("policy", "Never")}}, **spec}}


def test_wanted_active_and_completion() -> None:
    assert wanted_active(job(parallelism=2, completions=5), active=0, succeeded=0) == 2
    assert wanted_active(job(parallelism=2, completions=5), active=2, succeeded=4) == 1
    assert wanted_active(job(parallelism=3, completions=2), active=0, succeeded=2) == 0
    assert (
        wanted_active(job(parallelism=2, suspend=True, completions=5), active=2, succeeded=0) == 0
    )
    # No completions: a work queue; after the first success no new pods start.
    assert wanted_active(job(parallelism=3), active=0, succeeded=0) == 3
    assert wanted_active(job(parallelism=3), active=2, succeeded=1) == 2
    assert is_complete(job(completions=3), active=0, succeeded=3)
    assert not is_complete(job(completions=3), active=1, succeeded=3)
    assert not is_complete(job(completions=3), active=0, succeeded=2)
    assert is_complete(job(), active=0, succeeded=1)
    assert not is_complete(job(), active=1, succeeded=1)


def test_on_failure_restarts_count_against_the_backoff_limit() -> None:
    def running(restarts: int) -> Obj:
        return {"status": {"phase": "Running", "containerStatuses": [{"restartCount": restarts}]}}

    assert past_backoff_limit_on_failure(
        job(policy="OnFailure", backoffLimit=3), [running(1), running(2)]
    )
    assert not past_backoff_limit_on_failure(
        job(policy="OnFailure", backoffLimit=4), [running(1), running(2)]
    )
    assert past_backoff_limit_on_failure(job(policy="OnFailure", backoffLimit=0), [running(1)])
    assert not past_backoff_limit_on_failure(job(policy="Never", backoffLimit=1), [running(5)])


def test_active_deadline() -> None:
    assert active_deadline_left(job(activeDeadlineSeconds=10), ago(4), NOW) == pytest.approx(6)
    assert active_deadline_left(job(activeDeadlineSeconds=10), ago(12), NOW) == pytest.approx(-2)
    assert active_deadline_left(job(), ago(4), NOW) is None
    assert active_deadline_left(job(activeDeadlineSeconds=10), None, NOW) is None


# ---- node lifecycle --------------------------------------------------------------------------


def node(
    *,
    ready: str | None = "True",
    beat: float = 5,
    taints: list[Obj] | None = None,
    unschedulable: bool = False,
) -> Obj:
    conditions = []
    if ready is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": ready,
                "lastHeartbeatTime": ago(beat),
                "lastTransitionTime": ago(100),
            }
        )
    conditions.append({"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": ago(beat)})
    spec: Obj = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": "n1", "creationTimestamp": ago(1000)},
        "spec": spec,
        "status": {"conditions": conditions},
    }


def lease(renewed: float) -> Obj:
    micro = (NOW - datetime.timedelta(seconds=renewed)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"spec": {"renewTime": micro}}


def test_heartbeat_is_the_latest_sign_of_life() -> None:
    assert heartbeat(node(beat=50), lease(3)) == NOW - datetime.timedelta(seconds=3)
    assert heartbeat(node(beat=2), lease(30)) == NOW - datetime.timedelta(seconds=2)
    assert heartbeat(node(ready=None), None) == NOW - datetime.timedelta(seconds=1000)
    assert is_stale(NOW - datetime.timedelta(seconds=41), NOW, 40)
    assert not is_stale(NOW - datetime.timedelta(seconds=39), NOW, 40)
    assert is_stale(None, NOW, 40)


def test_unknown_conditions() -> None:
    conditions = unknown_conditions(node(), NOW)
    assert conditions is not None
    ready = next(c for c in conditions if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    assert ready["lastHeartbeatTime"] == ago(5), "the heartbeat is not faked"
    assert ready["lastTransitionTime"] == format_time(NOW)
    assert next(c for c in conditions if c["type"] == "MemoryPressure")["status"] == "Unknown"
    assert unknown_conditions({"metadata": {}, "status": {"conditions": conditions}}, NOW) is None
    never = unknown_conditions(node(ready=None), NOW)
    assert never is not None
    assert next(c for c in never if c["type"] == "Ready")["reason"] == "NodeStatusNeverUpdated"


def test_wanted_taints() -> None:
    user = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    tainted = wanted_taints(node(taints=[user]), True, NOW)
    assert tainted[0] == user
    assert {(t["key"], t["effect"]) for t in tainted[1:]} == {
        (UNREACHABLE, "NoExecute"),
        (UNREACHABLE, "NoSchedule"),
    }
    assert next(t for t in tainted if t["effect"] == "NoExecute")["timeAdded"] == format_time(NOW)
    # Kept as they are (with their time) while the reason lasts.
    later = NOW + datetime.timedelta(seconds=30)
    assert wanted_taints(node(taints=tainted), True, later) == tainted
    # Lifted when the node is heard from again; a Ready=False node gets not-ready instead.
    assert wanted_taints(node(taints=tainted), False, later) == [user]
    not_ready = wanted_taints(node(ready="False", taints=tainted), False, later)
    assert {(t["key"], t["effect"]) for t in not_ready} == {
        ("dedicated", "NoSchedule"),
        (NOT_READY, "NoExecute"),
        (NOT_READY, "NoSchedule"),
    }
    assert wanted_taints(node(unschedulable=True), False, NOW) == [
        {"key": UNSCHEDULABLE, "effect": "NoSchedule"}
    ]


def test_tolerations_and_eviction_times() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(NOW)}
    assert tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, taint)
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not tolerates(
        {"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoExecute"}
    )

    def pod(*tolerations: Obj) -> Obj:
        return {"spec": {"tolerations": list(tolerations)}}

    def after(seconds: float) -> datetime.datetime:
        return NOW + datetime.timedelta(seconds=seconds)

    assert eviction_time(pod(), [taint], 300, NOW) == after(seconds=300)
    limited = {
        "key": UNREACHABLE,
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 60,
    }
    assert eviction_time(pod(limited), [taint], 300, NOW) == after(seconds=60)
    forever = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    assert eviction_time(pod(forever), [taint], 300, NOW) is None
    user = {"key": "drain", "effect": "NoExecute", "timeAdded": format_time(NOW)}
    assert eviction_time(pod(forever), [taint, user], 300, NOW) == NOW, (
        "an untolerated taint evicts at once"
    )
    assert eviction_time(pod(), [{"key": "x", "effect": "NoSchedule"}], 300, NOW) is None


def test_pods_lose_ready() -> None:
    ready = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
            ],
        }
    }
    changed = not_ready_status(ready, NOW)
    assert changed is not None
    by_type = {c["type"]: c for c in changed["conditions"]}
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["lastTransitionTime"] == format_time(NOW)
    assert by_type["PodScheduled"]["status"] == "True"
    assert not_ready_status({"status": changed}, NOW) is None


# ---- CLI helpers -----------------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("0s") == 0
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration("12") == 12
    with pytest.raises(click.BadParameter):
        parse_duration("soon")
    with pytest.raises(click.BadParameter):
        parse_duration("5m later")


def test_drain_plan_filters_like_kubectl() -> None:
    def pod(
        name: str,
        *,
        owner: str | None = "ReplicaSet",
        mirror: bool = False,
        empty_dir: bool = False,
        phase: str = "Running",
    ) -> Obj:
        meta: Obj = {"name": name, "namespace": "ns"}
        if owner:
            meta["ownerReferences"] = [{"kind": owner, "name": "x", "uid": "u", "controller": True}]
        if mirror:
            meta["annotations"] = {"kubernetes.io/config.mirror": "hash"}
        spec: Obj = {"volumes": [{"name": "scratch", "emptyDir": {}}]} if empty_dir else {}
        return {"metadata": meta, "spec": spec, "status": {"phase": phase}}

    pods = [
        pod("web"),
        pod("static", owner=None, mirror=True),
        pod("agent", owner="DaemonSet"),
        pod("lonely", owner=None),
        pod("scratchy", empty_dir=True),
        pod("finished", owner=None, phase="Succeeded"),
    ]
    evict, warnings, errors = drain_plan(
        pods, ignore_daemonsets=False, force=False, delete_emptydir_data=False
    )
    assert [p["metadata"]["name"] for p in evict] == ["web", "finished"]
    assert sorted(errors) == [
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ns/agent",
        "cannot delete Pods that declare no controller (use --force to override): ns/lonely",
        "cannot delete Pods with local storage (use --delete-emptydir-data to override): ns/scratchy",
    ]
    assert warnings == []
    evict, warnings, errors = drain_plan(
        pods, ignore_daemonsets=True, force=True, delete_emptydir_data=True
    )
    assert [p["metadata"]["name"] for p in evict] == ["web", "lonely", "scratchy", "finished"]
    assert errors == []
    assert sorted(warnings) == [
        "deleting Pods that declare no controller: ns/lonely",
        "deleting Pods with local storage: ns/scratchy",
        "ignoring DaemonSet-managed Pods: ns/agent",
    ]


def test_events_sort_by_when_they_last_happened() -> None:
    events = [
        {"metadata": {"name": "b"}, "lastTimestamp": ago(10)},
        {
            "metadata": {"name": "a"},
            "eventTime": (NOW - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
        {"metadata": {"name": "c", "creationTimestamp": ago(5)}},
        {
            "metadata": {"name": "d"},
            "lastTimestamp": ago(60),
            "series": {"lastObservedTime": ago(1)},
        },
    ]
    assert [e["metadata"]["name"] for e in sort_events(events)] == ["a", "b", "c", "d"]
