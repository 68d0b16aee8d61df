"""Pods on a real node: a ``kumo agent`` process running them with real Podman, driven
through the real API server (pods are bound by setting spec.nodeName)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kumo.client import AsyncClient
from tests.conftest import free_port
from tests.integration.agent.conftest import (
    BUSYBOX,
    CONFIG_MAP,
    POD,
    AgentProcess,
    condition,
    container_logs,
    container_status,
    eventually,
    node_containers,
    pod_events,
    pod_manifest,
    podman,
    terminated,
    wait_gone,
    wait_pod,
    waiting_reason,
)

pytestmark = pytest.mark.podman

HTTPD = "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p {port} -h /www"
# A shell that exits at once on SIGTERM (PID 1 ignores signals it has no handler for).
TERM_AWARE = "trap 'exit 0' TERM; {body} sleep 3600 & wait"
CGI_SERVER = (
    "mkdir -p /www/cgi-bin"
    ' && printf \'#!/bin/sh\\necho "$REQUEST_METHOD $REQUEST_URI" > /hooks/prestop-http\\n'
    "echo Content-Type: text/plain\\necho\\necho ok\\n' > /www/cgi-bin/stop"
    " && chmod +x /www/cgi-bin/stop"
    " && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
)


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase"))


async def test_two_containers_reach_each_other_on_localhost(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    manifest = pod_manifest(
        "pair",
        shared_agent.name,
        [
            {
                "name": "server",
                "image": BUSYBOX,
                "command": ["sh", "-c", HTTPD.format(body="hello-from-server", port=8080)],
            },
            {
                "name": "client",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    "for i in $(seq 100); do wget -q -O- http://127.0.0.1:8080/ && exit 0;"
                    " sleep 0.1; done; exit 1",
                ],
            },
        ],
        restartPolicy="Never",
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(
        async_client, "pair", lambda p: bool(terminated(p, "client")), what="client finished"
    )
    finished = terminated(pod, "client")
    assert finished["exitCode"] == 0 and finished["reason"] == "Completed"
    assert container_logs(finished["containerID"]).strip() == "hello-from-server"
    assert "running" in container_status(pod, "server")["state"]
    assert phase(pod) == "Running"  # one container still runs
    assert pod["status"]["podIP"].startswith("10.88.")
    assert pod["status"]["hostIP"] == "127.0.0.1"


async def test_secret_as_file_and_as_env(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "hunter2", "token": "t0k3n"},
        }
    )
    script = (
        'echo "mode=$(stat -L -c %a /etc/creds/password)";'
        ' echo "file=$(cat /etc/creds/password)";'
        ' echo "env=$PASSWORD";'
        ' echo "items=$(stat -L -c %a /etc/picked/renamed):$(cat /etc/picked/renamed)";'
        " ls /etc/picked"
    )
    manifest = pod_manifest(
        "secret-user",
        shared_agent.name,
        [
            {
                "name": "reader",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "env": [
                    {
                        "name": "PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                    }
                ],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/etc/creds"},
                    {"name": "picked", "mountPath": "/etc/picked"},
                ],
            }
        ],
        restartPolicy="Never",
        volumes=[
            {"name": "creds", "secret": {"secretName": "creds"}},
            {
                "name": "picked",
                "secret": {
                    "secretName": "creds",
                    "items": [{"key": "token", "path": "renamed", "mode": 0o440}],
                },
            },
        ],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(async_client, "secret-user", lambda p: phase(p) == "Succeeded")
    output = container_logs(terminated(pod, "reader")["containerID"]).splitlines()
    assert output == [
        "mode=400",
        "file=hunter2",
        "env=hunter2",
        "items=440:t0k3n",
        "renamed",
    ]


async def test_missing_secret_is_a_create_container_config_error(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    manifest = pod_manifest(
        "no-secret",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["true"],
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}
                ],
            }
        ],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(
        async_client,
        "no-secret",
        lambda p: waiting_reason(p, "c") == "CreateContainerConfigError",
    )
    message = container_status(pod, "c")["state"]["waiting"]["message"]
    assert message == 'secret "absent" not found'
    assert phase(pod) == "Pending"


async def test_init_containers_run_in_order_before_the_app(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    def step(name: str) -> dict[str, object]:
        return {
            "name": name,
            "image": BUSYBOX,
            "command": ["sh", "-c", f"sleep 0.3; echo {name} >> /work/order"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }

    manifest = pod_manifest(
        "ordered",
        shared_agent.name,
        [
            {
                "name": "app",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    "cat /work/order; echo app-ran; awk '$2 == \"/mem\" {print $3}' /proc/mounts",
                ],
                "volumeMounts": [
                    {"name": "work", "mountPath": "/work"},
                    {"name": "mem", "mountPath": "/mem"},
                ],
            }
        ],
        restartPolicy="Never",
        initContainers=[step("first"), step("second"), step("third")],
        volumes=[
            {"name": "work", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        ],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(async_client, "ordered", lambda p: phase(p) == "Succeeded")
    assert container_logs(terminated(pod, "app")["containerID"]).split() == [
        "first",
        "second",
        "third",
        "app-ran",
        "tmpfs",  # emptyDir medium Memory
    ]
    finished = [terminated(pod, n, init=True) for n in ("first", "second", "third")]
    assert all(f["reason"] == "Completed" and f["exitCode"] == 0 for f in finished)
    # Each init container started only after the previous one had finished.
    for before, after in itertools.pairwise(finished):
        assert before["finishedAt"] <= after["startedAt"]
    assert condition(pod, "Initialized")["status"] == "True"
    assert condition(pod, "Ready")["reason"] == "PodCompleted"
    # The pod's emptyDir lived in the agent's data dir and goes with the pod.
    pod_dir = shared_agent.data_dir / "pods" / pod["metadata"]["uid"]
    assert (pod_dir / "volumes" / "empty-dir" / "work" / "order").is_file()
    await async_client.delete_raw(POD, "ordered")  # finished pods go at once
    await wait_gone(async_client, "ordered")

    async def removed() -> bool:
        return not pod_dir.exists()

    await eventually(removed, within=10)
    assert node_containers(shared_agent.name, f"kumo.dev/pod-uid={pod['metadata']['uid']}") == []


async def test_a_container_over_its_memory_limit_is_oom_killed(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    manifest = pod_manifest(
        "hog",
        shared_agent.name,
        [
            {
                "name": "hog",
                "image": BUSYBOX,
                "command": ["sh", "-c", "x=a; while true; do x=$x$x; done"],
                "resources": {
                    "requests": {"cpu": "250m"},
                    "limits": {"memory": "16Mi", "cpu": "500m"},
                },
            }
        ],
        restartPolicy="Never",
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(async_client, "hog", lambda p: phase(p) == "Failed", within=40)
    killed = terminated(pod, "hog")
    assert killed["reason"] == "OOMKilled"
    assert killed["exitCode"] == 137
    limits = podman(
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}"
        " {{.HostConfig.CpuShares}}",
        killed["containerID"].removeprefix("podman://"),
    )
    # limits → hard limits; the cpu request → cpu shares (1024 per cpu)
    assert limits.split() == [str(16 * 1024 * 1024), "50000", "100000", "256"]


async def test_readiness_probe_flips_ready(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    manifest = pod_manifest(
        "flip",
        shared_agent.name,
        [
            {
                "name": "web",
                "image": BUSYBOX,
                "command": ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"],
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": 8080},
                    "periodSeconds": 1,
                },
            }
        ],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(async_client, "flip", lambda p: phase(p) == "Running")
    container_id = container_status(pod, "web")["containerID"].removeprefix("podman://")
    await asyncio.sleep(1.5)
    pod = await wait_pod(async_client, "flip", lambda p: True)
    assert condition(pod, "Ready")["status"] == "False"
    assert container_status(pod, "web")["ready"] is False

    podman("exec", container_id, "touch", "/www/ready")
    pod = await wait_pod(
        async_client, "flip", lambda p: condition(p, "Ready").get("status") == "True", within=10
    )
    assert container_status(pod, "web")["ready"] is True
    assert condition(pod, "ContainersReady")["status"] == "True"

    podman("exec", container_id, "rm", "/www/ready")
    pod = await wait_pod(
        async_client, "flip", lambda p: condition(p, "Ready").get("status") == "False", within=10
    )
    assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    assert container_status(pod, "web")["restartCount"] == 0  # readiness never restarts
    messages = [e["message"] for e in await pod_events(async_client, pod)]
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in messages


async def test_failing_liveness_probe_restarts_with_growing_delays(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    manifest = pod_manifest(
        "unhealthy",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c", TERM_AWARE.format(body="")],
                "livenessProbe": {
                    "tcpSocket": {"port": 9999},  # nothing listens there
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            }
        ],
    )
    await async_client.create_raw(manifest)
    restarts: list[float] = []
    seen_backoff = False
    began = time.monotonic()
    last = 0
    while len(restarts) < 4:
        assert time.monotonic() - began < 40, f"only {len(restarts)} restarts in 40s"
        pod = await wait_pod(async_client, "unhealthy", lambda p: True)
        count = container_status(pod, "c").get("restartCount", 0)
        if count > last:
            restarts.extend([time.monotonic()] * (count - last))
            last = count
        seen_backoff = seen_backoff or waiting_reason(pod, "c") == "CrashLoopBackOff"
        await asyncio.sleep(0.05)
    gaps = [b - a for a, b in itertools.pairwise(restarts)]
    # The first restart is immediate; then back-off 1 s, 2 s, 4 s (plus the time the
    # probe takes to fail and the container to stop).
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert gaps[0] >= 0.8 and gaps[1] >= 1.7 and gaps[2] >= 3.5, gaps
    assert seen_backoff
    events = await pod_events(async_client, pod)
    reasons = {e["reason"] for e in events}
    assert {"Unhealthy", "Killing", "BackOff"} <= reasons
    messages = {e["message"] for e in events}
    assert "Container c failed liveness probe, will be restarted" in messages
    assert "Liveness probe failed: dial tcp 127.0.0.1:9999: connect: connection refused" in messages


async def test_crash_loop_back_off_and_restart_policies(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    def failing(name: str, code: int, policy: str) -> dict[str, object]:
        return pod_manifest(
            name,
            shared_agent.name,
            [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", f"exit {code}"]}],
            restartPolicy=policy,
        )

    for manifest in (
        failing("always", 1, "Always"),
        failing("never", 2, "Never"),
        failing("onfailure-ok", 0, "OnFailure"),
    ):
        await async_client.create_raw(manifest)
    pod = await wait_pod(
        async_client,
        "always",
        lambda p: (
            waiting_reason(p, "c") == "CrashLoopBackOff"
            and container_status(p, "c")["restartCount"] >= 2
        ),
    )
    status = container_status(pod, "c")
    uid = pod["metadata"]["uid"]
    assert status["state"]["waiting"]["message"].startswith("back-off ")
    assert status["state"]["waiting"]["message"].endswith(
        f" restarting failed container=c pod=always_{pod['metadata']['namespace']}({uid})"
    )
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert phase(pod) == "Running"

    never = await wait_pod(async_client, "never", lambda p: phase(p) == "Failed")
    assert terminated(never, "c")["exitCode"] == 2
    assert container_status(never, "c")["restartCount"] == 0
    done = await wait_pod(async_client, "onfailure-ok", lambda p: phase(p) == "Succeeded")
    assert container_status(done, "c")["restartCount"] == 0


async def test_missing_image_is_err_image_pull_then_back_off(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    image = "docker.io/library/kumo-does-not-exist:1.0"
    manifest = pod_manifest("no-image", shared_agent.name, [{"name": "c", "image": image}])
    await async_client.create_raw(manifest)
    seen: dict[str, str] = {}
    began = time.monotonic()
    while not {"ErrImagePull", "ImagePullBackOff"} <= set(seen):
        assert time.monotonic() - began < 20, f"saw only {seen}"
        pod = await wait_pod(async_client, "no-image", lambda p: True, interval=0.05)
        reason = waiting_reason(pod, "c")
        if reason:
            seen[reason] = container_status(pod, "c")["state"]["waiting"].get("message", "")
    assert seen["ErrImagePull"].startswith(f"failed to pull image '{image}': ")
    assert seen["ImagePullBackOff"] == f'Back-off pulling image "{image}"'
    assert phase(pod) == "Pending"
    reasons = {e["reason"] for e in await pod_events(async_client, pod)}
    assert {"Pulling", "Failed", "BackOff"} <= reasons


async def test_published_ports_are_reachable_on_127_0_0_1(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    fixed = free_port()
    manifest = pod_manifest(
        "published",
        shared_agent.name,
        [
            {
                "name": "web",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    "mkdir -p /a /b && echo alpha > /a/index.html && echo beta > /b/index.html"
                    " && httpd -p 8080 -h /a && exec httpd -f -p 8081 -h /b",
                ],
                "ports": [
                    {"containerPort": 8080, "name": "http"},
                    {"containerPort": 8081, "hostPort": fixed},
                ],
            }
        ],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(
        async_client, "published", lambda p: condition(p, "Ready").get("status") == "True"
    )
    published = {p["containerPort"]: p for p in pod["status"]["publishedPorts"]}
    allocated = published[8080]
    assert allocated["name"] == "http" and allocated["containerName"] == "web"
    assert allocated["hostIP"] == "127.0.0.1" and allocated["protocol"] == "TCP"
    assert 30000 <= allocated["hostPort"] <= 32767
    assert published[8081]["hostPort"] == fixed

    async def body(port: int) -> str:
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                return (await http.get(f"http://127.0.0.1:{port}/")).text
        except httpx.HTTPError:
            return ""

    assert await eventually(lambda: body(allocated["hostPort"]), within=10) == "alpha\n"
    assert await eventually(lambda: body(fixed), within=10) == "beta\n"


async def test_deleting_a_pod_stops_it_within_the_grace_period(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str, tmp_path: Path
) -> None:
    marker_dir = tmp_path / "hooks"
    marker_dir.mkdir()
    stubborn = pod_manifest(
        "stubborn",
        shared_agent.name,
        [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],  # ignores SIGTERM
        grace=3,
    )
    polite = pod_manifest(
        "polite",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c", TERM_AWARE.format(body="")],
                "lifecycle": {
                    "preStop": {"exec": {"command": ["sh", "-c", "echo bye > /hooks/prestop"]}}
                },
                "volumeMounts": [{"name": "hooks", "mountPath": "/hooks"}],
            },
            {
                # preStop httpGet: the agent calls the pod on its own loopback; the CGI
                # script leaves a mark on the host.
                "name": "web",
                "image": BUSYBOX,
                "command": ["sh", "-c", CGI_SERVER],
                "lifecycle": {"preStop": {"httpGet": {"path": "/cgi-bin/stop", "port": 8080}}},
                "volumeMounts": [{"name": "hooks", "mountPath": "/hooks"}],
            },
        ],
        grace=20,
        volumes=[{"name": "hooks", "hostPath": {"path": str(marker_dir), "type": "Directory"}}],
    )
    for manifest in (stubborn, polite):
        await async_client.create_raw(manifest)
    for name in ("stubborn", "polite"):
        await wait_pod(async_client, name, lambda p: phase(p) == "Running")

    await async_client.delete_raw(POD, "stubborn")
    took = await wait_gone(async_client, "stubborn", within=15)
    # SIGTERM is ignored, so SIGKILL comes at the end of the 3 s grace period.
    assert 2.5 <= took <= 6.0, took
    assert node_containers(shared_agent.name, "kumo.dev/pod-name=stubborn") == []
    assert (
        podman(
            "pod",
            "ps",
            "-q",
            "--filter",
            f"label=kumo.dev/node={shared_agent.name}",
            "--filter",
            "label=kumo.dev/pod-name=stubborn",
        )
        == ""
    )

    await async_client.delete_raw(POD, "polite")
    took = await wait_gone(async_client, "polite", within=25)
    assert took < 4.0, took  # it exits on SIGTERM: no need to wait out the 20 s
    assert (marker_dir / "prestop").read_text() == "bye\n"
    assert (marker_dir / "prestop-http").read_text() == "GET /cgi-bin/stop\n"
    assert node_containers(shared_agent.name, "kumo.dev/pod-name=polite") == []
    assert (
        podman(
            "pod",
            "ps",
            "-q",
            "--filter",
            f"label=kumo.dev/node={shared_agent.name}",
            "--filter",
            "label=kumo.dev/pod-name=polite",
        )
        == ""
    )


async def test_security_context_is_enforced(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    refused = pod_manifest(
        "as-root",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["true"],
                "securityContext": {"runAsNonRoot": True},
            }
        ],
    )
    script = (
        "id -u; id -g;"
        " touch /probe 2>/dev/null && echo rootfs-writable || echo rootfs-read-only;"
        " grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    )
    confined = pod_manifest(
        "confined",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "securityContext": {
                    "runAsUser": 1000,
                    "runAsGroup": 3000,
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        restartPolicy="Never",
    )
    defaults = pod_manifest(
        "defaults",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"],
            }
        ],
        restartPolicy="Never",
    )
    for manifest in (refused, confined, defaults):
        await async_client.create_raw(manifest)
    pod = await wait_pod(
        async_client, "as-root", lambda p: waiting_reason(p, "c") == "CreateContainerConfigError"
    )
    uid = pod["metadata"]["uid"]
    namespace = pod["metadata"]["namespace"]
    assert container_status(pod, "c")["state"]["waiting"]["message"] == (
        "container has runAsNonRoot and image will run as root "
        f'(pod: "as-root_{namespace}({uid})", container: c)'
    )
    pod = await wait_pod(async_client, "confined", lambda p: phase(p) == "Succeeded")
    lines = container_logs(terminated(pod, "c")["containerID"]).split("\n")
    assert lines[:3] == ["1000", "3000", "rootfs-read-only"]
    assert "CapEff:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines
    pod = await wait_pod(async_client, "defaults", lambda p: phase(p) == "Succeeded")
    lines = container_logs(terminated(pod, "c")["containerID"]).split("\n")
    # The reduced default set (11 capabilities; no NET_RAW, MKNOD, SYS_ADMIN, ...).
    assert "CapEff:\t00000000800405fb" in lines
    assert "NoNewPrivs:\t1" in lines


async def test_env_from_config_map_field_refs_and_expansion(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"color": "blue", "size": "XL"},
        }
    )
    await async_client.create_raw(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "files"},
            "data": {"app.conf": "listen 80\n", "other": "not mounted"},
        }
    )
    manifest = pod_manifest(
        "env-user",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c"],
                "args": [
                    "echo $(GREETING); pwd; env | sort | grep -E '^(CFG_|POD_|MEM|GREETING)';"
                    " ls /conf; cat /conf/app.conf"
                ],
                "workingDir": "/tmp",
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {
                        "name": "MEM_LIMIT_MI",
                        "valueFrom": {
                            "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                        },
                    },
                    {"name": "GREETING", "value": "hi-$(POD_NAME)"},
                ],
                "resources": {"limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "conf", "mountPath": "/conf"}],
            }
        ],
        restartPolicy="Never",
        volumes=[
            {
                "name": "conf",
                "configMap": {"name": "files", "items": [{"key": "app.conf", "path": "app.conf"}]},
            }
        ],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(async_client, "env-user", lambda p: phase(p) == "Succeeded")
    lines = container_logs(terminated(pod, "c")["containerID"]).splitlines()
    assert lines == [
        "hi-env-user",
        "/tmp",
        "CFG_color=blue",
        "CFG_size=XL",
        "GREETING=hi-env-user",
        "MEM_LIMIT_MI=64",
        f"POD_IP={pod['status']['podIP']}",
        "POD_NAME=env-user",
        f"POD_NODE={shared_agent.name}",
        "app.conf",
        "listen 80",
    ]


async def test_persistent_volume_claim_outlives_its_pod(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    def user(name: str, command: str) -> dict[str, object]:
        return pod_manifest(
            name,
            shared_agent.name,
            [
                {
                    "name": "c",
                    "image": BUSYBOX,
                    "command": ["sh", "-c", command],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            restartPolicy="Never",
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "store"}}],
        )

    await async_client.create_raw(user("writer", "echo kept > /data/file"))
    await wait_pod(async_client, "writer", lambda p: phase(p) == "Succeeded")
    await async_client.delete_raw(POD, "writer")
    await wait_gone(async_client, "writer")
    namespace = async_client.namespace
    volumes = podman("volume", "ls", "-q", "--filter", f"label=kumo.dev/node={shared_agent.name}")
    assert f"kumo-pvc-{namespace}-store" in volumes.split()
    await async_client.create_raw(user("reader", "cat /data/file"))
    pod = await wait_pod(async_client, "reader", lambda p: phase(p) == "Succeeded")
    assert container_logs(terminated(pod, "c")["containerID"]) == "kept\n"


async def test_config_map_volumes_follow_updates(
    shared_agent: AgentProcess, async_client: AsyncClient, namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "live"},
        "data": {"level": "info"},
    }
    await async_client.create_raw(config_map)
    manifest = pod_manifest(
        "follower",
        shared_agent.name,
        [
            {
                "name": "c",
                "image": BUSYBOX,
                "command": ["sh", "-c", TERM_AWARE.format(body="")],
                "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
            }
        ],
        volumes=[{"name": "cfg", "configMap": {"name": "live"}}],
    )
    await async_client.create_raw(manifest)
    pod = await wait_pod(async_client, "follower", lambda p: phase(p) == "Running")
    container_id = container_status(pod, "c")["containerID"].removeprefix("podman://")
    assert podman("exec", container_id, "cat", "/cfg/level") == "info"
    config_map["data"] = {"level": "debug"}
    current = await async_client.get_raw(CONFIG_MAP, "live")
    config_map["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]  # type: ignore[index]
    await async_client.replace_raw(config_map)

    async def updated() -> bool:
        return podman("exec", container_id, "cat", "/cfg/level") == "debug"

    await eventually(updated, within=10)
    assert (
        container_status(await wait_pod(async_client, "follower", lambda p: True), "c")[
            "restartCount"
        ]
        == 0
    )
