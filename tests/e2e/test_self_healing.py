"""Desired state that heals itself, end to end: ``kumo up`` on real Podman, a 3-replica
Deployment behind a Service answering through the gateway; rollouts and rollbacks without a
failed request; killed containers restart; deleted pods are replaced; a lost node's pods come
back on another node."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import EVICTION_TIMEOUT, GRACE_PERIOD, Platform, wait_until
from tests.integration.agent.conftest import podman

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def manifests(namespace: str, version: str, image: str = "docker.io/library/busybox:latest") -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: web
        image: {image}
        env:
        - {{name: VERSION, value: "{version}"}}
        command: ["sh", "-c", "mkdir -p /www && echo $VERSION > /www/index.html && exec httpd -f -p 8000 -h /www"]
        ports:
        - containerPort: 8000
        readinessProbe:
          httpGet: {{path: /, port: 8000}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {namespace}
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8000
"""


@dataclass
class Load:
    """A client sending requests through the gateway without pause, one after another."""

    url: str
    host: str
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    response = client.get(self.url, headers={"Host": self.host})
                except httpx.HTTPError as error:
                    self.failures.append(f"{error!r} (after {len(self.answers)} answers)")
                    continue
                if response.status_code != 200:
                    self.failures.append(
                        f"{response.status_code} {response.text[:200]} (after "
                        f"{len(self.answers)} answers, {self.answers[-1:]})"
                    )
                else:
                    self.answers.append(response.text.strip())

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        assert self.thread is not None
        self.thread.join(timeout=30)

    def settled_on(self, version: str, last: int = 50) -> bool:
        recent = self.answers[-last:]
        return len(recent) == last and set(recent) == {version}


def pods(platform: Platform, namespace: str) -> list[dict[str, Any]]:
    listing = platform.kumo("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json")
    return list(json.loads(listing.stdout)["items"])


def ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(platform: Platform, namespace: str, count: int = 3) -> list[dict[str, Any]]:
    found = [p for p in pods(platform, namespace) if ready(p)]
    return found if len(found) == count else []


def deploy(platform: Platform, namespace: str) -> None:
    out = platform.kumo("apply", "-f", "-", input=manifests(namespace, "v1")).stdout
    assert "deployment.apps/web created" in out
    platform.kumo("rollout", "status", "deploy/web", "-n", namespace, "--timeout", "120s")


def test_rollout_and_undo_through_the_gateway_fail_no_request(platform: Platform) -> None:
    namespace = "e2e-rollout"
    deploy(platform, namespace)
    host = f"web.{namespace}.localhost"

    def serves_v1() -> bool:
        response = httpx.get(f"{platform.gateway_url}/", headers={"Host": host}, timeout=5)
        return response.status_code == 200 and response.text.strip() == "v1"

    # the gateway learns of the Service's endpoints shortly after the rollout: from then on,
    # not one request may fail
    wait_until(serves_v1, 30, "the gateway serves v1")
    load = Load(f"{platform.gateway_url}/", host)
    load.start()
    try:
        wait_until(lambda: load.settled_on("v1"), 30, "the load reaches v1")

        # a new image (and version), rolled out while the client keeps sending
        new = manifests(namespace, "v2", image="docker.io/library/busybox:1.35")
        assert (
            "deployment.apps/web configured" in platform.kumo("apply", "-f", "-", input=new).stdout
        )
        platform.kumo("rollout", "status", "deploy/web", "-n", namespace, "--timeout", "180s")
        wait_until(lambda: load.settled_on("v2"), 60, "the gateway serves only v2")
        during_rollout = Counter(load.answers)

        platform.kumo("rollout", "undo", "deploy/web", "-n", namespace)
        platform.kumo("rollout", "status", "deploy/web", "-n", namespace, "--timeout", "180s")
        wait_until(lambda: load.settled_on("v1"), 60, "the gateway serves v1 again")
    finally:
        load.stop()
    assert load.failures == [], (
        f"{len(load.failures)} failed requests: {load.failures[:3]} ... {load.failures[-3:]}"
    )
    assert during_rollout["v1"] > 0 and during_rollout["v2"] > 0
    images = {p["spec"]["containers"][0]["image"] for p in ready_pods(platform, namespace)}
    assert images == {"docker.io/library/busybox:latest"}
    history = platform.kumo("rollout", "history", "deploy/web", "-n", namespace).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


def test_a_killed_container_restarts_and_a_deleted_pod_is_replaced(platform: Platform) -> None:
    namespace = "e2e-heal"
    deploy(platform, namespace)
    victim = ready_pods(platform, namespace)[0]
    name = victim["metadata"]["name"]
    container_id = victim["status"]["containerStatuses"][0]["containerID"]
    podman("kill", "--signal", "KILL", container_id.removeprefix("podman://"))

    def restarted() -> bool:
        pod = next((p for p in pods(platform, namespace) if p["metadata"]["name"] == name), None)
        if pod is None or not ready(pod):
            return False
        status = pod["status"]["containerStatuses"][0]
        return bool(status["restartCount"] >= 1 and status["containerID"] != container_id)

    wait_until(restarted, 60, f"pod {name} restarts its killed container")

    platform.kumo("delete", "pod", name, "-n", namespace)

    def replaced() -> list[dict[str, Any]]:
        current = ready_pods(platform, namespace)
        return current if name not in {p["metadata"]["name"] for p in current} else []

    assert len(wait_until(replaced, 60, "the ReplicaSet replaces the deleted pod")) == 3


def test_the_pods_of_a_lost_node_come_back_on_another(platform: Platform) -> None:
    namespace = "e2e-failover"
    other = f"{platform.node}-b"
    agent = platform.start_agent(other)
    wait_until(
        lambda: any(
            line.split()[:2] == [other, "Ready"]
            for line in platform.kumo("get", "nodes", "--no-headers").stdout.splitlines()
        ),
        60,
        f"node {other} registers",
    )
    # everything lands on the second node first
    platform.kumo("cordon", platform.node)
    try:
        deploy(platform, namespace)
    finally:
        platform.kumo("uncordon", platform.node)
    placed = {p["spec"]["nodeName"] for p in ready_pods(platform, namespace)}
    assert placed == {other}

    agent.kill()  # the node is gone: no more lease renewals
    agent.wait(timeout=10)
    lost = time.monotonic()

    def back_on_the_first_node() -> bool:
        current = ready_pods(platform, namespace)
        return bool(current) and {p["spec"]["nodeName"] for p in current} == {platform.node}

    # NotReady after the grace period, evicted after the eviction timeout, then rescheduled
    # and started; allow the start-up on top of the configured timeouts
    wait_until(back_on_the_first_node, GRACE_PERIOD + EVICTION_TIMEOUT + 60, "pods come back")
    took = time.monotonic() - lost
    nodes = platform.kumo("get", "nodes", "--no-headers").stdout
    assert any(line.split()[:2] == [other, "NotReady"] for line in nodes.splitlines()), nodes
    print(f"pods back on {platform.node} {took:.1f}s after {other} was lost")


def test_no_component_was_refused_anything(platform: Platform) -> None:
    """The components ran as their own least-privilege users, never system:masters (the
    scheduler, the controllers, the gateway, each node agent), and through everything above
    the API server refused none of their requests."""
    audit = platform.root / "data" / "audit.log"
    records = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    component_users = ("system:kube-", "system:node:", "system:kumo:")
    ours = [r for r in records if str(r.get("user", "")).startswith(component_users)]
    writers = {r["user"] for r in ours}
    assert {
        "system:kube-scheduler",
        "system:kube-controller-manager",
        f"system:node:{platform.node}",
    } <= writers, writers
    assert all("system:masters" not in (r.get("groups") or []) for r in ours)
    refused = [r for r in ours if r.get("code") in (401, 403)]
    assert refused == []
    log = platform.log_path.read_text(errors="replace").lower()
    assert "forbidden" not in log
