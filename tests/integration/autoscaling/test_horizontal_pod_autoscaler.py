"""The HorizontalPodAutoscaler end to end on real Podman: a real ``kumo agent`` samples the
containers, the API server serves their usage (metrics.k8s.io), and ``kumo controllers``
(deployment, replicaset, garbage collector and the HPA controller, as the controller-manager
identity) scales Deployments on it.

- busy pods (spinning, capped at 200m against a 100m request) scale up to maxReplicas;
- idle pods scale down to minReplicas once the (here 8 s) stabilization window allows;
- pods without a cpu request: ScalingActive=False naming the missing request, no scaling.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kumo.client import Client
from kumo.model.registry import by_kind
from tests.conftest import ApiServerProcess
from tests.integration.agent.conftest import BUSYBOX, AgentProcess
from tests.integration.components import module_agent, module_controllers, run_kumo, wait_until
from tests.integration.services.conftest import Controllers

pytestmark = pytest.mark.podman

Obj = dict[str, Any]
DEPLOYMENT = by_kind("apps/v1", "Deployment")
HPA = by_kind("autoscaling/v2", "HorizontalPodAutoscaler")
EVENT = by_kind("v1", "Event")
assert DEPLOYMENT is not None and HPA is not None and EVENT is not None
SPIN = "while :; do :; done"
IDLE = "while :; do sleep 3600; done"
# seconds of the scale-down stabilization window in the scale-down test
WINDOW = 8


@pytest.fixture(scope="module")
def agent(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    yield from module_agent(api_server, tmp_path_factory, "hpa", "--stats-interval", "1")


@pytest.fixture(scope="module")
def controllers(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controllers]:
    yield from module_controllers(
        api_server,
        tmp_path_factory,
        "hpa",
        "deployment,replicaset,garbagecollector,horizontalpodautoscaling",
        "--horizontal-pod-autoscaler-sync-period",
        "1",
    )


def deployment(name: str, node: str, command: str, *, cpu_request: str | None) -> Obj:
    resources: Obj = {"limits": {"cpu": "200m"}}
    if cpu_request:
        resources["requests"] = {"cpu": cpu_request}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": BUSYBOX,
                            "command": ["sh", "-c", command],
                            "resources": resources,
                        }
                    ],
                },
            },
        },
    }


def hpa(name: str, *, min_replicas: int, max_replicas: int, percent: int, **behavior: Any) -> Obj:
    body: Obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": percent},
                    },
                }
            ],
        },
    }
    if behavior:
        body["spec"]["behavior"] = behavior
    return body


def condition(hpa_obj: Obj, kind: str) -> Obj:
    for entry in (hpa_obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def events_of(client: Client, namespace: str, name: str) -> list[Obj]:
    items, _ = client.list_all_raw(EVENT, namespace)  # type: ignore[arg-type]
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


def cleanup(client: Client, namespace: str, name: str) -> None:
    client.request(
        "DELETE",
        DEPLOYMENT.path(namespace, name),  # type: ignore[union-attr]
        params={"propagationPolicy": "Foreground"},
    )


def replicas(client: Client, namespace: str, name: str) -> int:
    found = client.get_raw(DEPLOYMENT, name, namespace)  # type: ignore[arg-type]
    return int(found["spec"].get("replicas", 0))


def diagnostics(controllers: Controllers, agent: AgentProcess) -> str:
    return f"controllers:\n{controllers.log_tail()}\nagent:\n{agent.log_tail(20)}"


def test_busy_pods_scale_up_to_max_replicas(
    api_server: ApiServerProcess,
    agent: AgentProcess,
    controllers: Controllers,
    client: Client,
    namespace: str,
) -> None:
    name = "busy"
    client.create_raw(deployment(name, agent.name, SPIN, cpu_request="100m"), namespace)
    try:
        # kumo autoscale makes the HPA: 50% of the 100m request, 1..3 replicas
        made = run_kumo(
            api_server, "autoscale", "deployment/busy", "-n", namespace,
            "--min", "1", "--max", "3", "--cpu-percent", "50",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "horizontalpodautoscaler.autoscaling/busy autoscaled" in made.stdout

        # ~200% of the request against a 50% target asks for 4: bounded by maxReplicas
        wait_until(
            lambda: replicas(client, namespace, name) == 3,
            90,
            f"scaled to 3\n{diagnostics(controllers, agent)}",
        )
        scaled = wait_until(
            lambda: (
                (found := client.get_raw(HPA, name, namespace))
                .get("status", {})
                .get("desiredReplicas")
                == 3
                and found
            ),
            30,
            "HPA status",
        )
        status = scaled["status"]
        assert status["lastScaleTime"]
        metric = status["currentMetrics"][0]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
        assert metric["resource"]["current"]["averageUtilization"] > 100, status
        assert condition(scaled, "ScalingActive")["reason"] == "ValidMetricFound"
        assert condition(scaled, "AbleToScale")["status"] == "True"
        assert condition(scaled, "ScalingLimited") == {
            **condition(scaled, "ScalingLimited"),
            "status": "True",
            "reason": "TooManyReplicas",
        }, status
        rescales = wait_until(
            lambda: [
                e for e in events_of(client, namespace, name) if e["reason"] == "SuccessfulRescale"
            ],
            15,
            "SuccessfulRescale event",
        )
        assert any(
            e["message"]
            == "New size: 3; reason: cpu resource utilization (percentage of request) above target"
            for e in rescales
        ), rescales

        # kumo get hpa: kubectl's columns, the live utilization against the target; REPLICAS
        # is the count the HPA last saw (3 from the pass after the rescale)
        row = re.compile(r"busy\s+Deployment/busy\s+cpu: \d+%/50%\s+1\s+3\s+3\s")

        def table() -> list[str]:
            return run_kumo(api_server, "get", "hpa", "-n", namespace).stdout.splitlines()

        shown = wait_until(lambda: (t := table()) and row.match(t[-1]) and t, 15, "kumo get hpa")
        assert shown[0].split()[:4] == ["NAME", "REFERENCE", "TARGETS", "MINPODS"], shown
    finally:
        cleanup(client, namespace, name)


def test_idle_pods_scale_down_to_min_replicas(
    agent: AgentProcess, controllers: Controllers, client: Client, namespace: str
) -> None:
    name = "idle"
    manifest = deployment(name, agent.name, IDLE, cpu_request="100m")
    manifest["spec"]["replicas"] = 3
    client.create_raw(manifest, namespace)
    try:
        # a short scale-down window: the HPA holds 3 for its length, then goes to 1
        client.create_raw(
            hpa(
                name, min_replicas=1, max_replicas=3, percent=50,
                scaleDown={"stabilizationWindowSeconds": WINDOW},
            ),
            namespace,
        )  # fmt: skip
        held = wait_until(
            lambda: (
                condition(found := client.get_raw(HPA, name, namespace), "AbleToScale").get(
                    "reason"
                )
                == "ScaleDownStabilized"
                and found
            ),
            60,
            f"ScaleDownStabilized\n{diagnostics(controllers, agent)}",
        )
        assert held["status"]["desiredReplicas"] == 3
        assert replicas(client, namespace, name) == 3
        wait_until(
            lambda: replicas(client, namespace, name) == 1,
            WINDOW + 30,
            f"scaled down to 1\n{diagnostics(controllers, agent)}",
        )
        rescales = wait_until(
            lambda: [
                e for e in events_of(client, namespace, name) if e["reason"] == "SuccessfulRescale"
            ],
            15,
            "SuccessfulRescale event",
        )
        assert rescales[0]["message"] == "New size: 1; reason: All metrics below target"
        found = client.get_raw(HPA, name, namespace)  # type: ignore[arg-type]
        assert found["status"]["desiredReplicas"] == 1
        # the pods left are the ones the ReplicaSet keeps: one, and it stays
        time.sleep(3)
        assert replicas(client, namespace, name) == 1
    finally:
        cleanup(client, namespace, name)


def test_pods_without_a_cpu_request_are_not_scaled(
    agent: AgentProcess, controllers: Controllers, client: Client, namespace: str
) -> None:
    name = "norequest"
    manifest = deployment(name, agent.name, IDLE, cpu_request=None)
    # a limit alone would default the request to it: this container declares neither
    del manifest["spec"]["template"]["spec"]["containers"][0]["resources"]
    manifest["spec"]["replicas"] = 2
    client.create_raw(manifest, namespace)
    try:
        client.create_raw(hpa(name, min_replicas=1, max_replicas=4, percent=50), namespace)
        # (until the ReplicaSet made the pods, the condition says there are none)
        inactive = wait_until(
            lambda: (
                "missing request for cpu"
                in condition(found := client.get_raw(HPA, name, namespace), "ScalingActive").get(
                    "message", ""
                )
                and found
            ),
            60,
            f"ScalingActive=False\n{diagnostics(controllers, agent)}",
        )
        active = condition(inactive, "ScalingActive")
        assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric"), active
        assert re.search(r"missing request for cpu in pod norequest-\S+$", active["message"])
        assert replicas(client, namespace, name) == 2
        warnings = wait_until(
            lambda: [
                e
                for e in events_of(client, namespace, name)
                if e["reason"] == "FailedGetResourceMetric"
            ],
            15,
            "warning event",
        )
        assert warnings[0]["type"] == "Warning"
    finally:
        cleanup(client, namespace, name)


def test_kumo_autoscale_rejects_bad_input(api_server: ApiServerProcess, namespace: str) -> None:
    missing = run_kumo(api_server, "autoscale", "deployment/nope", "-n", namespace, "--max", "3")
    assert missing.returncode != 0
    assert 'deployments.apps "nope" not found' in missing.stderr, missing.stderr
    bounds = run_kumo(
        api_server, "autoscale", "deployment/x", "-n", namespace, "--min", "5", "--max", "3"
    )
    assert bounds.returncode != 0 and "--min must be between 1 and --max (3)" in bounds.stderr
    unscalable = run_kumo(api_server, "autoscale", "service/x", "-n", namespace, "--max", "3")
    assert unscalable.returncode != 0 and "cannot be autoscaled" in unscalable.stderr
