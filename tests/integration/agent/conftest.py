"""Fixtures for node agent tests: real ``kumo agent`` processes, real Podman, the real
API server.

- ``require_podman()``: skips without podman/runc/conmon — except under ``CI=true``,
  where that is a failure.
- ``AgentProcess``: ``kumo agent`` as a child process (its own Podman service, short
  back-offs and periods so tests run fast); ``start()``, ``kill()`` (SIGKILL),
  ``stop()`` (SIGTERM), ``restart()``, ``log_tail()``.
- ``agent_factory`` (function): ``start(**kw)`` → a registered ``AgentProcess`` with a
  unique node name; at the end of the test every agent is stopped and everything
  Podman holds for its node (sandboxes, containers, volumes) is removed.
- ``shared_agent`` (module): one agent for a module's pod tests, on the session's
  API server.
- helpers: ``pod_manifest``, ``wait_pod``, ``container_status``, ``condition``,
  ``podman`` (the podman CLI with kumo's containers.conf), ``container_logs``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient, Client
from kumo.model.coordination import Lease
from kumo.model.core import ConfigMap, Event, Node, Pod
from kumo.model.registry import for_model
from kumo.node.runtime.podman import default_containers_conf
from tests.conftest import KUMO, REPO, ApiServerProcess, component_config, free_port

Obj = dict[str, Any]
POD = for_model(Pod)
NODE = for_model(Node)
LEASE = for_model(Lease)
EVENT = for_model(Event)
CONFIG_MAP = for_model(ConfigMap)

BUSYBOX = "busybox"
# Short periods and back-offs: tests see restarts within seconds.
FAST = (
    "--restart-backoff-initial",
    "1",
    "--restart-backoff-max",
    "8",
    "--image-backoff-initial",
    "1",
    "--image-backoff-max",
    "4",
    "--sync-period",
    "2",
    "--status-update-interval",
    "2",
    "--lease-renew-interval",
    "1",
    "--housekeeping-interval",
    "1",
    "--config-refresh-interval",
    "1",
    # No service proxy: these agents share the default service CIDR with whatever else
    # runs on the machine (tests/integration/services runs one on a CIDR of its own).
    "--no-service-proxy",
)


def require_podman() -> None:
    missing = [tool for tool in ("podman", "runc", "conmon") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install podman runc conmon)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs real Podman: {message}")
    pytest.skip(message)


_IMAGES_READY = False


def ensure_busybox() -> None:
    """The pods here run busybox; build it (offline) if this machine lacks it."""
    global _IMAGES_READY
    if _IMAGES_READY:
        return
    env = dict(os.environ, CONTAINERS_CONF=str(default_containers_conf()))
    exists = subprocess.run(
        ["podman", "image", "exists", "docker.io/library/busybox:latest"], env=env, check=False
    )
    if exists.returncode != 0:
        subprocess.run(
            [str(KUMO), "images", "bootstrap", "--only", "busybox", "--quiet"],
            check=True,
            timeout=300,
        )
    _IMAGES_READY = True


def podman(*args: str, check: bool = True) -> str:
    """Run the podman CLI (default storage, kumo's containers.conf); its stdout."""
    env = dict(os.environ, CONTAINERS_CONF=str(default_containers_conf()))
    result = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def container_logs(container_id: str) -> str:
    return podman("logs", container_id.removeprefix("podman://"))


def node_containers(node: str, *labels: str) -> list[str]:
    """Ids of the node's (non-infra) containers carrying all ``labels`` (key=value)."""
    filters = ["--filter", f"label=kumo.dev/node={node}"]
    for label in labels:
        filters += ["--filter", f"label={label}"]
    listing = podman("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.IsInfra}}", *filters)
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    return [row[0] for row in rows if row[1:] != ["true"]]


def remove_node_objects(node: str) -> None:
    """Everything Podman holds for ``node``: sandboxes, containers, volumes."""
    label = f"label=kumo.dev/node={node}"
    pods = podman("pod", "ps", "-q", "--filter", label, check=False).split()
    if pods:
        podman("pod", "rm", "-f", "-t", "0", *pods, check=False)
    containers = podman("ps", "-a", "-q", "--filter", label, check=False).split()
    if containers:
        podman("rm", "-f", "-t", "0", *containers, check=False)
    volumes = podman("volume", "ls", "-q", "--filter", label, check=False).split()
    if volumes:
        podman("volume", "rm", "-f", *volumes, check=False)


def micro_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class AgentProcess:
    """``kumo agent`` for one node, as a child process."""

    def __init__(
        self, server: ApiServerProcess, name: str, data_dir: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.server = server
        self.name = name
        self.data_dir = data_dir
        self.extra = list(extra)
        # a port of its own for the logs/exec server (the default 10250 is shared by every
        # agent on the machine); kept across restarts, as the Node advertises it
        self.kubelet_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-agent.log"

    def command(self) -> list[str]:
        return [
            str(KUMO),
            "-v",
            "agent",
            "--server",
            self.server.url,
            "--ca-file",
            str(self.server.ca_file),
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            *FAST,
            *([] if "--kubelet-port" in self.extra else ["--kubelet-port", str(self.kubelet_port)]),
            *self.extra,
        ]

    def start(self, within: float = 40.0) -> None:
        """Start and wait until the agent has (re)registered: its Lease renewed after now."""
        assert self.process is None or self.process.poll() is not None, "already running"
        # the agent acts as its node (system:node:<name> in system:nodes), not as the admin
        node = component_config(self.server.client_config(), "node", self.name)
        env = dict(os.environ, KUMO_AGENT_TOKEN=node.token or "")
        env.pop("KUMOCONFIG", None)
        began = micro_now()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        deadline = time.monotonic() + within
        with Client(self.server.client_config()) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"kumo agent exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    lease = client.get_raw(LEASE, self.name, "kube-node-lease")
                except ApiException:
                    lease = None
                renewed = parse_time(((lease or {}).get("spec") or {}).get("renewTime"))
                if renewed is not None and renewed >= began:
                    return
                time.sleep(0.1)
        raise RuntimeError(f"kumo agent did not register in {within}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class AgentFactory:
    def __init__(self, server: ApiServerProcess, root: Path) -> None:
        self.server = server
        self.root = root
        self.agents: list[AgentProcess] = []

    def start(
        self, *extra: str, server: ApiServerProcess | None = None, name: str | None = None
    ) -> AgentProcess:
        require_podman()
        ensure_busybox()
        node = name or f"agent-{uuid.uuid4().hex[:8]}"
        agent = AgentProcess(server or self.server, node, self.root / node, extra)
        self.agents.append(agent)
        agent.start()
        return agent

    def close(self) -> None:
        for agent in self.agents:
            began = time.monotonic()
            agent.stop()
            took = time.monotonic() - began
            assert took < 10, f"agent {agent.name} took {took:.1f}s to stop:\n{agent.log_tail()}"
        for agent in self.agents:
            remove_node_objects(agent.name)
            unmount_under(agent.data_dir)


def unmount_under(root: Path) -> None:
    """Detach the tmpfs mounts a stopped agent left for its pods (projected volumes,
    ``emptyDir: Memory``): a real agent keeps them for its pods across restarts."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)


@pytest.fixture
def agent_factory(api_server: ApiServerProcess, tmp_path: Path) -> Iterator[AgentFactory]:
    factory = AgentFactory(api_server, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def shared_agent(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    factory = AgentFactory(api_server, tmp_path_factory.mktemp("agents"))
    try:
        yield factory.start("--orphan-grace-period", "5")
    finally:
        factory.close()


# ---- pods --------------------------------------------------------------------------------


def pod_manifest(
    name: str, node: str, containers: list[Obj], *, grace: int = 1, **spec: Any
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": grace,
            "containers": containers,
            **spec,
        },
    }


def container_status(pod: Obj, name: str, *, init: bool = False) -> Obj:
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in (pod.get("status") or {}).get(key) or []:
        if status.get("name") == name:
            return dict(status)
    return {}


def condition(pod: Obj, kind: str) -> Obj:
    for entry in (pod.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def waiting_reason(pod: Obj, name: str) -> str | None:
    waiting = (container_status(pod, name).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    return str(reason) if reason else None


def terminated(pod: Obj, name: str, *, init: bool = False, last: bool = False) -> Obj:
    status = container_status(pod, name, init=init)
    state = status.get("lastState" if last else "state") or {}
    return dict(state.get("terminated") or {})


async def wait_pod(
    client: AsyncClient,
    name: str,
    check: Callable[[Obj], bool],
    *,
    within: float = 30.0,
    what: str = "condition",
    interval: float = 0.1,
) -> Obj:
    """Poll the pod until ``check(pod)``; fail with the last status seen."""
    deadline = time.monotonic() + within
    pod: Obj = {}
    while True:
        try:
            pod = await client.get_raw(POD, name)
        except ApiException as err:
            if not err.not_found:
                raise
            pod = {}
        if pod and check(pod):
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(
                f"pod {name}: {what} not reached within {within}s; status: {pod.get('status')}"
            )
        await asyncio.sleep(interval)


async def wait_gone(client: AsyncClient, name: str, *, within: float = 30.0) -> float:
    """Wait until the pod object is gone; returns the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        try:
            await client.get_raw(POD, name)
        except ApiException as err:
            if err.not_found:
                return time.monotonic() - began
            raise
        await asyncio.sleep(0.05)
    raise AssertionError(f"pod {name} still exists after {within}s")


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 20.0, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + within
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last result: {last!r})")
        await asyncio.sleep(interval)


async def pod_events(client: AsyncClient, pod: Obj) -> list[Obj]:
    uid = pod["metadata"]["uid"]
    listing = await client.list_raw(EVENT, field_selector=f"involvedObject.uid={uid}")
    return list(listing.get("items") or [])
