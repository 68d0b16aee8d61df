"""Table-driven tests of every Score plugin, normalized, with the numbers Kubernetes' own
plugin tests expect (least_allocated_test.go, balanced_allocation_test.go,
image_locality_test.go, taint_toleration_test.go, node_affinity_test.go, selector spread,
interpodaffinity scoring_test.go)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kumo.platform.scheduler.framework import CycleState
from kumo.platform.scheduler.podinfo import PodInfo
from tests.unit.scheduler.builders import (
    World,
    container,
    node,
    node_affinity_preferred,
    pod,
    preferred_anti_affinity,
    preferred_pod_affinity,
)

Obj = dict[str, Any]
MB = 1024 * 1024


@dataclass
class Case:
    id: str
    plugin: str
    incoming: Obj
    nodes: list[Obj]
    expected: dict[str, int] | None  # None: the plugin skips this pod
    existing: list[Obj] = field(default_factory=list)


def run_score(case: Case) -> dict[str, int] | None:
    world = World(case.nodes, case.existing)
    plugin = world.plugin(case.plugin)
    pod_info = PodInfo(case.incoming)
    nodes = world.cache.node_list
    state = CycleState()
    if hasattr(plugin, "pre_score"):
        status = plugin.pre_score(state, pod_info, nodes)
        if status.is_skip:
            return None
        assert status.is_success
    scores = [plugin.score(state, pod_info, n) for n in nodes]
    assert plugin.score_nodes(state, pod_info, nodes) == scores
    if plugin.normalizes:
        plugin.normalize(state, pod_info, scores)
    return {n.name: s for n, s in zip(nodes, scores, strict=True)}


def cpu_and_memory(name: str = "p", **kwargs: Any) -> Obj:
    return pod(
        name,
        containers=[
            container("a", cpu="1000m", memory="2000"),
            container("b", cpu="2000m", memory="3000"),
        ],
        **kwargs,
    )


def cpu_only(name: str, **kwargs: Any) -> Obj:
    return pod(
        name,
        containers=[
            container("a", cpu="1000m", memory="0"),
            container("b", cpu="2000m", memory="0"),
        ],
        **kwargs,
    )


def plain_node(name: str, cpu: str, memory: str, **kwargs: Any) -> Obj:
    return node(name, cpu=cpu, memory=memory, **kwargs)


def image_node(name: str, *images: tuple[str, int]) -> Obj:
    return node(name, images=[{"names": [n], "sizeBytes": size} for n, size in images])


def preferred(weight: int, taint_key: str, value: str) -> Obj:
    return {"key": taint_key, "value": value, "effect": "PreferNoSchedule"}


def expr(key: str, *values: str) -> Obj:
    return {"key": key, "operator": "In", "values": list(values)}


OWNER = "uid-rs-1"

CASES = [
    # ---- NodeResourcesFit (LeastAllocated) ----
    Case(
        "least allocated: differently sized nodes",
        "NodeResourcesFit",
        cpu_and_memory(),
        [plain_node("node1", "4000m", "10000"), plain_node("node2", "6000m", "10000")],
        {"node1": 37, "node2": 50},
    ),
    Case(
        "least allocated: pods scheduled with resources",
        "NodeResourcesFit",
        cpu_and_memory(),
        [plain_node("node1", "10000m", "20000"), plain_node("node2", "10000m", "20000")],
        {"node1": 57, "node2": 45},
        [cpu_only("e1", node_name="node1"), cpu_and_memory("e2", node_name="node2")],
    ),
    Case(
        "least allocated: requested beyond capacity scores 0 for that resource",
        "NodeResourcesFit",
        cpu_and_memory(),
        [plain_node("node1", "4000m", "4000")],
        {"node1": 12},  # cpu (4000-3000)*100/4000 = 25, memory 0 -> 12
    ),
    Case(
        "least allocated: no requests count the non-zero defaults (100m, 200Mi)",
        "NodeResourcesFit",
        pod("p"),
        [plain_node("node1", "1000m", "400Mi")],
        {"node1": 70},  # cpu 90, memory 50
    ),
    # ---- NodeResourcesBalancedAllocation ----
    Case(
        "balanced: differently sized nodes",
        "NodeResourcesBalancedAllocation",
        cpu_and_memory(),
        [plain_node("node1", "4000m", "10000"), plain_node("node2", "6000m", "10000")],
        {"node1": 87, "node2": 100},
    ),
    Case(
        "balanced: pods scheduled with resources",
        "NodeResourcesBalancedAllocation",
        cpu_and_memory(),
        [plain_node("node1", "10000m", "20000"), plain_node("node2", "10000m", "20000")],
        {"node1": 82, "node2": 95},
        [cpu_only("e1", node_name="node1"), cpu_and_memory("e2", node_name="node2")],
    ),
    Case(
        "balanced: fractions cap at 1",
        "NodeResourcesBalancedAllocation",
        cpu_and_memory(),
        [plain_node("node1", "2000m", "10000")],
        {"node1": 75},  # cpu 1.0 (capped), memory 0.5 -> std 0.25
    ),
    Case(
        "balanced: a pod that requests nothing is skipped",
        "NodeResourcesBalancedAllocation",
        pod("p"),
        [plain_node("node1", "4000m", "10000")],
        None,
    ),
    # ---- ImageLocality ----
    Case(
        "image locality: Kubernetes' two-node case",
        "ImageLocality",
        pod(
            "p", containers=[container("a", image="gcr.io/40"), container("b", image="gcr.io/250")]
        ),
        [
            image_node("node1", ("gcr.io/40:latest", 40 * MB), ("gcr.io/300:latest", 300 * MB)),
            image_node("node2", ("gcr.io/250:latest", 250 * MB), ("gcr.io/10:latest", 10 * MB)),
        ],
        {"node1": 0, "node2": 5},
    ),
    Case(
        "image locality: an image on every node",
        "ImageLocality",
        pod("p", containers=[container("a", image="gcr.io/300:latest")]),
        [
            image_node("node1", ("gcr.io/300:latest", 300 * MB)),
            image_node("node2", ("gcr.io/300:latest", 300 * MB)),
            node("node3"),
        ],
        {"node1": 18, "node2": 18, "node3": 0},  # 300MB x 2/3 = 200MB: (200-23)/(1000-23)
    ),
    Case(
        "image locality: no node has the image",
        "ImageLocality",
        pod("p", containers=[container("a", image="gcr.io/other")]),
        [image_node("node1", ("gcr.io/300:latest", 300 * MB))],
        None,
    ),
    # ---- TaintToleration ----
    Case(
        "taints: untolerated PreferNoSchedule taints score lower",
        "TaintToleration",
        pod(
            "p",
            tolerations=[
                {"key": "foo", "operator": "Equal", "value": "bar", "effect": "PreferNoSchedule"}
            ],
        ),
        [
            node("nodeA"),
            node("nodeB", taints=[preferred(1, "foo", "bar")]),
            node("nodeC", taints=[preferred(1, "foo", "blah")]),
        ],
        {"nodeA": 100, "nodeB": 100, "nodeC": 0},
    ),
    Case(
        "taints: the more intolerable taints, the lower the score",
        "TaintToleration",
        pod(
            "p",
            tolerations=[
                {"key": "foo", "operator": "Equal", "value": "bar", "effect": "PreferNoSchedule"}
            ],
        ),
        [
            node("nodeA"),
            node("nodeB", taints=[preferred(1, "cpu-type", "arm64")]),
            node(
                "nodeC",
                taints=[preferred(1, "cpu-type", "arm64"), preferred(1, "disk-type", "ssd")],
            ),
        ],
        {"nodeA": 100, "nodeB": 50, "nodeC": 0},
    ),
    Case(
        "taints: only PreferNoSchedule taints and tolerations count",
        "TaintToleration",
        pod(
            "p",
            tolerations=[
                {"key": "cpu-type", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"},
                {"key": "disk-type", "operator": "Equal", "value": "ssd", "effect": "NoSchedule"},
            ],
        ),
        [
            node("nodeA"),
            node("nodeB", taints=[{"key": "cpu-type", "value": "arm64", "effect": "NoSchedule"}]),
            node("nodeC", taints=[preferred(1, "disk-type", "ssd")]),
        ],
        {"nodeA": 100, "nodeB": 100, "nodeC": 0},
    ),
    Case(
        "taints: no taints anywhere",
        "TaintToleration",
        pod("p"),
        [node("nodeA"), node("nodeB")],
        {"nodeA": 100, "nodeB": 100},
    ),
    # ---- NodeAffinity (preferred) ----
    Case(
        "node affinity: none preferred skips",
        "NodeAffinity",
        pod("p"),
        [node("node1", labels={"foo": "bar"})],
        None,
    ),
    Case(
        "node affinity: only node1 matches",
        "NodeAffinity",
        pod("p", affinity=node_affinity_preferred((2, {"matchExpressions": [expr("foo", "bar")]}))),
        [
            node("node1", labels={"foo": "bar"}),
            node("node2", labels={"key": "value"}),
            node("node3"),
        ],
        {"node1": 100, "node2": 0, "node3": 0},
    ),
    Case(
        "node affinity: all match, node5 more",
        "NodeAffinity",
        pod(
            "p",
            affinity=node_affinity_preferred(
                (2, {"matchExpressions": [expr("foo", "bar")]}),
                (4, {"matchExpressions": [expr("key", "value")]}),
                (
                    5,
                    {
                        "matchExpressions": [
                            expr("foo", "bar"),
                            expr("key", "value"),
                            expr("az", "az1"),
                        ]
                    },
                ),
            ),
        ),
        [
            node("node1", labels={"foo": "bar"}),
            node("node5", labels={"foo": "bar", "key": "value", "az": "az1"}),
            node("node2", labels={"key": "value"}),
        ],
        {"node1": 18, "node5": 100, "node2": 36},
    ),
    Case(
        "node affinity: no node matches",
        "NodeAffinity",
        pod("p", affinity=node_affinity_preferred((2, {"matchExpressions": [expr("foo", "bar")]}))),
        [node("node1", labels={"az": "az1"}), node("node2")],
        {"node1": 0, "node2": 0},
    ),
    # ---- OwnerSpread ----
    Case(
        "spread: fewer pods of the owner score higher",
        "OwnerSpread",
        pod("p", owner_uid=OWNER),
        [node("n1"), node("n2"), node("n3")],
        {"n1": 0, "n2": 50, "n3": 100},
        [
            pod("a", owner_uid=OWNER, node_name="n1"),
            pod("b", owner_uid=OWNER, node_name="n1"),
            pod("c", owner_uid=OWNER, node_name="n2"),
            pod("d", owner_uid="other", node_name="n3"),
        ],
    ),
    Case(
        "spread: float arithmetic as Kubernetes (100 x 29/50 truncates to 57, not 58)",
        "OwnerSpread",
        pod("p", owner_uid=OWNER),
        [node("n1"), node("n2")],
        {"n1": 0, "n2": 57},
        [pod(f"a{i}", owner_uid=OWNER, node_name="n1") for i in range(50)]
        + [pod(f"b{i}", owner_uid=OWNER, node_name="n2") for i in range(21)],
    ),
    Case(
        "spread: no pods of the owner yet",
        "OwnerSpread",
        pod("p", owner_uid=OWNER),
        [node("n1"), node("n2")],
        {"n1": 100, "n2": 100},
    ),
    Case("spread: a pod without owner is skipped", "OwnerSpread", pod("p"), [node("n1")], None),
]


ZONED = [
    node("n1", labels={"zone": "a"}),
    node("n2", labels={"zone": "a"}),
    node("n3", labels={"zone": "b"}),
]

CASES += [
    Case(
        "inter-pod: nothing to score skips",
        "InterPodAffinity",
        pod("p"),
        ZONED,
        None,
        [pod("e", labels={"app": "web"}, node_name="n1")],
    ),
    Case(
        "inter-pod: preferred anti-affinity by hostname",
        "InterPodAffinity",
        pod("p", affinity=preferred_anti_affinity(5, {"app": "web"}, "kubernetes.io/hostname")),
        ZONED,
        {"n1": 0, "n2": 100, "n3": 100},
        [pod("e", labels={"app": "web"}, node_name="n1")],
    ),
    Case(
        "inter-pod: preferred affinity by zone",
        "InterPodAffinity",
        pod("p", affinity=preferred_pod_affinity(3, {"app": "db"}, "zone")),
        ZONED,
        {"n1": 100, "n2": 100, "n3": 0},
        [pod("e", labels={"app": "db"}, node_name="n2")],
    ),
    Case(
        "inter-pod: an existing pod's preferred affinity attracts the pod (symmetry)",
        "InterPodAffinity",
        pod("p", labels={"app": "web"}),
        ZONED,
        {"n1": 0, "n2": 0, "n3": 100},
        [pod("e", affinity=preferred_pod_affinity(4, {"app": "web"}, "zone"), node_name="n3")],
    ),
    Case(
        "inter-pod: affinity and anti-affinity weights add up",
        "InterPodAffinity",
        pod(
            "p",
            affinity={
                **preferred_pod_affinity(4, {"app": "db"}, "zone"),
                **preferred_anti_affinity(2, {"app": "web"}, "kubernetes.io/hostname"),
            },
        ),
        ZONED,
        # n1: +4 (zone a) -2 (web here) = 2; n2: +4; n3: 0 -> min-max over 0..4
        {"n1": 50, "n2": 100, "n3": 0},
        [
            pod("db", labels={"app": "db"}, node_name="n2"),
            pod("web", labels={"app": "web"}, node_name="n1"),
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.plugin}: {c.id}" for c in CASES])
def test_score(case: Case) -> None:
    assert run_score(case) == case.expected
