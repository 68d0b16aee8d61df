"""The fast paths agree exactly with the per-node plugin logic, on random clusters.

- every Filter plugin's ``filter_nodes`` keeps exactly the nodes its ``filter`` accepts;
- every Score plugin's ``score_nodes`` equals ``score`` node by node;
- ``Framework.find_feasible`` (batch filters over chunks, static-filter cache) returns the
  same nodes as the reference — every active filter per node, in rotation order from the start
  index, the first ``nodes_to_find`` of them — and moves the start index the same way, also
  while nodes change and pods are assumed;
- ``Framework.run_score`` (memoized, fused, table-normalized) equals the weighted sum of each
  plugin's per-node ``score`` after its ``normalize``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kumo.platform.scheduler.framework import CycleState, Framework
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.profile import default_profile
from kumo.platform.scheduler.registry import build_framework
from tests.unit.scheduler.builders import World, container, node, pod

Obj = dict[str, Any]
ZONES = ("a", "b", "c")
DISKS = ("ssd", "hdd")
TAINT_KEYS = ("dedicated", "spot", "gpu")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
IMAGES = ("app:v1", "app:v2", "db:15", "cache:7")
APPS = ("web", "db", "cache")
OWNERS = ("uid-1", "uid-2", "uid-3")


def random_node(rng: random.Random, i: int) -> Obj:
    taints = [
        {
            "key": rng.choice(TAINT_KEYS),
            "value": rng.choice(("x", "y")),
            "effect": rng.choice(EFFECTS),
        }
        for _ in range(rng.choice((0, 0, 0, 1, 2)))
    ]
    images = [
        {"names": [image], "sizeBytes": rng.randint(10, 900) * 1024 * 1024}
        for image in IMAGES
        if rng.random() < 0.3
    ]
    return node(
        f"node-{i:03d}",
        cpu=f"{rng.choice((1000, 2000, 4000, 8000))}m",
        memory=f"{rng.choice((1, 2, 4, 8))}Gi",
        pods=str(rng.choice((3, 10, 110))),
        labels={
            "zone": rng.choice(ZONES),
            "disk": rng.choice(DISKS),
            "gpus": str(rng.randint(0, 4)),
        },
        taints=taints,
        ready=rng.choice(("True",) * 8 + ("False", "Unknown")),
        unschedulable=rng.random() < 0.05,
        images=images,
        extra={"example.com/foo": str(rng.randint(0, 4))} if rng.random() < 0.3 else None,
    )


def random_pod(rng: random.Random, name: str, node_name: str | None = None) -> Obj:
    if rng.random() < 0.4:
        # a plain small pod, which fits most nodes: exercises stopping early
        return pod(
            name, cpu="10m", memory="16Mi", node_name=node_name, owner_uid=rng.choice(OWNERS)
        )
    spec: dict[str, Any] = {}
    containers = [
        container(
            f"c{j}",
            cpu=rng.choice((None, "100m", "250m", "500m", "1")),
            memory=rng.choice((None, "64Mi", "256Mi", "1Gi")),
            image=rng.choice(IMAGES),
            ports=[{"containerPort": 80, "hostPort": rng.choice((8080, 8081))}]
            if rng.random() < 0.15
            else None,
            extra={"example.com/foo": "1"} if rng.random() < 0.1 else None,
        )
        for j in range(rng.choice((1, 1, 2)))
    ]
    if rng.random() < 0.2:
        spec["node_selector"] = {"disk": rng.choice(DISKS)}
    affinity: Obj = {}
    if rng.random() < 0.2:
        op = rng.choice(("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"))
        key, values = (
            ("gpus", [str(rng.randint(0, 3))])
            if op in ("Gt", "Lt")
            else ("zone", [rng.choice(ZONES)])
        )
        requirement: Obj = {"key": key, "operator": op}
        if op not in ("Exists", "DoesNotExist"):
            requirement["values"] = values
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [requirement]}]
            }
        }
    if rng.random() < 0.2:
        affinity.setdefault("nodeAffinity", {})[
            "preferredDuringSchedulingIgnoredDuringExecution"
        ] = [
            {
                "weight": rng.randint(1, 100),
                "preference": {
                    "matchExpressions": [
                        {"key": "disk", "operator": "In", "values": [rng.choice(DISKS)]}
                    ]
                },
            }
        ]
    app = rng.choice(APPS)
    key = rng.choice(("kubernetes.io/hostname", "zone"))
    term = {"labelSelector": {"matchLabels": {"app": rng.choice(APPS)}}, "topologyKey": key}
    if rng.random() < 0.15:
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    elif rng.random() < 0.1:
        affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    elif rng.random() < 0.15:
        kind = rng.choice(("podAffinity", "podAntiAffinity"))
        affinity[kind] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": rng.randint(1, 100), "podAffinityTerm": term}
            ]
        }
    tolerations = [
        {"key": rng.choice(TAINT_KEYS), "operator": "Exists", "effect": rng.choice(("", *EFFECTS))}
        for _ in range(rng.choice((0, 0, 1, 2)))
    ]
    if rng.random() < 0.05:
        tolerations.append({"operator": "Exists"})
    return pod(
        name,
        namespace=rng.choice(("default", "default", "other")),
        containers=containers,
        labels={"app": app},
        node_name=node_name,
        node_selector=spec.get("node_selector"),
        affinity=affinity or None,
        tolerations=tolerations or None,
        owner_uid=rng.choice((None, *OWNERS)),
    )


def random_world(seed: int) -> tuple[World, random.Random]:
    rng = random.Random(seed)
    count = rng.choice((5, 40, 130, 260, 400, 400))
    nodes = [random_node(rng, i) for i in range(count)]
    existing = [
        random_pod(rng, f"e{i}", node_name=rng.choice(nodes)["metadata"]["name"])
        for i in range(rng.randint(0, count))
    ]
    return World(nodes, existing), rng


def reference_feasible(
    framework: Framework, state: CycleState, pod_info: PodInfo, nodes: list[NodeInfo], start: int
) -> tuple[list[NodeInfo], int]:
    total = len(nodes)
    wanted = framework.nodes_to_find(total)
    found: list[NodeInfo] = []
    examined = total
    for offset in range(total):
        candidate = nodes[(start + offset) % total]
        if framework.filter_node(state, pod_info, candidate).is_success:
            found.append(candidate)
            if len(found) == wanted:
                examined = offset + 1
                break
    return found, (start + examined) % total


SEEDS = list(range(40))


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_filters_and_scores_agree(seed: int) -> None:
    world, rng = random_world(seed)
    nodes = world.cache.node_list
    for i in range(15):
        pod_info = PodInfo(random_pod(rng, f"p{i}"))
        for plugin in world.framework.filter_plugins:
            state = CycleState()
            if hasattr(plugin, "pre_filter"):
                _, status = plugin.pre_filter(state, pod_info)
                if not status.is_success:
                    continue
            expected = [n for n in nodes if plugin.filter(state, pod_info, n).is_success]
            assert plugin.filter_nodes(state, pod_info, nodes) == expected, plugin.name
        for scorer, _ in world.framework.score_plugins:
            state = CycleState()
            if hasattr(scorer, "pre_score") and scorer.pre_score(state, pod_info, nodes).is_skip:
                continue
            expected_scores = [scorer.score(state, pod_info, n) for n in nodes]
            assert scorer.score_nodes(state, pod_info, nodes) == expected_scores, scorer.name


@pytest.mark.parametrize("seed", SEEDS)
def test_framework_fast_paths_match_the_reference(seed: int) -> None:
    world, rng = random_world(1000 + seed)
    percentage = rng.choice((0, 10, 30, 100))
    profile = default_profile(percentage_of_nodes_to_score=percentage)
    fast = build_framework(profile, world.handle)
    plain = build_framework(profile, world.handle)
    plain.memo_key = None  # no fused, memoized scores
    cache = world.cache
    for i in range(25):
        if rng.random() < 0.2:
            # A node changes (taints, labels, readiness): the static cache must notice.
            cache.set_node(random_node(rng, rng.randrange(len(cache.node_list))))
        pod_info = PodInfo(random_pod(rng, f"p{i}"))
        nodes = cache.node_list
        start = fast.next_start_index
        assert plain.next_start_index == start

        states = [CycleState() for _ in range(3)]
        results = []
        for framework, state in zip((fast, plain, fast), states[:2], strict=False):
            allowed, status = framework.run_pre_filter(state, pod_info)
            results.append((allowed, status))
        (allowed, status), (allowed_plain, status_plain) = results
        assert (allowed, status) == (allowed_plain, status_plain)
        if not status.is_success:
            continue
        candidates = nodes if allowed is None else [n for n in nodes if n.name in allowed]
        if not candidates:
            continue
        expected, expected_next = reference_feasible(fast, states[0], pod_info, candidates, start)
        generation = cache.static_generation if allowed is None else None
        got_fast = fast.find_feasible(states[0], pod_info, candidates, generation)
        got_plain = plain.find_feasible(states[1], pod_info, candidates, None)
        assert got_fast == expected
        assert got_plain == expected
        assert fast.next_start_index == plain.next_start_index == expected_next
        if not expected:
            continue

        for state in states[:2]:
            assert fast.run_pre_score(state, pod_info, expected).is_success
        totals_fast = fast.run_score(states[0], pod_info, expected)
        totals_plain = plain.run_score(states[1], pod_info, expected)
        reference = [0] * len(expected)
        for plugin, weight in fast.score_plugins:
            if plugin.name in states[0].skip_score:
                continue
            scores = [plugin.score(states[0], pod_info, n) for n in expected]
            if plugin.normalizes:
                plugin.normalize(states[0], pod_info, scores)
            reference = [r + s * weight for r, s in zip(reference, scores, strict=True)]
        assert totals_fast == reference
        assert totals_plain == reference
        # Place the pod like the scheduler would, so later pods see it.
        best = expected[totals_fast.index(max(totals_fast))]
        cache.assume(pod_info, best.name)


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_normalized_tables_agree_with_normalize(seed: int) -> None:
    """A plugin's ``normalized_table`` (when it gives one) maps every raw score to what its
    ``normalize`` makes of it, for counts of every size, all zeros included."""
    world, rng = random_world(3000 + seed)
    profile = default_profile()
    framework = build_framework(profile, world.handle)
    pod_info = PodInfo(random_pod(rng, "p"))
    tabled = 0
    for plugin in framework.plugins:
        if not getattr(plugin, "normalizes", False):
            continue
        for highest in (0, 1, 2, 7, 100, 5000):
            scores = [rng.randint(0, highest) for _ in range(rng.randint(1, 60))]
            table = plugin.normalized_table(CycleState(), pod_info, scores)  # type: ignore[attr-defined]
            expected = list(scores)
            plugin.normalize(CycleState(), pod_info, expected)  # type: ignore[attr-defined]
            if table is not None:
                tabled += 1
                assert [table[s] for s in scores] == expected, (plugin.name, scores)
    assert tabled > 0
