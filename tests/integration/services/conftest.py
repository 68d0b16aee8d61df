"""Fixtures for Service discovery tests: a whole small cluster of real processes.

- ``cluster`` (module): an API server with a service CIDR of its own (a random /24 in
  10.100.0.0/14, so a test run never meets another cluster's service proxy on this
  machine), the endpoints controller (``kumo controllers``) and a node agent (``kumo
  agent``, real Podman) that runs the service proxy and the cluster DNS for that CIDR.
  When the module ends everything is stopped and the test checks that no address of the
  CIDR is left on ``lo``.
- ``running_cluster(root, controllers, *agent_args)``: such a cluster as a context manager
  (the service-account tests run one with more controllers).
- helpers: ``lo_addresses(cidr)``, ``wait_endpoints``, ``run_to_completion``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient
from kumo.model.core import Endpoints, Pod
from kumo.model.registry import for_model
from tests.conftest import KUMO, REPO, ApiServerProcess, component_kubeconfig
from tests.integration.agent.conftest import (
    AgentFactory,
    AgentProcess,
    container_logs,
    container_status,
    wait_pod,
)

Obj = dict[str, Any]
POD = for_model(Pod)
ENDPOINTS = for_model(Endpoints)
PYTHON = "docker.io/library/python:3.11-slim"
BUSYBOX = "docker.io/library/busybox:latest"


def lo_addresses(cidr: str) -> set[str]:
    """Addresses of ``cidr`` on the loopback device."""
    network = ipaddress.ip_network(cidr)
    output = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", "lo"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = set()
    for line in output.splitlines():
        parts = line.split()
        if "inet" in parts:
            ip = ipaddress.ip_address(parts[parts.index("inet") + 1].split("/")[0])
            if ip in network:
                found.add(str(ip))
    return found


class CidrApiServer(ApiServerProcess):
    """The API server with ``service_cidr`` (``serve_api.py``)."""

    def __init__(self, data_dir: Path, service_cidr: str) -> None:
        super().__init__(data_dir)
        self.service_cidr = service_cidr

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._token_file.unlink(missing_ok=True)
        env = dict(os.environ, KUMO_HOME=str(self.data_dir.parent / "kumo-home"))
        env.pop("KUMOCONFIG", None)
        command = [
            sys.executable,
            "-m",
            "tests.integration.services.serve_api",
            str(self.data_dir),
            str(self.port),
            str(self._token_file),
            self.service_cidr,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        self._wait_ready()
        if not self.token:
            self.token = self._token_file.read_text().strip()


class Controllers:
    """``kumo controllers --controllers NAMES [EXTRA...]`` for ``server``."""

    def __init__(self, server: ApiServerProcess, log_path: Path, names: str, *extra: str) -> None:
        # as its own identity (system:kube-controller-manager), not as the admin
        kubeconfig = component_kubeconfig(
            server.client_config(), "controllers", log_path.with_suffix(".kubeconfig")
        )
        env = dict(os.environ, KUMOCONFIG=str(kubeconfig))
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(KUMO), "controllers", "--controllers", names, *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Cluster:
    server: CidrApiServer
    node: str
    cidr: str
    dns_ip: str
    agent: AgentProcess
    agents: AgentFactory
    controllers: Controllers

    def client(self, namespace: str = "default") -> AsyncClient:
        return AsyncClient(self.server.client_config(namespace))


@contextlib.contextmanager
def running_cluster(root: Path, controllers: str, *agent_args: str) -> Iterator[Cluster]:
    """An API server with a random service CIDR of its own, ``kumo controllers --controllers
    CONTROLLERS`` and a node agent (with ``agent_args``) running the service proxy and the
    cluster DNS for that CIDR; all stopped on exit, which fails if the proxy left an
    address of the CIDR on ``lo``."""
    network = ipaddress.ip_network(f"10.{random.randint(100, 103)}.{random.randint(0, 255)}.0/24")
    cidr = str(network)
    dns_ip = str(network[10])
    server = CidrApiServer(root / "api", cidr)
    server.start()
    running: Controllers | None = None
    agents = AgentFactory(server, root)
    try:
        running = Controllers(server, root / "controllers.log", controllers)
        agent = agents.start(
            "--service-proxy",
            "--service-cidr",
            cidr,
            "--cluster-dns",
            dns_ip,
            "--orphan-grace-period",
            "5",
            *agent_args,
        )
        deadline = time.monotonic() + 30
        while dns_ip not in lo_addresses(cidr):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the agent's service proxy did not add {dns_ip}:\n{agent.log_tail()}"
                )
            time.sleep(0.1)
        yield Cluster(server, agent.name, cidr, dns_ip, agent, agents, running)
    finally:
        agents.close()
        if running is not None:
            running.stop()
        server.stop()
    left = lo_addresses(cidr)
    assert not left, f"the service proxy left addresses on lo: {sorted(left)}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("services"), "endpoints") as running:
        yield running


# ---- helpers ------------------------------------------------------------------------------------


async def create_namespace(client: AsyncClient, name: str) -> None:
    await client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def wait_endpoints(
    client: AsyncClient, name: str, namespace: str, count: int = 1, within: float = 60.0
) -> Obj:
    """Until the Endpoints of ``name`` list ``count`` ready addresses."""
    deadline = time.monotonic() + within
    last: Obj = {}
    while time.monotonic() < deadline:
        try:
            last = await client.get_raw(ENDPOINTS, name, namespace)
        except ApiException as err:
            if not err.not_found:
                raise
        ready = [a for s in last.get("subsets") or [] for a in s.get("addresses") or []]
        if len(ready) >= count:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"endpoints {namespace}/{name} not ready within {within}s: {last}")


async def run_to_completion(
    client: AsyncClient, manifest: Obj, namespace: str, within: float = 90.0
) -> tuple[Obj, str]:
    """Create a pod (restartPolicy Never), wait until it has finished, return it and
    the logs of its first container."""
    await client.create_raw(manifest, namespace)
    name = manifest["metadata"]["name"]
    pod = await wait_pod(
        client,
        name,
        lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        within=within,
        what="finished",
        interval=0.3,
    )
    container = manifest["spec"]["containers"][0]["name"]
    container_id = container_status(pod, container).get("containerID") or ""
    return pod, container_logs(container_id)


def web_pod(name: str, node: str, content: str, labels: dict[str, str]) -> Obj:
    """A python HTTP server on 8080 answering ``content`` at /."""
    script = f"mkdir -p /srv && echo {content} > /srv/index.html && cd /srv && exec python3 -m http.server 8080"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": PYTHON,
                    "command": ["sh", "-c", script],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "tcpSocket": {"port": 8080},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }


def client_pod(name: str, node: str, script: str, image: str = BUSYBOX, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "client", "image": image, "command": ["sh", "-c", script]}],
            **spec,
        },
    }
