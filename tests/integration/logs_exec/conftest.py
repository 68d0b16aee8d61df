"""Fixtures for ``kumo logs`` / ``kumo exec`` end to end: the real CLI → a real API server
(``kumo apiserver`` process) → the node's HTTPS server (``kumo.node.server``) → real
Podman containers.

The node agent is not involved: a test creates the Pod through the API (bound by
``spec.nodeName``) and runs its containers itself with ``PodmanRuntime``, labelled the
way the agent labels them (the runtime stamps pod namespace / name / uid, container name
and attempt). The Node object says where the node server listens (InternalIP 127.0.0.1,
``daemonEndpoints.kubeletEndpoint.Port``).

- ``kumo_server`` (module): a private API server whose store also holds a token for a
  user outside ``system:masters`` (``.viewer_token``).
- ``runtime`` (module): ``PodmanRuntime`` with its own Podman service and a unique node
  name; busybox bootstrapped; everything of the node removed at the end.
- ``node_server`` (module): the node's HTTPS server on a free port of 127.0.0.1,
  trusting the API server's CA.
- ``node_name`` (module): the Node object, registered.
- ``cluster`` (function): a namespace plus helpers to create pods and run the CLI.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kumo.client import AsyncClient
from kumo.model.core import Node, Pod
from kumo.model.registry import for_model
from kumo.node.images import bootstrap
from kumo.node.runtime import ContainerConfig, SandboxConfig
from kumo.node.runtime.podman import PodmanRuntime
from kumo.node.server import NodeServer
from kumo.platform.api.authn import StoreTokens
from kumo.platform.store.sqlite import SQLiteStore
from tests.conftest import REPO, ApiServerProcess, unique_name
from tests.integration.node.conftest import remove_everything, require_podman

POD = for_model(Pod)
NODE = for_model(Node)
BUSYBOX = "busybox"
CLI_TIMEOUT = 60.0

# The CLI as a user runs it; registers pod_commands itself until kumo/cli/main.py does.
_CLI = (
    "import sys\n"
    "from kumo.cli.main import cli\n"
    "from kumo.cli import pod_commands\n"
    "if 'logs' not in cli.commands:\n"
    "    pod_commands.register(cli)\n"
    "try:\n"
    "    cli(prog_name='kumo')\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
)


def kumo_command(*args: str) -> list[str]:
    return [sys.executable, "-c", _CLI, *args]


class KumoServer(ApiServerProcess):
    """An API server process whose store was seeded with a non-admin token."""

    viewer_token: str = ""

    def kubeconfig_for(self, token: str, path: Path) -> Path:
        from kumo.client import KubeConfig

        config = KubeConfig.load(path)
        config.set_cluster("test", self.url, self.ca_file.read_bytes())
        config.set_user("someone", token)
        config.set_context("test", "test", "someone", "default")
        config.use_context("test")
        config.save()
        return path


def _seed_token(data_dir: Path, user: str, groups: Sequence[str]) -> str:
    async def seed() -> str:
        store = await SQLiteStore.open(data_dir / "store.db")
        try:
            return await StoreTokens(store).issue(user, groups, description="logs/exec tests")
        finally:
            await store.close()

    # A thread of its own: asyncio.run must not touch the test session's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, seed()).result()


@pytest.fixture(scope="module")
def kumo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KumoServer]:
    require_podman()
    data_dir = tmp_path_factory.mktemp("logs-exec-api") / "data"
    viewer = _seed_token(data_dir, "jane", ["developers"])
    server = KumoServer(data_dir)
    server.viewer_token = viewer
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PodmanRuntime]:
    require_podman()
    node = f"logs-exec-{uuid.uuid4().hex[:8]}"
    state = Path(tmp_path_factory.mktemp("logs-exec-podman", numbered=True))
    podman = PodmanRuntime(node, state_dir=state)
    await podman.start()
    try:
        await bootstrap(podman, only=["busybox"])
        yield podman
    finally:
        await remove_everything(podman)
        await podman.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node_server(runtime: PodmanRuntime, kumo_server: KumoServer) -> AsyncIterator[NodeServer]:
    server = NodeServer(
        runtime, runtime.node_name, host="127.0.0.1", port=0, ca_file=kumo_server.ca_file
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node_name(
    kumo_server: KumoServer, runtime: PodmanRuntime, node_server: NodeServer
) -> str:
    async with AsyncClient(kumo_server.client_config()) as client:
        await client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": runtime.node_name},
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": runtime.node_name},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": node_server.port}},
                },
            }
        )
    return runtime.node_name


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@dataclass
class RunningPod:
    name: str
    uid: str
    sandbox_id: str
    containers: dict[str, list[str]] = field(default_factory=dict)  # name -> ids by attempt


@dataclass
class Cluster:
    """One test's view: its namespace, an admin client, pods and the CLI."""

    server: KumoServer
    runtime: PodmanRuntime
    node: str
    namespace: str
    client: AsyncClient
    home: Path

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["KUMOCONFIG"] = str(kubeconfig or self.server.kubeconfig_path)
        env["KUMO_HOME"] = str(self.home)
        return env

    async def create_pod(
        self,
        containers: Mapping[str, str],
        *,
        name: str | None = None,
        node: str | None = "",
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A Pod through the API: containers ``{name: shell script}`` (busybox), bound to
        this node unless ``node`` says otherwise (None: unbound)."""
        spec: dict[str, Any] = {
            "containers": [
                {"name": cname, "image": BUSYBOX, "command": ["sh", "-c", script]}
                for cname, script in containers.items()
            ]
        }
        if node is not None:
            spec["nodeName"] = node or self.node
        metadata: dict[str, Any] = {"name": name or unique_name("pod")}
        if annotations:
            metadata["annotations"] = dict(annotations)
        return await self.client.create_raw(
            {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec},
            self.namespace,
        )

    async def run_pod(
        self,
        containers: Mapping[str, str],
        *,
        name: str | None = None,
        annotations: Mapping[str, str] | None = None,
        start: bool = True,
    ) -> RunningPod:
        """Create the Pod and run its containers (attempt 0) as the agent would."""
        pod = await self.create_pod(containers, name=name, annotations=annotations)
        meta = pod["metadata"]
        sandbox = await self.runtime.run_sandbox(
            SandboxConfig(self.namespace, meta["name"], meta["uid"])
        )
        running = RunningPod(meta["name"], meta["uid"], sandbox.id)
        for cname in containers:
            await self.start_attempt(running, cname, containers[cname], start=start)
        return running

    async def start_attempt(
        self, pod: RunningPod, container: str, script: str, *, start: bool = True
    ) -> str:
        """The next attempt of a container (a restart, as the agent does it)."""
        attempts = pod.containers.setdefault(container, [])
        container_id = await self.runtime.create_container(
            pod.sandbox_id,
            ContainerConfig(
                name=container,
                image=BUSYBOX,
                command=("sh", "-c", script),
                attempt=len(attempts),
            ),
        )
        if start:
            await self.runtime.start_container(container_id)
        attempts.append(container_id)
        return container_id

    async def kumo(
        self,
        *args: str,
        stdin: bytes | None = None,
        kubeconfig: Path | None = None,
        within: float = CLI_TIMEOUT,
    ) -> CliResult:
        """Run the CLI to completion (as a child process: the node server keeps serving
        on this event loop meanwhile)."""
        process = await asyncio.create_subprocess_exec(
            *kumo_command(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(kubeconfig),
            cwd=REPO,
        )
        try:
            async with asyncio.timeout(within):
                out, err = await process.communicate(stdin)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return CliResult(process.returncode, out.decode(), err.decode())

    async def spawn(self, *args: str) -> asyncio.subprocess.Process:
        """Start the CLI and leave it running (``kumo logs -f``)."""
        return await asyncio.create_subprocess_exec(
            *kumo_command(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
            cwd=REPO,
        )


@pytest_asyncio.fixture(loop_scope="module")
async def cluster(
    kumo_server: KumoServer,
    runtime: PodmanRuntime,
    node_name: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Cluster]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:30].strip("-")
    namespace = unique_name(base or "t")
    async with AsyncClient(kumo_server.client_config(namespace)) as client:
        await client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        try:
            yield Cluster(kumo_server, runtime, node_name, namespace, client, tmp_path)
        finally:
            for sandbox in await runtime.list_sandboxes({"kumo.dev/pod-namespace": namespace}):
                await runtime.remove_sandbox(sandbox.id)
