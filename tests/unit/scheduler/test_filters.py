"""Table-driven tests of every Filter plugin, with Kubernetes' expected outcomes (cases follow
the upstream plugin tests: fit_test.go, node_affinity_test.go, taint_toleration_test.go,
node_ports_test.go, interpodaffinity filtering_test.go, node_unschedulable_test.go)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kumo.platform.scheduler.framework import CycleState
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import Code
from tests.unit.scheduler.builders import (
    World,
    anti_affinity,
    container,
    node,
    node_affinity_required,
    pod,
    pod_affinity,
)

Obj = dict[str, Any]
UNSCHED = Code.UNSCHEDULABLE
UNRESOLVABLE = Code.UNSCHEDULABLE_AND_UNRESOLVABLE


@dataclass
class Case:
    id: str
    plugin: str
    incoming: Obj
    nodes: list[Obj] = field(default_factory=lambda: [node("n1")])
    existing: list[Obj] = field(default_factory=list)
    on: str = "n1"
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()


def run_filter(case: Case) -> tuple[Code, tuple[str, ...]]:
    world = World(case.nodes, case.existing)
    plugin = world.plugin(case.plugin)
    pod_info = PodInfo(case.incoming)
    state = CycleState()
    if hasattr(plugin, "pre_filter"):
        _, status = plugin.pre_filter(state, pod_info)
        if status.is_skip:
            return Code.SUCCESS, ()  # the framework does not run a skipped Filter
        if not status.is_success:
            return status.code, status.reasons
    status = plugin.filter(state, pod_info, world.node(case.on))
    return status.code, status.reasons


def small_node(name: str = "n1", pods: str = "32", **kwargs: Any) -> Obj:
    # Kubernetes' fit tests: 10 milli-cpu... here 10 cpu, 20 bytes of memory, 32 pods.
    return node(name, cpu="10", memory="20", pods=pods, **kwargs)


def rpod(name: str, cpu: str, memory: str, **kwargs: Any) -> Obj:
    return pod(name, cpu=cpu, memory=memory, **kwargs)


RESOURCES = [
    Case(
        "no requests fits",
        "NodeResourcesFit",
        pod("new"),
        [small_node()],
        [rpod("e", "10", "20", node_name="n1")],
    ),
    Case(
        "fits exactly",
        "NodeResourcesFit",
        rpod("new", "1", "1"),
        [small_node()],
        [rpod("e", "5", "5", node_name="n1")],
    ),
    Case(
        "too many resources",
        "NodeResourcesFit",
        rpod("new", "1", "1"),
        [small_node()],
        [rpod("e", "10", "20", node_name="n1")],
        code=UNSCHED,
        reasons=("Insufficient cpu", "Insufficient memory"),
    ),
    Case(
        "init container cpu too big",
        "NodeResourcesFit",
        pod(
            "new",
            containers=[container(cpu="1", memory="1")],
            init_containers=[container("i", cpu="3", memory="1")],
        ),
        [small_node()],
        [rpod("e", "8", "19", node_name="n1")],
        code=UNSCHED,
        reasons=("Insufficient cpu",),
    ),
    Case(
        "init containers count by max, not sum",
        "NodeResourcesFit",
        pod(
            "new",
            containers=[container(cpu="1", memory="1")],
            init_containers=[
                container("i1", cpu="1", memory="1"),
                container("i2", cpu="1", memory="1"),
            ],
        ),
        [small_node()],
        [rpod("e", "9", "19", node_name="n1")],
    ),
    Case(
        "sidecar init container adds to the containers",
        "NodeResourcesFit",
        pod(
            "new",
            containers=[container(cpu="1", memory="1")],
            init_containers=[container("side", cpu="1", memory="1", restart_policy="Always")],
        ),
        [small_node()],
        [rpod("e", "9", "18", node_name="n1")],
        code=UNSCHED,
        reasons=("Insufficient cpu",),
    ),
    Case(
        "memory only",
        "NodeResourcesFit",
        rpod("new", "1", "2"),
        [small_node()],
        [rpod("e", "5", "19", node_name="n1")],
        code=UNSCHED,
        reasons=("Insufficient memory",),
    ),
    Case(
        "too many pods",
        "NodeResourcesFit",
        pod("new"),
        [small_node(pods="1")],
        [pod("e", node_name="n1")],
        code=UNSCHED,
        reasons=("Too many pods",),
    ),
    Case(
        "too many pods and cpu",
        "NodeResourcesFit",
        rpod("new", "1", "1"),
        [small_node(pods="1")],
        [rpod("e", "10", "1", node_name="n1")],
        code=UNSCHED,
        reasons=("Too many pods", "Insufficient cpu"),
    ),
    Case(
        "terminated pods hold nothing",
        "NodeResourcesFit",
        rpod("new", "1", "1"),
        [small_node()],
        [rpod("e", "10", "20", node_name="n1", phase="Succeeded")],
    ),
    Case(
        "extended resource insufficient",
        "NodeResourcesFit",
        pod("new", containers=[container(extra={"example.com/foo": "4"})]),
        [small_node(extra={"example.com/foo": "5"})],
        [pod("e", node_name="n1", containers=[container(extra={"example.com/foo": "2"})])],
        code=UNSCHED,
        reasons=("Insufficient example.com/foo",),
    ),
    Case(
        "extended resource the node lacks",
        "NodeResourcesFit",
        pod("new", containers=[container(extra={"example.com/bar": "1"})]),
        [small_node()],
        code=UNSCHED,
        reasons=("Insufficient example.com/bar",),
    ),
    Case(
        "extended resource fits",
        "NodeResourcesFit",
        pod("new", containers=[container(extra={"example.com/foo": "3"})]),
        [small_node(extra={"example.com/foo": "5"})],
        [pod("e", node_name="n1", containers=[container(extra={"example.com/foo": "2"})])],
    ),
]


def term(*expressions: Obj, fields: list[Obj] | None = None) -> Obj:
    out: Obj = {}
    if expressions:
        out["matchExpressions"] = list(expressions)
    if fields:
        out["matchFields"] = fields
    return out


def expr(key: str, operator: str, *values: str) -> Obj:
    out: Obj = {"key": key, "operator": operator}
    if values:
        out["values"] = list(values)
    return out


AFFINITY_REASON = ("node(s) didn't match Pod's node affinity/selector",)
LABELED = [node("n1", labels={"foo": "bar", "gpus": "4", "zone": "a"})]


def requires(id: str, *terms: Obj, fits: bool = True) -> Case:
    """NodeAffinity on LABELED for a pod that requires one of ``terms``; ``fits=False``
    expects it refused with the affinity reason."""
    incoming = pod("p", affinity=node_affinity_required(*terms))
    if fits:
        return Case(id, "NodeAffinity", incoming, LABELED)
    return Case(id, "NodeAffinity", incoming, LABELED, code=UNRESOLVABLE, reasons=AFFINITY_REASON)


NODE_AFFINITY = [
    Case("no selector", "NodeAffinity", pod("p"), LABELED),
    Case("nodeSelector matches", "NodeAffinity", pod("p", node_selector={"foo": "bar"}), LABELED),
    Case(
        "nodeSelector mismatch",
        "NodeAffinity",
        pod("p", node_selector={"foo": "baz"}),
        LABELED,
        code=UNRESOLVABLE,
        reasons=AFFINITY_REASON,
    ),
    requires("In", term(expr("foo", "In", "x", "bar"))),
    requires("In mismatch", term(expr("foo", "In", "x")), fits=False),
    requires("NotIn", term(expr("foo", "NotIn", "x"))),
    requires("NotIn mismatch", term(expr("foo", "NotIn", "bar")), fits=False),
    requires("Exists", term(expr("foo", "Exists"))),
    requires("DoesNotExist mismatch", term(expr("foo", "DoesNotExist")), fits=False),
    requires("DoesNotExist", term(expr("disk", "DoesNotExist"))),
    requires("Gt", term(expr("gpus", "Gt", "3"))),
    requires("Gt mismatch", term(expr("gpus", "Gt", "4")), fits=False),
    requires("Lt", term(expr("gpus", "Lt", "5"))),
    requires("Lt on a non-integer label", term(expr("foo", "Lt", "5")), fits=False),
    requires(
        "expressions of a term are ANDed",
        term(expr("foo", "In", "bar"), expr("zone", "In", "b")),
        fits=False,
    ),
    requires("terms are ORed", term(expr("zone", "In", "b")), term(expr("foo", "Exists"))),
    requires("an empty term matches nothing", {}, fits=False),
    requires("matchFields metadata.name", term(fields=[expr("metadata.name", "In", "n1")])),
    Case(
        "matchFields metadata.name of another node",
        "NodeAffinity",
        pod("p", affinity=node_affinity_required(term(fields=[expr("metadata.name", "In", "n2")]))),
        [*LABELED, node("n2")],
        code=UNRESOLVABLE,
        reasons=AFFINITY_REASON,
    ),
    Case(
        "nodeSelector and affinity both apply",
        "NodeAffinity",
        pod(
            "p",
            node_selector={"foo": "bar"},
            affinity=node_affinity_required(term(expr("zone", "In", "b"))),
        ),
        LABELED,
        code=UNRESOLVABLE,
        reasons=AFFINITY_REASON,
    ),
]


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> Obj:
    return {"key": key, "value": value, "effect": effect}


def toleration(key: str = "", operator: str = "Equal", value: str = "", effect: str = "") -> Obj:
    out: Obj = {"operator": operator}
    if key:
        out["key"] = key
    if value:
        out["value"] = value
    if effect:
        out["effect"] = effect
    return out


TAINTED = [node("n1", taints=[taint("dedicated", "user1")])]

TAINTS = [
    Case("no taints", "TaintToleration", pod("p")),
    Case(
        "untolerated NoSchedule",
        "TaintToleration",
        pod("p"),
        TAINTED,
        code=UNRESOLVABLE,
        reasons=("node(s) had untolerated taint {dedicated: user1}",),
    ),
    Case(
        "tolerated by key, value and effect",
        "TaintToleration",
        pod("p", tolerations=[toleration("dedicated", "Equal", "user1", "NoSchedule")]),
        TAINTED,
    ),
    Case(
        "wrong value",
        "TaintToleration",
        pod("p", tolerations=[toleration("dedicated", "Equal", "user2", "NoSchedule")]),
        TAINTED,
        code=UNRESOLVABLE,
        reasons=("node(s) had untolerated taint {dedicated: user1}",),
    ),
    Case(
        "wrong effect",
        "TaintToleration",
        pod("p", tolerations=[toleration("dedicated", "Equal", "user1", "NoExecute")]),
        TAINTED,
        code=UNRESOLVABLE,
        reasons=("node(s) had untolerated taint {dedicated: user1}",),
    ),
    Case(
        "Exists with a key",
        "TaintToleration",
        pod("p", tolerations=[toleration("dedicated", "Exists")]),
        TAINTED,
    ),
    Case(
        "Exists without a key tolerates all",
        "TaintToleration",
        pod("p", tolerations=[toleration(operator="Exists")]),
        TAINTED,
    ),
    Case(
        "PreferNoSchedule does not filter",
        "TaintToleration",
        pod("p"),
        [node("n1", taints=[taint("spot", "true", "PreferNoSchedule")])],
    ),
    Case(
        "untolerated NoExecute",
        "TaintToleration",
        pod("p"),
        [node("n1", taints=[taint("node.kubernetes.io/unreachable", "", "NoExecute")])],
        code=UNRESOLVABLE,
        reasons=("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",),
    ),
    Case(
        "the first untolerated taint is named",
        "TaintToleration",
        pod("p", tolerations=[toleration("a", "Exists")]),
        [node("n1", taints=[taint("a", "1"), taint("b", "2"), taint("c", "3")])],
        code=UNRESOLVABLE,
        reasons=("node(s) had untolerated taint {b: 2}",),
    ),
]

CORDON = [
    Case("schedulable node", "NodeUnschedulable", pod("p")),
    Case(
        "cordoned node",
        "NodeUnschedulable",
        pod("p"),
        [node("n1", unschedulable=True)],
        code=UNRESOLVABLE,
        reasons=("node(s) were unschedulable",),
    ),
    Case(
        "cordoned node, pod tolerates it",
        "NodeUnschedulable",
        pod(
            "p",
            tolerations=[
                toleration("node.kubernetes.io/unschedulable", "Exists", effect="NoSchedule")
            ],
        ),
        [node("n1", unschedulable=True)],
    ),
    Case("ready node", "NodeReady", pod("p")),
    Case(
        "not ready",
        "NodeReady",
        pod("p"),
        [node("n1", ready="False")],
        code=UNRESOLVABLE,
        reasons=("node(s) were not ready",),
    ),
    Case(
        "no Ready condition",
        "NodeReady",
        pod("p"),
        [node("n1", ready=None)],
        code=UNRESOLVABLE,
        reasons=("node(s) were not ready",),
    ),
    Case(
        "not ready, tolerated",
        "NodeReady",
        pod("p", tolerations=[toleration("node.kubernetes.io/not-ready", "Exists")]),
        [node("n1", ready="False")],
    ),
    Case(
        "unknown, tolerated as unreachable",
        "NodeReady",
        pod(
            "p",
            tolerations=[
                toleration("node.kubernetes.io/unreachable", "Exists", effect="NoSchedule")
            ],
        ),
        [node("n1", ready="Unknown")],
    ),
    Case(
        "unknown, wrong toleration",
        "NodeReady",
        pod("p", tolerations=[toleration("node.kubernetes.io/not-ready", "Exists")]),
        [node("n1", ready="Unknown")],
        code=UNRESOLVABLE,
        reasons=("node(s) were not ready",),
    ),
]


def port(host_port: int, protocol: str = "TCP", host_ip: str = "") -> Obj:
    out: Obj = {"containerPort": host_port, "hostPort": host_port, "protocol": protocol}
    if host_ip:
        out["hostIP"] = host_ip
    return out


def ports_pod(name: str, *ports: Obj, node_name: str | None = None) -> Obj:
    return pod(name, containers=[container(ports=list(ports))], node_name=node_name)


PORTS_REASON = ("node(s) didn't have free ports for the requested pod ports",)
PORTS = [
    Case("no ports", "NodePorts", pod("p"), existing=[ports_pod("e", port(8080), node_name="n1")]),
    Case(
        "free port",
        "NodePorts",
        ports_pod("p", port(8081)),
        existing=[ports_pod("e", port(8080), node_name="n1")],
    ),
    Case(
        "same port",
        "NodePorts",
        ports_pod("p", port(8080)),
        existing=[ports_pod("e", port(8080), node_name="n1")],
        code=UNSCHED,
        reasons=PORTS_REASON,
    ),
    Case(
        "other protocol",
        "NodePorts",
        ports_pod("p", port(8080, "UDP")),
        existing=[ports_pod("e", port(8080), node_name="n1")],
    ),
    Case(
        "different specific IPs",
        "NodePorts",
        ports_pod("p", port(8080, host_ip="127.0.0.1")),
        existing=[ports_pod("e", port(8080, host_ip="127.0.0.2"), node_name="n1")],
    ),
    Case(
        "wildcard against a specific IP",
        "NodePorts",
        ports_pod("p", port(8080)),
        existing=[ports_pod("e", port(8080, host_ip="127.0.0.2"), node_name="n1")],
        code=UNSCHED,
        reasons=PORTS_REASON,
    ),
    Case(
        "specific IP against the wildcard",
        "NodePorts",
        ports_pod("p", port(8080, host_ip="127.0.0.1")),
        existing=[ports_pod("e", port(8080), node_name="n1")],
        code=UNSCHED,
        reasons=PORTS_REASON,
    ),
    Case(
        "a port on another node does not count",
        "NodePorts",
        ports_pod("p", port(8080)),
        [node("n1"), node("n2")],
        [ports_pod("e", port(8080), node_name="n2")],
    ),
]

ZONED = [
    node("n1", labels={"zone": "a"}),
    node("n2", labels={"zone": "a"}),
    node("n3", labels={"zone": "b"}),
]
WEB = {"app": "web"}
ANTI = ("node(s) didn't match pod anti-affinity rules",)
EXISTING_ANTI = ("node(s) didn't satisfy existing pods anti-affinity rules",)
AFFINITY = ("node(s) didn't match pod affinity rules",)

INTER_POD = [
    Case(
        "no terms, no existing anti-affinity",
        "InterPodAffinity",
        pod("p", labels=WEB),
        ZONED,
        [pod("e", labels=WEB, node_name="n1")],
    ),
    Case(
        "anti-affinity against a pod on the node",
        "InterPodAffinity",
        pod("p", labels=WEB, affinity=anti_affinity(WEB)),
        ZONED,
        [pod("e", labels=WEB, node_name="n1")],
        code=UNSCHED,
        reasons=ANTI,
    ),
    Case(
        "anti-affinity by hostname: another node is fine",
        "InterPodAffinity",
        pod("p", labels=WEB, affinity=anti_affinity(WEB)),
        ZONED,
        [pod("e", labels=WEB, node_name="n1")],
        on="n2",
    ),
    Case(
        "anti-affinity by zone covers the zone",
        "InterPodAffinity",
        pod("p", affinity=anti_affinity(WEB, "zone")),
        ZONED,
        [pod("e", labels=WEB, node_name="n1")],
        on="n2",
        code=UNSCHED,
        reasons=ANTI,
    ),
    Case(
        "anti-affinity by zone: other zone",
        "InterPodAffinity",
        pod("p", affinity=anti_affinity(WEB, "zone")),
        ZONED,
        [pod("e", labels=WEB, node_name="n1")],
        on="n3",
    ),
    Case(
        "anti-affinity only within the pod's namespace",
        "InterPodAffinity",
        pod("p", affinity=anti_affinity(WEB)),
        ZONED,
        [pod("e", namespace="other", labels=WEB, node_name="n1")],
    ),
    Case(
        "existing pod's anti-affinity is symmetric",
        "InterPodAffinity",
        pod("p", labels=WEB),
        ZONED,
        [pod("e", labels={"app": "db"}, affinity=anti_affinity(WEB), node_name="n1")],
        code=UNSCHED,
        reasons=EXISTING_ANTI,
    ),
    Case(
        "existing pod's anti-affinity does not match the pod",
        "InterPodAffinity",
        pod("p", labels={"app": "cache"}),
        ZONED,
        [pod("e", labels={"app": "db"}, affinity=anti_affinity(WEB), node_name="n1")],
    ),
    Case(
        "affinity satisfied in the zone",
        "InterPodAffinity",
        pod("p", affinity=pod_affinity({"app": "db"}, "zone")),
        ZONED,
        [pod("e", labels={"app": "db"}, node_name="n1")],
        on="n2",
    ),
    Case(
        "affinity not satisfied in another zone",
        "InterPodAffinity",
        pod("p", affinity=pod_affinity({"app": "db"}, "zone")),
        ZONED,
        [pod("e", labels={"app": "db"}, node_name="n1")],
        on="n3",
        code=UNRESOLVABLE,
        reasons=AFFINITY,
    ),
    Case(
        "the first pod of a self-affine group goes anywhere",
        "InterPodAffinity",
        pod("p", labels={"app": "db"}, affinity=pod_affinity({"app": "db"}, "zone")),
        ZONED,
        on="n3",
    ),
    Case(
        "affinity with no matching pod and not self-affine",
        "InterPodAffinity",
        pod("p", affinity=pod_affinity({"app": "db"}, "zone")),
        ZONED,
        on="n3",
        code=UNRESOLVABLE,
        reasons=AFFINITY,
    ),
    Case(
        "affinity needs the topology label on the node",
        "InterPodAffinity",
        pod("p", labels={"app": "db"}, affinity=pod_affinity({"app": "db"}, "rack")),
        ZONED,
        code=UNRESOLVABLE,
        reasons=AFFINITY,
    ),
]

ALL = RESOURCES + NODE_AFFINITY + TAINTS + CORDON + PORTS + INTER_POD


@pytest.mark.parametrize("case", ALL, ids=[f"{c.plugin}: {c.id}" for c in ALL])
def test_filter(case: Case) -> None:
    code, reasons = run_filter(case)
    assert (code, reasons) == (case.code, case.reasons)


@pytest.mark.parametrize("case", ALL, ids=[f"{c.plugin}: {c.id}" for c in ALL])
def test_batch_filter_agrees(case: Case) -> None:
    """filter_nodes keeps the node exactly when filter succeeds."""
    world = World(case.nodes, case.existing)
    plugin = world.plugin(case.plugin)
    pod_info = PodInfo(case.incoming)
    state = CycleState()
    if hasattr(plugin, "pre_filter"):
        _, status = plugin.pre_filter(state, pod_info)
        if not status.is_success:
            return
    nodes = world.cache.node_list
    expected = [n for n in nodes if plugin.filter(state, pod_info, n).is_success]
    assert plugin.filter_nodes(state, pod_info, nodes) == expected


def test_node_affinity_prefilter_restricts_to_named_nodes() -> None:
    world = World([node("n1"), node("n2"), node("n3")])
    plugin = world.plugin("NodeAffinity")
    incoming = PodInfo(
        pod(
            "p",
            affinity=node_affinity_required(term(fields=[expr("metadata.name", "In", "n2", "n3")])),
        )
    )
    names, status = plugin.pre_filter(CycleState(), incoming)
    assert status.is_success
    assert names == frozenset({"n2", "n3"})


def test_prefilter_skips_plugins_with_nothing_to_check() -> None:
    world = World([node("n1")])
    plain = PodInfo(pod("p"))
    for name in ("NodeAffinity", "NodePorts", "InterPodAffinity"):
        _, status = world.plugin(name).pre_filter(CycleState(), plain)
        assert status.is_skip, name
