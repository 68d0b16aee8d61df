"""Pod start latency: ``apply`` → Ready through kumo, against a bare ``podman run -d``.

Both sides run the same small image that is already present (busybox ``httpd``) with
the same command, publish the same container port on 127.0.0.1, and count as ready
at the first successful HTTP probe of a schedule that starts right away and repeats
every ``--period`` seconds (Kubernetes' readiness probe: initialDelaySeconds 0).

- kumo: the bench starts a ``kumo apiserver`` and a ``kumo agent`` (subprocesses,
  fresh data dirs) and times, per pod, from the create request until a watch shows
  the pod's Ready condition True. The agent probes from inside the pod's network
  namespace (httpGet readinessProbe).
- bare Podman: ``podman run -d -p 127.0.0.1:<port>:8080 ...`` (the CLI, with kumo's
  containers.conf), then GETs ``http://127.0.0.1:<port>/`` on the same schedule.

The two are measured alternately, one pod at a time (each is removed before the
next starts), so both see the same machine. Prints p50 / p99 of each and the ratio
(target: kumo within 1.5x of bare Podman at p50; Kubernetes' SLO is 5 s at p99).

Bounded: --pods (30..200) per side and --time-limit seconds for the whole run.

    .venv/bin/python bench/pod_start.py [--pods 30] [--period 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from kumo.client import ApiException, AsyncClient, ClientConfig
from kumo.model.coordination import Lease
from kumo.model.core import Pod
from kumo.model.registry import for_model
from kumo.node.runtime.podman import default_containers_conf

REPO = Path(__file__).resolve().parent.parent
KUMO = REPO / ".venv" / "bin" / "kumo"
NAMESPACE = "bench"
IMAGE = "docker.io/library/busybox:latest"
SCRIPT = (
    "mkdir -p /www && echo ok > /www/index.html && trap 'exit 0' TERM;"
    " httpd -f -p 8080 -h /www & wait"
)
TARGET = 1.5
POD = for_model(Pod)
LEASE = for_model(Lease)


def kumo_command() -> list[str]:
    return [str(KUMO)] if KUMO.exists() else [sys.executable, "-m", "kumo.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Processes:
    """The API server and the agent, as children of this process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def start_apiserver(processes: Processes) -> ClientConfig:
    data = processes.root / "apiserver"
    token_file = processes.root / "token"
    port = free_port()
    env = dict(os.environ, KUMO_HOME=str(processes.root / "home"))
    server = processes.spawn(
        "apiserver",
        [
            *kumo_command(),
            "apiserver",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--token-file",
            str(token_file),
        ],
        env,
    )
    ca_file = data / "pki" / "ca.crt"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("kumo apiserver exited; see apiserver.log")
        if ca_file.exists() and token_file.exists():
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=str(ca_file)).is_success:
                    return ClientConfig(
                        server=f"https://127.0.0.1:{port}",
                        token=token_file.read_text().strip(),
                        ca_data=ca_file.read_bytes(),
                        namespace=NAMESPACE,
                    )
        time.sleep(0.1)
    raise RuntimeError("kumo apiserver did not become healthy in 30 s")


async def start_agent(processes: Processes, config: ClientConfig, node: str) -> None:
    ca_file = processes.root / "ca.crt"
    ca_file.write_bytes(config.ca_data or b"")
    env = dict(os.environ, KUMO_AGENT_TOKEN=config.token or "")
    agent = processes.spawn(
        "agent",
        [
            *kumo_command(),
            "agent",
            "--server",
            config.server,
            "--ca-file",
            str(ca_file),
            "--name",
            node,
            "--data-dir",
            str(processes.root / "agent"),
        ],
        env,
    )
    async with AsyncClient(config) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if agent.poll() is not None:
                raise RuntimeError("kumo agent exited; see agent.log")
            with contextlib.suppress(ApiException):
                await client.get_raw(LEASE, node, "kube-node-lease")
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("kumo agent did not register in 60 s")


async def podman(*args: str) -> str:
    env = dict(os.environ, CONTAINERS_CONF=str(default_containers_conf()))
    process = await asyncio.create_subprocess_exec(
        "podman",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


async def first_good_probe(port: int, period: float, began: float) -> float:
    """Probe http://127.0.0.1:port/ now and then every ``period`` s; the elapsed time
    since ``began`` at the first success."""
    async with httpx.AsyncClient(timeout=1.0) as http:
        tick = time.perf_counter()
        while True:
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(f"http://127.0.0.1:{port}/")
                if 200 <= response.status_code < 400:
                    return time.perf_counter() - began
            tick += period
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))


async def bare_once(index: int, period: float) -> float:
    name = f"kumo-bench-bare-{index}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    began = time.perf_counter()
    await podman(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", IMAGE, "sh", "-c", SCRIPT
    )
    try:
        return await first_good_probe(port, period, began)
    finally:
        await podman("rm", "-f", "-t", "0", name)


class ReadyWatch:
    """One watch over the bench namespace; futures resolve when a pod turns Ready."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.gone: dict[str, asyncio.Future[None]] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.client.list_raw(POD, NAMESPACE)
        version = str(listing["metadata"]["resourceVersion"])
        self.task = asyncio.create_task(self._run(version))

    async def _run(self, version: str) -> None:
        async for event in self.client.watch_raw(POD, NAMESPACE, resource_version=version):
            name = str(event.object.get("metadata", {}).get("name"))
            if event.type == "DELETED":
                future = self.gone.pop(name, None)
                if future is not None and not future.done():
                    future.set_result(None)
                continue
            conditions = (event.object.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            waiter = self.waiting.get(name)
            if ready and waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())

    def expect_ready(self, name: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[name] = future
        return future

    def expect_gone(self, name: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone[name] = future
        return future


def pod_manifest(name: str, node: str, period: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "web",
                    "image": IMAGE,
                    "command": ["sh", "-c", SCRIPT],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": 8080},
                        "periodSeconds": max(1, round(period)),
                    },
                }
            ],
        },
    }


async def kumo_once(
    client: AsyncClient, watch: ReadyWatch, node: str, index: int, period: float
) -> float:
    name = f"web-{index}"
    ready = watch.expect_ready(name)
    began = time.perf_counter()
    await client.create_raw(pod_manifest(name, node, period))
    latency = await ready - began
    gone = watch.expect_gone(name)
    await client.delete_raw(POD, name)
    await gone  # the agent stopped everything and deleted the object
    return latency


async def run(pods: int, period: float, time_limit: float, root: Path) -> None:
    processes = Processes(root)
    node = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        config = start_apiserver(processes)
        async with AsyncClient(config) as client:
            await client.create_raw(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            )
            await start_agent(processes, config, node)
            watch = ReadyWatch(client)
            await watch.start()
            bare: list[float] = []
            kumo: list[float] = []
            async with asyncio.timeout(time_limit):
                # Warm-up (not counted): first use of the image, the network, the caches.
                await bare_once(-1, period)
                await kumo_once(client, watch, node, -1, period)
                for index in range(pods):
                    bare.append(await bare_once(index, period))
                    kumo.append(await kumo_once(client, watch, node, index, period))
            if watch.task is not None:
                watch.task.cancel()
        report(kumo, bare, period)
    finally:
        processes.stop()
        with contextlib.suppress(Exception):
            label = f"label=kumo.dev/node={node}"
            pods_left = (await podman("pod", "ps", "-q", "--filter", label)).split()
            if pods_left:
                await podman("pod", "rm", "-f", "-t", "0", *pods_left)


def report(kumo: list[float], bare: list[float], period: float) -> None:
    rows = [
        ("kumo: apply -> Ready", kumo),
        ("bare: podman run -d + first probe", bare),
    ]
    print(f"pod start latency, {len(kumo)} pods each, probe period {period:g} s")
    print(f"{'':38} {'p50':>8} {'p99':>8} {'min':>8} {'max':>8}")
    for label, values in rows:
        print(
            f"{label:38} {percentile(values, 50):8.3f} {percentile(values, 99):8.3f}"
            f" {min(values):8.3f} {max(values):8.3f}"
        )
    ratio50 = percentile(kumo, 50) / percentile(bare, 50)
    ratio99 = percentile(kumo, 99) / percentile(bare, 99)
    verdict = "within" if ratio50 <= TARGET else "OVER"
    print(
        f"ratio kumo/bare: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x ({verdict} the {TARGET}x target)"
    )
    print(f"kumo p99 {percentile(kumo, 99):.2f} s (Kubernetes' SLO: 5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=30, help="pods per side (30..200)")
    parser.add_argument("--period", type=float, default=1.0, help="probe period in seconds")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds for the run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not 30 <= args.pods <= 200:
        parser.error("--pods must be between 30 and 200")
    if shutil.which("podman") is None:
        sys.exit("podman is not installed")
    root = Path(tempfile.mkdtemp(prefix="kumo-bench-pods-"))
    try:
        asyncio.run(run(args.pods, args.period, args.time_limit, root))
    finally:
        if args.keep:
            print(f"work directory: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
