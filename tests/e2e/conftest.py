"""End-to-end fixtures: the whole platform as a user starts it (``kumo up``: API server,
controllers, scheduler, gateway and a node agent, all real, on real Podman), driven through
the ``kumo`` CLI and the gateway.

- ``platform`` (module): a running ``kumo up`` with its own data dir, client config and
  ports; ``kumo(*args)`` runs the CLI against it; ``gateway_url``; ``client()``.
- ``second_agent``: starts a ``kumo agent`` for another node on the same machine, with its
  own Podman storage and port range.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kumo.client import Client
from kumo.client.config import load
from kumo.node.runtime.podman import default_containers_conf
from tests.conftest import KUMO, REPO, free_port
from tests.integration.agent.conftest import (
    ensure_busybox,
    remove_node_objects,
    require_podman,
    unmount_under,
)

# Node lifecycle short enough for a test: NotReady after 6 s of silence, evict 2 s later.
GRACE_PERIOD = 6
EVICTION_TIMEOUT = 2
# Seconds between the agent's usage samples (kumo top), shorter than the default 10 s.
STATS_INTERVAL = 2


@dataclass
class Platform:
    root: Path
    node: str
    api_port: int
    gateway_port: int
    kubelet_port: int
    process: subprocess.Popen[bytes] | None = None
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_nodes: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.root / "config"

    @property
    def log_path(self) -> Path:
        return self.root / "up.log"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        return dict(os.environ, KUMOCONFIG=str(self.config_path))

    def start(self, within: float = 60.0) -> None:
        command = [
            str(KUMO),
            "up",
            "--data-dir",
            str(self.root / "data"),
            "--port",
            str(self.api_port),
            "--gateway-port",
            str(self.gateway_port),
            "--gateway-metrics-port",
            str(free_port()),
            "--kubelet-port",
            str(self.kubelet_port),
            "--node-name",
            self.node,
            "--node-monitor-grace-period",
            str(GRACE_PERIOD),
            "--pod-eviction-timeout",
            str(EVICTION_TIMEOUT),
            "--stats-interval",
            str(STATS_INTERVAL),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=REPO
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kumo up exited:\n{self.log_tail()}")
            if self.config_path.exists():
                nodes = self.kumo("get", "nodes", "--no-headers", check=False)
                if any(
                    line.split()[:2] == [self.node, "Ready"] for line in nodes.stdout.splitlines()
                ):
                    return
            time.sleep(0.3)
        raise RuntimeError(f"kumo up was not ready in {within}s:\n{self.log_tail()}")

    def kumo(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KUMO), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kumo {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def client(self) -> Client:
        return Client(load(self.config_path))

    def start_agent(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        """``kumo agent`` for node ``name`` with storage of its own (base images shared
        read-only from this machine's default storage) and its own port ranges, acting as
        ``system:node:<name>`` (a token from ``kumo admin token create --component node``)."""
        config = load(self.config_path)
        assert config.ca_data is not None
        ca_file = self.root / "ca.crt"
        ca_file.write_bytes(config.ca_data)
        storage = self.root / name
        command = [
            str(KUMO),
            "agent",
            "--server",
            config.server,
            "--ca-file",
            str(ca_file),
            "--name",
            name,
            "--data-dir",
            str(storage / "agent"),
            "--podman-root",
            str(storage / "podman"),
            "--podman-image-store",
            "/var/lib/containers/storage",
            "--port-range",
            "33000-33999",
            "--kubelet-port",
            str(free_port()),
            "--lease-renew-interval",
            "1",
            "--status-update-interval",
            "2",
            *extra,
        ]
        # the node's own identity (system:node:<name>), as an administrator mints it
        token = self.kumo(
            "admin", "token", "create", "--component", "node", "--node-name", name
        ).stdout.strip()
        env = dict(self.env(), KUMO_AGENT_TOKEN=token)
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        self.agents.append(process)
        self.extra_nodes.append(name)
        return process

    def remove_agent_storage(self, name: str) -> None:
        """Everything the extra agent ``name`` left in its own Podman storage."""
        storage = (self.root / name / "podman").resolve()
        key = hashlib.sha256(str(storage).encode()).hexdigest()[:12]
        podman = [
            "podman",
            "--root",
            str(storage),
            "--runroot",
            f"/run/kumo-podman/{key}/runroot",
            "--tmpdir",
            f"/run/kumo-podman/{key}/tmp",
            "--storage-opt",
            "overlay.imagestore=/var/lib/containers/storage",
        ]
        env = dict(os.environ, CONTAINERS_CONF=str(default_containers_conf()))
        for args in (["pod", "rm", "-a", "-f", "-t", "0"], ["rm", "-a", "-f", "-t", "0"]):
            subprocess.run([*podman, *args], env=env, capture_output=True, timeout=120, check=False)

    def stop(self) -> None:
        for process in [*self.agents, self.process]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    require_podman()
    ensure_busybox()
    root = tmp_path_factory.mktemp("kumo-up")
    running = Platform(
        root=root,
        node=f"e2e-{uuid.uuid4().hex[:6]}",
        api_port=free_port(),
        gateway_port=free_port(),
        kubelet_port=free_port(),
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        remove_node_objects(running.node)
        unmount_under(running.root)
        for node in running.extra_nodes:
            running.remove_agent_storage(node)


def wait_until(check: Any, within: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {within}s (last: {last!r})")
