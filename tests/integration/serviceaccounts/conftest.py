"""Fixtures for service accounts in pods: a small cluster of real processes.

- ``sa_cluster`` (module): an API server (RBAC, the default authorizer) with a service CIDR
  of its own (a random /24 in 10.100.0.0/14, see tests/integration/services), the
  controllers that give namespaces their ``default`` ServiceAccount and ``kube-root-ca.crt``
  ConfigMap plus the endpoints controller, and a node agent (real Podman) running the service
  proxy and cluster DNS, so pods reach the API server as ``https://kubernetes.default.svc``.
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kumo.client import AsyncClient
from tests.conftest import KUMO, REPO, ApiServerProcess, free_port
from tests.integration.agent.conftest import AgentFactory, AgentProcess
from tests.integration.services.conftest import CidrApiServer, lo_addresses

CONTROLLERS = "serviceaccount,root-ca-cert-publisher,endpoints"


class Controllers:
    """``kumo controllers --controllers ...`` for ``server``."""

    def __init__(self, server: ApiServerProcess, log_path: Path, names: str) -> None:
        env = dict(os.environ, KUMOCONFIG=str(server.kubeconfig_path))
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(KUMO), "controllers", "--controllers", names],
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
class SACluster:
    server: CidrApiServer
    node: str
    agent: AgentProcess
    controllers: Controllers

    def client(self, namespace: str = "default") -> AsyncClient:
        return AsyncClient(self.server.client_config(namespace))


@pytest.fixture(scope="module")
def sa_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SACluster]:
    root = tmp_path_factory.mktemp("serviceaccounts")
    network = ipaddress.ip_network(f"10.{random.randint(100, 103)}.{random.randint(0, 255)}.0/24")
    cidr = str(network)
    dns_ip = str(network[10])
    server = CidrApiServer(root / "api", cidr)
    server.start()
    controllers: Controllers | None = None
    agents = AgentFactory(server, root)
    try:
        controllers = Controllers(server, root / "controllers.log", CONTROLLERS)
        agent = agents.start(
            "--service-proxy",
            "--service-cidr",
            cidr,
            "--cluster-dns",
            dns_ip,
            "--orphan-grace-period",
            "5",
            # Its own logs/exec port: other agents on this machine may hold the default.
            "--kubelet-port",
            str(free_port()),
        )
        deadline = time.monotonic() + 30
        while dns_ip not in lo_addresses(cidr):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the agent's service proxy did not add {dns_ip}:\n{agent.log_tail()}"
                )
            time.sleep(0.1)
        yield SACluster(server, agent.name, agent, controllers)
    finally:
        agents.close()
        if controllers is not None:
            controllers.stop()
        server.stop()
    left = lo_addresses(cidr)
    assert not left, f"the service proxy left addresses on lo: {sorted(left)}"
