"""Resource metrics end to end: a real ``kumo agent`` samples real Podman containers, the
API server serves them as ``metrics.k8s.io/v1beta1`` NodeMetrics / PodMetrics, and
``kumo top`` prints them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from kumo.client import ApiException, Client
from kumo.model.validation import cpu_millis, memory_bytes
from tests.conftest import ApiServerProcess
from tests.integration.agent.conftest import (
    BUSYBOX,
    AgentProcess,
    pod_manifest,
)
from tests.integration.components import module_agent, run_kumo, wait_until

pytestmark = pytest.mark.podman

METRICS = "/apis/metrics.k8s.io/v1beta1"
MI = 1024 * 1024
# One container spins (capped at 500m by its limit), one holds ~48 MiB in a shell variable.
SPIN = "while :; do :; done"
# (the loop keeps the shell alive: a last plain command would replace it, freeing x)
HOLD = "x=$(head -c 48000000 /dev/zero | tr '\\0' a); echo held; while :; do sleep 3600; done"


@pytest.fixture(scope="module")
def sampled_agent(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    yield from module_agent(api_server, tmp_path_factory, "metrics", "--stats-interval", "1")


def _pod_metrics(client: Client, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.request(
            "GET", f"{METRICS}/namespaces/{namespace}/pods/{name}"
        ).json()
    except ApiException as err:
        if err.code == 404:
            return None
        raise
    return found


def _usage(metrics: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        c["name"]: (cpu_millis(c["usage"]["cpu"]), memory_bytes(c["usage"]["memory"]))
        for c in metrics["containers"]
    }


@pytest.fixture(scope="module")
def busy_pod(api_server: ApiServerProcess, sampled_agent: AgentProcess) -> Iterator[str]:
    """A pod in namespace ``default`` with a spinning and a memory-holding container,
    measured at least once."""
    name = f"busy-{sampled_agent.name}"
    manifest = pod_manifest(
        name,
        sampled_agent.name,
        [
            {
                "name": "spin",
                "image": BUSYBOX,
                "command": ["sh", "-c", SPIN],
                "resources": {"limits": {"cpu": "500m"}},
            },
            {"name": "hold", "image": BUSYBOX, "command": ["sh", "-c", HOLD]},
        ],
    )
    manifest["metadata"]["labels"] = {"app": "busy"}
    with Client(api_server.client_config()) as client:
        client.create_raw(manifest)
        try:
            yield name
        finally:
            client.request(
                "DELETE",
                f"/api/v1/namespaces/default/pods/{name}",
                params={"gracePeriodSeconds": "0"},
            )


def test_pod_metrics_measure_what_the_containers_use(
    api_server: ApiServerProcess, busy_pod: str
) -> None:
    with Client(api_server.client_config()) as client:

        def measured() -> dict[str, tuple[int, int]] | None:
            metrics = _pod_metrics(client, "default", busy_pod)
            if metrics is None:
                return None
            usage = _usage(metrics)
            # the holder has filled its variable (40 MiB and more) and gone to sleep
            cpu, memory = usage.get("hold", (0, 0))
            return usage if memory > 40 * MI and cpu < 50 else None

        usage = wait_until(measured, 60, "usage sampled")
        metrics = _pod_metrics(client, "default", busy_pod)
    assert metrics is not None
    assert metrics["kind"] == "PodMetrics"
    assert metrics["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert metrics["metadata"]["labels"] == {"app": "busy"}
    assert float(metrics["window"].rstrip("s")) > 0
    spin_cpu, spin_memory = usage["spin"]
    hold_cpu, hold_memory = usage["hold"]
    # the spinner is capped at 500m; on a shared 2-core machine it gets at least a share
    assert 100 <= spin_cpu <= 600, usage
    assert hold_cpu < 50 <= spin_cpu, usage
    assert spin_memory < 16 * MI < 40 * MI < hold_memory < 200 * MI, usage


def test_node_metrics_and_the_lists(
    api_server: ApiServerProcess, sampled_agent: AgentProcess, busy_pod: str
) -> None:
    with Client(api_server.client_config()) as client:
        node = wait_until(lambda: _node_metrics(client, sampled_agent.name), 60, "node metrics")
        assert node["kind"] == "NodeMetrics"
        cpu, memory = cpu_millis(node["usage"]["cpu"]), memory_bytes(node["usage"]["memory"])
        assert cpu >= 100  # at least the spinner runs on this machine
        assert memory > 48 * MI
        nodes = client.request("GET", f"{METRICS}/nodes").json()
        assert nodes["kind"] == "NodeMetricsList"
        assert sampled_agent.name in {n["metadata"]["name"] for n in nodes["items"]}
        wait_until(lambda: _pod_metrics(client, "default", busy_pod), 60, "pod metrics")
        selected = client.request(
            "GET", f"{METRICS}/namespaces/default/pods", params={"labelSelector": "app=busy"}
        ).json()
        assert selected["kind"] == "PodMetricsList"
        assert [p["metadata"]["name"] for p in selected["items"]] == [busy_pod]
        everywhere = client.request("GET", f"{METRICS}/pods").json()
        assert busy_pod in {p["metadata"]["name"] for p in everywhere["items"]}
        none = client.request(
            "GET", f"{METRICS}/namespaces/default/pods", params={"labelSelector": "app=nothing"}
        ).json()
        assert none["items"] == []
        with pytest.raises(ApiException) as missing:
            client.request("GET", f"{METRICS}/namespaces/default/pods/no-such-pod")
        assert missing.value.code == 404
        assert 'podmetrics.metrics.k8s.io "no-such-pod" not found' in missing.value.message
        with pytest.raises(ApiException) as bad:
            client.request("GET", f"{METRICS}/nodes", params={"labelSelector": "a in (b"})
        assert bad.value.code == 400
        groups = client.request("GET", "/apis").json()["groups"]
        assert "metrics.k8s.io" in {g["name"] for g in groups}
        resources = client.request("GET", METRICS).json()["resources"]
        assert {(r["name"], r["kind"]) for r in resources} == {
            ("nodes", "NodeMetrics"),
            ("pods", "PodMetrics"),
        }


def _node_metrics(client: Client, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.request("GET", f"{METRICS}/nodes/{name}").json()
    except ApiException as err:
        if err.code == 404:
            return None
        raise
    return found


def test_kumo_top_prints_pods_and_nodes(
    api_server: ApiServerProcess, sampled_agent: AgentProcess, busy_pod: str
) -> None:
    with Client(api_server.client_config()) as client:
        wait_until(lambda: _pod_metrics(client, "default", busy_pod), 60, "pod metrics")
    pods = run_kumo(api_server, "top", "pods", "-l", "app=busy")
    assert pods.returncode == 0, pods.stderr
    header, *rows = pods.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    name, cpu, memory = rows[0].split()
    assert name == busy_pod and cpu.endswith("m") and memory.endswith("Mi")
    assert 100 <= int(cpu[:-1]) <= 1200 and int(memory[:-2]) >= 40
    per_container = run_kumo(api_server, "top", "pod", busy_pod, "--containers", "--no-headers")
    assert per_container.returncode == 0, per_container.stderr
    names = [line.split()[:2] for line in per_container.stdout.splitlines()]
    assert names == [[busy_pod, "hold"], [busy_pod, "spin"]]
    nodes = run_kumo(api_server, "top", "nodes", "--sort-by", "cpu")
    assert nodes.returncode == 0, nodes.stderr
    header, *rows = nodes.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    mine = next(r.split() for r in rows if r.split()[0] == sampled_agent.name)
    assert mine[2].endswith("%") and mine[4].endswith("%")
    missing = run_kumo(api_server, "top", "pod", "no-such-pod")
    assert missing.returncode == 1
    assert 'podmetrics.metrics.k8s.io "no-such-pod" not found' in missing.stderr
    empty = run_kumo(api_server, "top", "pods", "-l", "app=nothing")
    assert empty.returncode == 0 and "No resources found in default namespace." in empty.stderr


def test_metrics_follow_rbac(api_server: ApiServerProcess, busy_pod: str, namespace: str) -> None:
    """A viewer of one namespace reads its pods' metrics, not the nodes' nor another
    namespace's; without a token: 401."""
    admin_config = api_server.client_config()
    with Client(admin_config) as admin:
        token = admin.request(
            "POST",
            "/apis/kumo.dev/v1/usertokens",
            body={
                "apiVersion": "kumo.dev/v1",
                "kind": "UserToken",
                "spec": {"user": f"viewer-{namespace}", "groups": [], "description": "test"},
            },
        ).json()["status"]["token"]
        admin.create_raw(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "viewer", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [{"kind": "User", "name": f"viewer-{namespace}"}],
            }
        )
    viewer_config = dataclasses.replace(admin_config, token=token)
    with Client(viewer_config) as viewer:
        listed = viewer.request("GET", f"{METRICS}/namespaces/{namespace}/pods").json()
        assert listed["items"] == []
        for path in (
            f"{METRICS}/nodes",
            f"{METRICS}/namespaces/default/pods",
            f"{METRICS}/namespaces/default/pods/{busy_pod}",
            f"{METRICS}/pods",
        ):
            with pytest.raises(ApiException) as denied:
                viewer.request("GET", path)
            assert denied.value.code == 403, path
    with api_server.http(authenticated=False) as anonymous:
        answer = anonymous.get(f"{METRICS}/nodes")
        assert answer.status_code == 401
        assert answer.json()["kind"] == "Status"
