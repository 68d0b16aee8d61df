"""Resource usage of the node and its pods, as the kubelet's Summary API has it.

``StatsCollector`` samples cumulative usage every ``interval`` seconds: the machine's CPU
time and memory from ``/proc``, each running kumo container's from the runtime. A rate
needs two samples, so ``summary()`` answers with the CPU rate over the window between the
last two (``usageNanoCores``) and the memory of the latest; a pod or container seen only
once is left out until its next sample, as metrics-server leaves out what it cannot rate.

The node server serves ``summary()`` at ``GET /stats/summary``; the API server's
``metrics.k8s.io`` API reads it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kumo.node.runtime import (
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    ContainerRuntime,
    ContainerRuntimeError,
    ContainerState,
)

__all__ = ["ContainerSample", "NodeSample", "Sample", "StatsCollector", "read_node_sample"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeSample:
    """The machine at one instant: cumulative busy CPU time and memory in use."""

    cpu_usage_ns: int
    memory_working_set_bytes: int
    memory_available_bytes: int
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class ContainerSample:
    pod_uid: str
    pod_name: str
    pod_namespace: str
    container: str
    container_id: str
    started_at: datetime | None
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_working_set_bytes: int


@dataclass(frozen=True, slots=True)
class Sample:
    time: datetime
    node: NodeSample | None
    containers: Mapping[str, ContainerSample] = field(default_factory=dict)  # by container id


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def read_node_sample(proc: Path = Path("/proc")) -> NodeSample | None:
    """The machine's busy CPU time (every CPU state but idle and iowait, from ``stat``)
    and memory (``meminfo``: working set = MemTotal - MemAvailable). None if unreadable."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
        meminfo = (proc / "meminfo").read_text().splitlines()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    ticks = [int(v) for v in first[1:9]]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    memory: dict[str, int] = {}
    for line in meminfo:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            memory[name] = int(parts[0]) * 1024
    total = memory.get("MemTotal", 0)
    available = memory.get("MemAvailable", memory.get("MemFree", 0))
    return NodeSample(
        cpu_usage_ns=busy * 1_000_000_000 // _clock_ticks(),
        memory_working_set_bytes=max(0, total - available),
        memory_available_bytes=available,
        memory_total_bytes=total,
    )


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rate(newer: int, older: int, seconds: float) -> int:
    if seconds <= 0 or newer < older:  # a restarted container starts its counter again
        return 0
    return int((newer - older) / seconds)


class StatsCollector:
    """Samples the node's and its containers' usage every ``interval`` seconds (``run``);
    ``summary()`` is the kubelet Summary API document over the last two samples."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        node_name: str,
        *,
        interval: float = 10.0,
        proc: Path = Path("/proc"),
    ) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.interval = interval
        self.proc = proc
        self.started = datetime.now(UTC)
        self._previous: Sample | None = None
        self._latest: Sample | None = None

    async def sample(self) -> Sample:
        """Take one sample now and make it the latest."""
        node = await asyncio.to_thread(read_node_sample, self.proc)
        containers: dict[str, ContainerSample] = {}
        try:
            listed = {
                c.id: c
                for c in await self.runtime.list_containers()
                if c.state == ContainerState.RUNNING and c.pod_uid
            }
            usage = await self.runtime.container_stats(sorted(listed)) if listed else []
        except ContainerRuntimeError as err:
            log.warning("reading container usage failed: %s", err)
            listed, usage = {}, []
        for stats in usage:
            summary = listed.get(stats.container_id)
            if summary is None:
                continue
            containers[stats.container_id] = ContainerSample(
                pod_uid=summary.pod_uid,
                pod_name=summary.labels.get(LABEL_POD_NAME, ""),
                pod_namespace=summary.labels.get(LABEL_POD_NAMESPACE, ""),
                container=summary.container_name,
                container_id=stats.container_id,
                started_at=summary.started_at,
                cpu_usage_ns=stats.cpu_usage_ns,
                memory_usage_bytes=stats.memory_usage_bytes,
                memory_working_set_bytes=stats.memory_working_set_bytes,
            )
        taken = Sample(datetime.now(UTC), node, containers)
        self._previous, self._latest = self._latest, taken
        return taken

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("sampling resource usage failed: %s", err)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()

    def summary(self) -> dict[str, Any]:
        """``{"node": {...}, "pods": [...]}`` in the shape of Kubernetes' Summary API
        (``cpu.usageNanoCores`` / ``usageCoreNanoSeconds``, ``memory.workingSetBytes`` /
        ``usageBytes``, per container and summed per pod). Without two samples yet the
        node has no ``cpu`` rate and ``pods`` is empty."""
        latest, previous = self._latest, self._previous
        node: dict[str, Any] = {"nodeName": self.node_name, "startTime": _time(self.started)}
        out: dict[str, Any] = {"node": node, "pods": []}
        if latest is None:
            return out
        when = _time(latest.time)
        seconds = (latest.time - previous.time).total_seconds() if previous else 0.0
        window = f"{seconds:.3f}s"
        if latest.node is not None:
            node["memory"] = {
                "time": when,
                "workingSetBytes": latest.node.memory_working_set_bytes,
                "usageBytes": latest.node.memory_working_set_bytes,
                "availableBytes": latest.node.memory_available_bytes,
            }
            node["cpu"] = {"time": when, "usageCoreNanoSeconds": latest.node.cpu_usage_ns}
            if previous is not None and previous.node is not None:
                node["cpu"]["usageNanoCores"] = _rate(
                    latest.node.cpu_usage_ns, previous.node.cpu_usage_ns, seconds
                )
                node["window"] = window
        if previous is None:
            return out
        pods: dict[str, dict[str, Any]] = {}
        for container_id, now in sorted(latest.containers.items()):
            before = previous.containers.get(container_id)
            if before is None:
                continue
            entry = {
                "name": now.container,
                "cpu": {
                    "time": when,
                    "usageNanoCores": _rate(now.cpu_usage_ns, before.cpu_usage_ns, seconds),
                    "usageCoreNanoSeconds": now.cpu_usage_ns,
                },
                "memory": {
                    "time": when,
                    "workingSetBytes": now.memory_working_set_bytes,
                    "usageBytes": now.memory_usage_bytes,
                },
            }
            if now.started_at is not None:
                entry["startTime"] = _time(now.started_at)
            pod = pods.setdefault(
                now.pod_uid,
                {
                    "podRef": {
                        "name": now.pod_name,
                        "namespace": now.pod_namespace,
                        "uid": now.pod_uid,
                    },
                    "window": window,
                    "containers": [],
                },
            )
            pod["containers"].append(entry)
        for pod in pods.values():
            containers = pod["containers"]
            pod["cpu"] = {
                "time": when,
                "usageNanoCores": sum(c["cpu"]["usageNanoCores"] for c in containers),
                "usageCoreNanoSeconds": sum(c["cpu"]["usageCoreNanoSeconds"] for c in containers),
            }
            pod["memory"] = {
                "time": when,
                "workingSetBytes": sum(c["memory"]["workingSetBytes"] for c in containers),
                "usageBytes": sum(c["memory"]["usageBytes"] for c in containers),
            }
        out["pods"] = list(pods.values())
        return out
