"""The agent's usage sampling and its Summary document (pure logic: a /proc written by the
test, a stand-in runtime)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from kumo.node.runtime import (
    LABEL_CONTAINER_NAME,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerState,
    ContainerStats,
    ContainerSummary,
)
from kumo.node.stats import StatsCollector, read_node_sample

MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12000000 kB\n"


def write_proc(root: Path, busy_ticks: int, idle_ticks: int = 5000) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    root.mkdir(exist_ok=True)
    user = busy_ticks - 10
    (root / "stat").write_text(
        f"cpu  {user} 0 10 {idle_ticks} 300 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    )
    (root / "meminfo").write_text(MEMINFO)


def test_node_sample_counts_busy_cpu_and_memory_in_use(tmp_path: Path) -> None:
    write_proc(tmp_path, busy_ticks=1000)
    sample = read_node_sample(tmp_path)
    assert sample is not None
    # 1000 busy ticks of 1/100 s (idle and iowait left out)
    assert sample.cpu_usage_ns == 10 * 1_000_000_000
    assert sample.memory_total_bytes == 16000000 * 1024
    assert sample.memory_available_bytes == 12000000 * 1024
    assert sample.memory_working_set_bytes == 4000000 * 1024


def test_node_sample_of_an_unreadable_proc_is_none(tmp_path: Path) -> None:
    assert read_node_sample(tmp_path / "missing") is None
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert read_node_sample(tmp_path) is None


def summary(cid: str, pod: str, container: str, state: ContainerState) -> ContainerSummary:
    return ContainerSummary(
        id=cid,
        name=f"kumo_{pod}_{container}",
        sandbox_id="sb",
        labels={
            LABEL_POD_UID: f"uid-{pod}",
            LABEL_POD_NAME: pod,
            LABEL_POD_NAMESPACE: "team",
            LABEL_CONTAINER_NAME: container,
        },
        state=state,
        image="busybox",
        image_id="0" * 64,
        created_at=None,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=None,
        exit_code=None,
    )


class UsageRuntime:
    """Just what the collector calls: running containers and their cumulative usage."""

    def __init__(self) -> None:
        self.containers = [
            summary("a", "web", "app", ContainerState.RUNNING),
            summary("b", "web", "sidecar", ContainerState.RUNNING),
            summary("c", "old", "app", ContainerState.EXITED),
        ]
        self.cpu_ns = {"a": 0, "b": 0}
        self.memory = {"a": 50 << 20, "b": 10 << 20}

    async def list_containers(self) -> list[ContainerSummary]:
        return list(self.containers)

    async def container_stats(self, ids: Sequence[str] | None = None) -> list[ContainerStats]:
        assert ids is not None and "c" not in ids  # only running containers are asked for
        return [
            ContainerStats(
                container_id=cid,
                timestamp=datetime.now(UTC),
                cpu_usage_ns=self.cpu_ns[cid],
                memory_usage_bytes=self.memory[cid] + (1 << 20),
                memory_working_set_bytes=self.memory[cid],
                memory_limit_bytes=None,
                pids=1,
            )
            for cid in ids
        ]


def test_summary_rates_cpu_over_the_window_and_sums_pods(tmp_path: Path) -> None:
    runtime = UsageRuntime()
    collector = StatsCollector(runtime, "n1", proc=tmp_path)  # type: ignore[arg-type]

    async def scenario() -> None:
        write_proc(tmp_path, busy_ticks=1000)
        first = await collector.sample()
        once = collector.summary()
        assert once["pods"] == []  # one sample: nothing to rate yet
        assert "usageNanoCores" not in once["node"]["cpu"]
        assert once["node"]["memory"]["workingSetBytes"] == 4000000 * 1024
        runtime.cpu_ns = {"a": 600_000_000, "b": 100_000_000}
        write_proc(tmp_path, busy_ticks=1150)
        second = await collector.sample()
        seconds = (second.time - first.time).total_seconds()
        document = collector.summary()
        assert document["node"]["nodeName"] == "n1"
        assert document["node"]["cpu"]["usageNanoCores"] == int(1_500_000_000 / seconds)
        (pod,) = document["pods"]
        assert pod["podRef"] == {"name": "web", "namespace": "team", "uid": "uid-web"}
        assert pod["window"] == f"{seconds:.3f}s"
        by_name = {c["name"]: c for c in pod["containers"]}
        assert set(by_name) == {"app", "sidecar"}
        assert by_name["app"]["cpu"]["usageNanoCores"] == int(600_000_000 / seconds)
        assert by_name["app"]["memory"]["workingSetBytes"] == 50 << 20
        assert pod["cpu"]["usageNanoCores"] == sum(
            c["cpu"]["usageNanoCores"] for c in pod["containers"]
        )
        assert pod["memory"]["workingSetBytes"] == 60 << 20

    asyncio.run(scenario())


def test_a_restarted_counter_rates_zero_not_negative(tmp_path: Path) -> None:
    runtime = UsageRuntime()
    collector = StatsCollector(runtime, "n1", proc=tmp_path)  # type: ignore[arg-type]

    async def scenario() -> None:
        write_proc(tmp_path, busy_ticks=1000)
        runtime.cpu_ns = {"a": 900_000_000, "b": 0}
        await collector.sample()
        runtime.cpu_ns = {"a": 10, "b": 0}
        await collector.sample()

    asyncio.run(scenario())
    (pod,) = collector.summary()["pods"]
    assert all(c["cpu"]["usageNanoCores"] == 0 for c in pod["containers"])


def test_a_container_seen_once_is_left_out(tmp_path: Path) -> None:
    runtime = UsageRuntime()
    collector = StatsCollector(runtime, "n1", proc=tmp_path)  # type: ignore[arg-type]
    write_proc(tmp_path, busy_ticks=1000)

    async def scenario() -> None:
        await collector.sample()
        runtime.containers.append(summary("d", "new", "app", ContainerState.RUNNING))
        runtime.cpu_ns["d"] = 5
        runtime.memory["d"] = 1 << 20
        await collector.sample()

    asyncio.run(scenario())
    assert [p["podRef"]["name"] for p in collector.summary()["pods"]] == ["web"]
