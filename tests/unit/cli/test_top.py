"""``kumo top`` tables from metrics.k8s.io objects (pure formatting)."""

from __future__ import annotations

from typing import Any

from kumo.cli.top_commands import node_rows, percent, pod_rows


def node(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": memory}}}


def metrics(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "usage": {"cpu": cpu, "memory": memory}}


def pod(namespace: str, name: str, *containers: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "containers": [{"name": n, "usage": {"cpu": c, "memory": m}} for n, c, m in containers],
    }


def test_node_rows_show_usage_and_its_share_of_allocatable() -> None:
    rows = node_rows(
        [metrics("b", "250000000n", "1048576Ki"), metrics("a", "1500m", "512Mi")],
        [node("a", "2", "4Gi"), node("b", "1900m", "2Gi")],
        None,
    )
    assert rows == [
        ["a", "1500m", "75%", "512Mi", "12%"],
        ["b", "250m", "13%", "1024Mi", "50%"],
    ]


def test_node_rows_sort_by_cpu_or_memory_descending() -> None:
    usage = [metrics("a", "100m", "3Gi"), metrics("b", "900m", "1Gi")]
    nodes = [node("a", "2", "8Gi"), node("b", "2", "8Gi")]
    assert [r[0] for r in node_rows(usage, nodes, "cpu")] == ["b", "a"]
    assert [r[0] for r in node_rows(usage, nodes, "memory")] == ["a", "b"]


def test_a_node_without_allocatable_has_unknown_shares() -> None:
    (row,) = node_rows([metrics("gone", "1m", "1Mi")], [], None)
    assert row[2] == row[4] == "<unknown>"
    assert percent(1, 0) == "<unknown>"


def test_pod_rows_sum_containers_and_round_cpu_up() -> None:
    listed = [
        pod("team", "web", ("app", "1500001n", "10Mi"), ("proxy", "2m", "5Mi")),
        pod("team", "db", ("pg", "300m", "200Mi")),
    ]
    rows = pod_rows(listed, all_namespaces=False, containers=False, sort_by=None, total=False)
    assert rows == [["db", "300m", "200Mi"], ["web", "4m", "15Mi"]]
    by_memory = pod_rows(
        listed, all_namespaces=True, containers=False, sort_by="memory", total=True
    )
    assert by_memory == [
        ["team", "db", "300m", "200Mi"],
        ["team", "web", "4m", "15Mi"],
        ["", "", "________", "________"],
        ["", "", "304m", "215Mi"],
    ]


def test_pod_rows_per_container() -> None:
    listed = [pod("team", "web", ("proxy", "2m", "5Mi"), ("app", "1m", "10Mi"))]
    rows = pod_rows(listed, all_namespaces=False, containers=True, sort_by=None, total=False)
    assert rows == [["web", "app", "1m", "10Mi"], ["web", "proxy", "2m", "5Mi"]]
