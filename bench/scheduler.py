"""Scheduler throughput: pods bound per second with 1,000 and 5,000 simulated nodes.

For each node count the bench starts its own ``kumo apiserver`` (a subprocess on 127.0.0.1,
fresh data dir), creates the Node objects (no agents: status.allocatable + a Ready condition,
a few taints, labels, images) and the pending pods (small pods of a few ReplicaSet-like
owners), then starts the scheduler in this process and times it from informer sync until every
pod is bound. Every binding is a real API write (POST pods/{name}/binding); at the end the
pods are listed from the API server to check that all are bound.

Also printed, from the same run, as baselines for the end-to-end figure: how many bindings per
second the API server takes with no scheduler at all (the same writer POSTing bindings of
other pods, 64 in flight), the scheduling-cycle rate without the API (the same scheduler's
cycles on the same cache, assume only), and the CPU the API server and the scheduler process
spent per binding — which shows where the time goes.

Bounded: at most --max-pods pods and --max-nodes nodes per run, and --time-limit seconds per
phase (the phase fails if it runs out).

    .venv/bin/python bench/scheduler.py [--nodes 1000,5000] [--pods 3000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from kumo.client import AsyncClient, ClientConfig
from kumo.platform.scheduler import ApiWriter, Scheduler, SchedulerOptions, default_profile
from kumo.platform.scheduler.framework import CycleState
from kumo.platform.scheduler.podinfo import PodInfo

REPO = Path(__file__).resolve().parent.parent
TARGET = 1000.0
NAMESPACE = "bench"
OWNERS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiServer:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.token_file = root / "token"
        self.log_path = root / "apiserver.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ClientConfig:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        kumo = REPO / ".venv" / "bin" / "kumo"
        command = [str(kumo)] if kumo.exists() else [sys.executable, "-m", "kumo.cli.main"]
        command += [
            "apiserver",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--token-file",
            str(self.token_file),
        ]
        env = dict(os.environ, KUMO_HOME=str(self.data_dir.parent / "home"))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        ca_file = self.data_dir / "pki" / "ca.crt"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"apiserver exited: {self.log_path.read_text()[-2000:]}")
            if ca_file.exists() and self.token_file.exists():
                try:
                    ok = httpx.get(
                        f"https://127.0.0.1:{self.port}/healthz", verify=str(ca_file), timeout=2
                    )
                    if ok.status_code == 200:
                        return ClientConfig(
                            server=f"https://127.0.0.1:{self.port}",
                            token=self.token_file.read_text().strip(),
                            ca_data=ca_file.read_bytes(),
                            namespace=NAMESPACE,
                        )
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("apiserver did not become healthy in 30 s")

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def node_object(i: int, rng: random.Random) -> dict[str, Any]:
    name = f"node-{i:05d}"
    size = rng.choice((4, 8, 16))
    taints = []
    if i % 20 == 7:
        taints.append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    if i % 10 == 3:
        taints.append({"key": "spot", "value": "true", "effect": "PreferNoSchedule"})
    images = [{"names": ["registry.local/app:v1"], "sizeBytes": 300 * 1024 * 1024}] * (i % 3 == 0)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": f"zone-{i % 10}",
                "node.kubernetes.io/instance-type": f"c{size}",
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": {"cpu": str(size), "memory": f"{size * 4}Gi", "pods": "110"},
            "allocatable": {"cpu": str(size), "memory": f"{size * 4}Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "images": images,
        },
    }


def pod_object(i: int) -> dict[str, Any]:
    owner = i % OWNERS
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i:05d}",
            "namespace": NAMESPACE,
            "labels": {"app": f"app-{owner}"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"app-{owner}",
                    "uid": f"00000000-0000-4000-8000-{owner:012d}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.local/app:v1",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ]
        },
    }


async def create_all(writer: ApiWriter, path: str, objects: list[dict[str, Any]]) -> None:
    async def one(obj: dict[str, Any]) -> None:
        code, body = await writer.request("POST", path, obj)
        if code != 201:
            raise RuntimeError(f"creating {obj['metadata']['name']}: HTTP {code}: {body[:300]!r}")

    for start in range(0, len(objects), 500):
        await asyncio.gather(*(one(o) for o in objects[start : start + 500]))


async def count_pending(client: AsyncClient) -> int:
    page = await client.request(
        "GET",
        f"/api/v1/namespaces/{NAMESPACE}/pods",
        params={"fieldSelector": "spec.nodeName="},
    )
    return len(page.json().get("items") or [])


async def binding_ceiling(
    writer: ApiWriter, server: ApiServer, nodes: int, count: int
) -> tuple[float, float]:
    """Bindings per second the API server accepts with no scheduler in the way, and its CPU
    milliseconds per binding: ``count`` pods in their own namespace, bound round-robin
    straight through the same writer."""
    namespace = "baseline"
    code, body = await writer.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    assert code == 201, body
    objects = []
    for i in range(count):
        obj = pod_object(i)
        obj["metadata"]["namespace"] = namespace
        objects.append(obj)
    await create_all(writer, f"/api/v1/namespaces/{namespace}/pods", objects)
    slots = asyncio.Semaphore(64)

    async def bind(i: int) -> None:
        async with slots:
            name = f"pod-{i:05d}"
            target = {"apiVersion": "v1", "kind": "Node", "name": f"node-{i % nodes:05d}"}
            code, body = await writer.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/pods/{name}/binding",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": target,
                },
            )
            if code != 201:
                raise RuntimeError(f"baseline binding: HTTP {code}: {body[:200]!r}")

    started, cpu = time.perf_counter(), server.cpu_seconds()
    await asyncio.gather(*(bind(i) for i in range(count)))
    elapsed, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
    return count / elapsed, 1000 * cpu / count


def cycle_rate(scheduler: Scheduler, pods: int) -> float:
    """Scheduling cycles per second on the scheduler's cache, without any API call: the same
    pods again, assumed (and forgotten afterwards) instead of bound."""
    framework = scheduler.frameworks["default-scheduler"]
    templates = [PodInfo(pod_object(i)) for i in range(pods)]
    for pod in templates:
        pod.name = pod.name.replace("pod-", "replay-")
        pod.key = f"{pod.namespace}/{pod.name}"
    started = time.perf_counter()
    for pod in templates:
        node = scheduler.schedule_pod(framework, CycleState(), pod)
        if isinstance(node, Exception):
            raise RuntimeError(f"replay pod did not fit: {node}")
        scheduler.cache.assume(pod, node.name)
    elapsed = time.perf_counter() - started
    for pod in templates:
        scheduler.cache.forget(pod)
    return pods / elapsed


async def phase(nodes: int, pods: int, time_limit: float, root: Path) -> dict[str, float]:
    server = ApiServer(root)
    config = server.start()
    rng = random.Random(nodes)
    try:
        writer = ApiWriter(config, connections=32)
        code, body = await writer.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        assert code == 201, body
        started = time.perf_counter()
        await create_all(writer, "/api/v1/nodes", [node_object(i, rng) for i in range(nodes)])
        await create_all(
            writer, f"/api/v1/namespaces/{NAMESPACE}/pods", [pod_object(i) for i in range(pods)]
        )
        setup = time.perf_counter() - started
        print(f"  created {nodes} nodes and {pods} pods in {setup:.1f}s", flush=True)
        baseline_pods = min(pods, 2000)
        api_rate, api_cpu_ms = await binding_ceiling(writer, server, nodes, baseline_pods)
        print(
            f"  baseline: the API server alone takes {api_rate:.0f} bindings/s"
            " (same client, 64 in flight, no scheduler, no watchers;"
            f" {api_cpu_ms:.2f} ms API server CPU per binding)",
            flush=True,
        )

        async with AsyncClient(config) as client:
            options = SchedulerOptions(
                profiles=(default_profile(),), parallel_binds=64, seed=1, record_events=True
            )
            scheduler = Scheduler(client, writer, options)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.get_running_loop().create_task(scheduler.run(stop))
            await scheduler.informers.wait_for_sync()
            synced = time.perf_counter()
            server_cpu, own_cpu = server.cpu_seconds(), own_cpu_seconds()
            deadline = synced + time_limit
            while time.perf_counter() < deadline:
                if scheduler.stats.scheduled >= pods:
                    break
                await asyncio.sleep(0.02)
            done = time.perf_counter()
            server_cpu, own_cpu = server.cpu_seconds() - server_cpu, own_cpu_seconds() - own_cpu
            stop.set()
            await task
            bound = scheduler.stats.scheduled
            if bound < pods:
                raise RuntimeError(f"only {bound}/{pods} pods bound within {time_limit}s")
            pending = await count_pending(client)
            if pending:
                raise RuntimeError(f"{pending} pods still pending according to the API server")
            replay = cycle_rate(scheduler, min(pods, 2000))
        await writer.close()
        elapsed = done - synced
        return {
            "sync": synced - started,
            "elapsed": elapsed,
            "rate": bound / elapsed,
            "cycle_rate": replay,
            "cycle_ms": 1000 * scheduler.stats.cycle_seconds / max(scheduler.stats.attempts, 1),
            "server_cpu_ms": 1000 * server_cpu / bound,
            "scheduler_cpu_ms": 1000 * own_cpu / bound,
            "unschedulable": scheduler.stats.unschedulable,
            "bind_wait": scheduler.stats.bind_wait_seconds,
            "api_rate": api_rate,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1000,5000", help="node counts, comma-separated")
    parser.add_argument("--pods", default="3000,5000", help="pods per node count")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per phase")
    parser.add_argument("--max-nodes", type=int, default=10000)
    parser.add_argument("--max-pods", type=int, default=10000)
    args = parser.parse_args()
    node_counts = [int(n) for n in args.nodes.split(",")]
    pod_counts = [int(p) for p in args.pods.split(",")]
    if len(pod_counts) == 1:
        pod_counts *= len(node_counts)
    if max(node_counts) > args.max_nodes or max(pod_counts) > args.max_pods:
        parser.error("node / pod counts above --max-nodes / --max-pods")
    root = Path(tempfile.mkdtemp(prefix="kumo-bench-scheduler-"))
    results = []
    try:
        for nodes, pods in zip(node_counts, pod_counts, strict=True):
            print(f"{nodes} nodes, {pods} pods:", flush=True)
            result = asyncio.run(phase(nodes, pods, args.time_limit, root / f"n{nodes}"))
            results.append((nodes, pods, result))
            print(
                f"  scheduled {pods} pods in {result['elapsed']:.2f}s after a"
                f" {result['sync']:.2f}s informer sync: {result['rate']:.0f} pods/s"
                f" (target {TARGET:.0f})\n"
                f"  scheduling cycles alone (no API, same cache): {result['cycle_rate']:.0f}"
                f" pods/s; end-to-end / cycles = {result['rate'] / result['cycle_rate']:.2f}\n"
                f"  mean cycle {result['cycle_ms']:.3f} ms; CPU per binding: API server"
                f" {result['server_cpu_ms']:.2f} ms, scheduler process"
                f" {result['scheduler_cpu_ms']:.2f} ms; waited {result['bind_wait']:.2f}s"
                " for binding slots\n"
                f"  end-to-end / API-only bindings = {result['rate'] / result['api_rate']:.2f}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\nsummary (pods/s, every binding a real API write; target >= 1000 at 5000 nodes)")
    for nodes, pods, result in results:
        verdict = "meets" if result["rate"] >= TARGET else "below"
        print(
            f"  {nodes:>5} nodes  {pods:>5} pods  {result['rate']:>7.0f} pods/s end-to-end"
            f"  {result['cycle_rate']:>7.0f} cycles/s  API alone {result['api_rate']:>5.0f}"
            f" bindings/s  {verdict} target"
        )


if __name__ == "__main__":
    main()
