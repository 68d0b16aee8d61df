"""Fixtures for the gateway tests: the gateway as its own process (``python -m
kumo.cli.gateway_commands``, the ``kumo gateway`` command) watching the shared API server, and
real HTTP backends (``backend.py`` processes on 127.0.0.1).

Tests create Services without a selector and write their Endpoints themselves, as the
Endpoints controller would (one subset per backend, since each listens on its own port; ip
127.0.0.1 as for pods on the local node)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumo.client import ApiException, AsyncClient
from kumo.model.core import Endpoints
from kumo.model.registry import for_model
from tests.conftest import REPO, ApiServerProcess, component_kubeconfig, free_port

BACKEND_SCRIPT = Path(__file__).with_name("backend.py")
COLD_START_TIMEOUT = 4.0


class BackendProcess:
    """One ``backend.py`` process."""

    def __init__(self, name: str, log_dir: Path, *options: str) -> None:
        self.name = name
        self.log_path = log_dir / f"backend-{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(BACKEND_SCRIPT), "--name", name, *options],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.kill()
            raise RuntimeError(f"backend {name} did not start: {line!r}")
        self.port = int(line.split()[1])

    def kill(self) -> None:
        """SIGKILL: the process dies with its connections (as a crashed pod does)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"http://127.0.0.1:{self.port}/__stats", timeout=5)
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Callable[..., BackendProcess]]:
    """``start(name, *options)`` launches a backend process (options: see backend.py); all
    are killed at the end of the test."""
    started: list[BackendProcess] = []

    def start(name: str, *options: str) -> BackendProcess:
        backend = BackendProcess(name, tmp_path, *options)
        started.append(backend)
        return backend

    try:
        yield start
    finally:
        for backend in started:
            backend.kill()


class GatewayProcess:
    """``kumo gateway`` as a child process, pointed at the shared API server."""

    def __init__(self, api_server: ApiServerProcess, log_path: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        # /metrics needs a token the API server lets read it (the admin's here).
        self.metrics_token = api_server.token
        # the gateway acts as its own identity (system:kumo:gateway), not as the admin
        kubeconfig_path = component_kubeconfig(
            api_server.client_config(), "gateway", log_path.parent / "gateway.kubeconfig"
        )
        env = dict(os.environ)
        env["KUMOCONFIG"] = str(kubeconfig_path)
        command = [
            sys.executable,
            "-m",
            "kumo.cli.gateway_commands",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--cold-start-timeout",
            str(COLD_START_TIMEOUT),
        ]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kumo gateway exited:\n{self.log_tail()}")
            try:
                ready = httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2)
            except httpx.TransportError:
                ready = None
            if ready is not None and ready.status_code == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"kumo gateway not ready in 30s:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def memory_kib(self) -> tuple[int, int]:
        """(current resident set, peak resident set) of the gateway process, in KiB."""
        values = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values["VmRSS"], values["VmHWM"]

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        response = httpx.get(
            f"http://127.0.0.1:{self.metrics_port}/metrics",
            headers={"Authorization": f"Bearer {self.metrics_token}"},
            timeout=5,
        )
        assert response.status_code == 200, response.text
        text = response.text
        return [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample_name, sample_labels, value in self.metrics()
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )


@pytest.fixture(scope="session")
def gateway(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(api_server, tmp_path_factory.mktemp("gateway") / "gateway.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def endpoints_subsets(
    ready: Sequence[BackendProcess],
    not_ready: Sequence[BackendProcess] = (),
    port_name: str | None = "http",
) -> list[dict[str, Any]]:
    """One subset per backend port, as kumo's Endpoints controller writes them."""
    subsets = []
    for backend, is_ready in [(b, True) for b in ready] + [(b, False) for b in not_ready]:
        port: dict[str, Any] = {"port": backend.port, "protocol": "TCP"}
        if port_name is not None:
            port["name"] = port_name
        key = "addresses" if is_ready else "notReadyAddresses"
        subsets.append({key: [{"ip": "127.0.0.1"}], "ports": [port]})
    return subsets


async def publish(
    client: AsyncClient,
    namespace: str,
    name: str,
    ready: Sequence[BackendProcess],
    *,
    not_ready: Sequence[BackendProcess] = (),
    annotations: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    subsets: list[dict[str, Any]] | None = None,
) -> None:
    """A selector-less Service ``name`` and its Endpoints listing the backends."""
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {"ports": ports or [{"name": "http", "port": 80}]},
    }
    await client.create_raw(service, namespace)
    await set_endpoints(
        client,
        namespace,
        name,
        subsets if subsets is not None else endpoints_subsets(ready, not_ready),
    )


async def set_endpoints(
    client: AsyncClient, namespace: str, name: str, subsets: list[dict[str, Any]]
) -> None:
    """Create or replace the Endpoints object of Service ``name``."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": subsets,
    }
    try:
        current = await client.get_raw(for_model(Endpoints), name, namespace)
    except ApiException as exc:
        if not exc.not_found:
            raise
        await client.create_raw(body, namespace)
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.replace_raw(body, namespace)


async def eventually(check: Callable[[], Any], within: float = 10.0, interval: float = 0.02) -> Any:
    """Await ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s (last: {last!r})")
