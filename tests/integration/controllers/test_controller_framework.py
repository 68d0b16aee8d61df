"""The controller framework against a real API server: retries with backoff, dedup of keys,
status writes, informers that survive an API server restart (resume, or re-list on 410)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kumo.client import ApiException, AsyncClient
from kumo.model.core import ConfigMap
from kumo.model.registry import by_kind, for_model
from kumo.platform.controllers import (
    Controller,
    ControllerManager,
    EventHandler,
    ExponentialBackoff,
    InformerFactory,
    Result,
    SharedInformer,
    write_status,
)
from kumo.platform.controllers.informer import split_key
from tests.conftest import component_kubeconfig

Obj = dict[str, Any]
Wait = Callable[..., Awaitable[Any]]
CONFIGMAPS = for_model(ConfigMap)


def configmap(name: str, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


class FlakyAnnotator(Controller):
    """Annotates ConfigMaps labelled ``flaky=<n>`` after failing ``n`` times; records when
    each attempt happened."""

    name = "flaky-annotator"
    workers = 2
    namespace = ""

    def setup(self) -> None:
        self.configmaps = self.informers.informer(ConfigMap)
        self.configmaps.add_event_handler(self.enqueue_handler())
        self.attempts: dict[str, list[float]] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight: dict[str, int] = {}
        self.overlaps = 0

    async def reconcile(self, key: str) -> Result | None:
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        try:
            if self.in_flight[key] > 1:
                self.overlaps += 1
            namespace, name = split_key(key)
            if namespace != self.namespace:
                return None  # other tests' objects
            obj = self.configmaps.get(namespace, name)
            if obj is None or "flaky" not in (obj["metadata"].get("labels") or {}):
                return None
            self.attempts.setdefault(key, []).append(time.monotonic())
            await self.gate.wait()
            if obj["metadata"]["labels"].get("mode") == "observe":
                return None
            failures = int(obj["metadata"]["labels"]["flaky"])
            if len(self.attempts[key]) <= failures:
                raise RuntimeError(f"attempt {len(self.attempts[key])} fails on purpose")
            await self.client.patch_raw(
                CONFIGMAPS, name, {"metadata": {"annotations": {"reconciled": "yes"}}}, namespace
            )
            return None
        finally:
            self.in_flight[key] -= 1


def flaky_factory(
    base: float, namespace: str
) -> Callable[[AsyncClient, InformerFactory], Controller]:
    def build(async_client: AsyncClient, informers: InformerFactory) -> Controller:
        controller = FlakyAnnotator(
            async_client, informers, backoff=ExponentialBackoff(base=base, cap=5.0)
        )
        controller.namespace = namespace
        return controller

    return build


async def run_manager(manager: ControllerManager) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    await asyncio.wait_for(manager.wait_started(), 30)
    return stop, task


async def test_a_failing_reconcile_is_retried_with_growing_backoff(
    async_client: AsyncClient, namespace: str, wait_for: Wait
) -> None:
    manager = ControllerManager(async_client, [flaky_factory(0.05, namespace)])
    stop, task = await run_manager(manager)
    try:
        flaky = manager.controller("flaky-annotator")
        assert isinstance(flaky, FlakyAnnotator)
        obj = configmap("flaky")
        obj["metadata"]["labels"] = {"flaky": "3"}
        await async_client.create_raw(obj, namespace)

        async def annotated() -> bool:
            current = await async_client.get_raw(CONFIGMAPS, "flaky", namespace)
            return (current["metadata"].get("annotations") or {}).get("reconciled") == "yes"

        await wait_for(annotated)
        key = f"{namespace}/flaky"
        times = flaky.attempts[key]
        # three failures, then success (the annotation itself triggers one more, idempotent pass)
        assert len(times) >= 4
        gaps = [b - a for a, b in itertools.pairwise(times[:4])]
        # backoff 0.05, 0.1, 0.2 s
        assert gaps[0] >= 0.045
        assert gaps[1] >= 0.09
        assert gaps[2] >= 0.18
        assert gaps[2] > gaps[0] * 2
        assert flaky.queue.num_requeues(key) == 0, "success forgets the key's failures"
        assert flaky.failures >= 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_changes_during_a_reconcile_coalesce_into_one_more_pass(
    async_client: AsyncClient, namespace: str, wait_for: Wait
) -> None:
    manager = ControllerManager(async_client, [flaky_factory(0.01, namespace)])
    stop, task = await run_manager(manager)
    try:
        flaky = manager.controller("flaky-annotator")
        assert isinstance(flaky, FlakyAnnotator)
        flaky.gate.clear()  # the first reconcile blocks until we let it go
        obj = configmap("busy")
        obj["metadata"]["labels"] = {"flaky": "0", "mode": "observe"}
        created = await async_client.create_raw(obj, namespace)
        key = f"{namespace}/busy"

        async def attempts(n: int) -> bool:
            return len(flaky.attempts.get(key, [])) >= n

        await wait_for(lambda: attempts(1))
        last = created
        for i in range(20):
            last = await async_client.patch_raw(
                CONFIGMAPS, "busy", {"data": {"n": str(i)}}, namespace
            )
        informer = flaky.configmaps

        async def informer_saw_the_last_change() -> bool:
            return informer.synced_to(int(last["metadata"]["resourceVersion"]))

        await wait_for(informer_saw_the_last_change)
        # 20 changes arrived while the key was being processed: it waits once, not 20
        # times, and no second worker took it.
        assert len(flaky.queue) == 0
        assert flaky.queue.processing == 1
        assert len(flaky.attempts[key]) == 1
        flaky.gate.set()
        await wait_for(lambda: attempts(2))

        async def idle() -> bool:
            return len(flaky.queue) == 0 and flaky.queue.processing == 0

        await wait_for(idle)
        assert len(flaky.attempts[key]) == 2, "one more pass covers all 20 changes"
        assert flaky.overlaps == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_write_status_changes_only_the_status(
    async_client: AsyncClient, namespace: str
) -> None:
    deployments = by_kind("apps/v1", "Deployment")
    assert deployments is not None
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "busybox"}]},
    }
    created = await async_client.create_raw(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template,
            },
        },
        namespace,
    )
    attempt = {
        **created,
        "spec": {**created["spec"], "replicas": 9},
        "status": {"replicas": 2, "observedGeneration": 1},
    }
    written = await write_status(async_client, attempt)
    assert written["status"]["replicas"] == 2
    assert written["spec"]["replicas"] == 2, "a status write does not touch spec"
    stored = await async_client.get_raw(deployments, "web", namespace)
    assert stored["spec"]["replicas"] == 2 and stored["status"]["observedGeneration"] == 1
    # a stale resourceVersion is a conflict, as for any update
    try:
        await write_status(async_client, {**attempt, "status": {"replicas": 3}})
    except ApiException as exc:
        assert exc.conflict
    else:
        raise AssertionError("a status write with a stale resourceVersion must fail with 409")


# ---- informers across API server restarts ---------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def handler(self) -> EventHandler:
        return EventHandler(
            on_add=lambda o: self.events.append(("add", o["metadata"]["name"])),
            on_update=lambda old, new: self.events.append(("update", new["metadata"]["name"])),
            on_delete=lambda o: self.events.append(("delete", o["metadata"]["name"])),
        )


async def cache_matches_server(
    async_client: AsyncClient, informer: SharedInformer, namespace: str
) -> bool:
    items, _ = await async_client.list_all_raw(CONFIGMAPS, namespace)
    live = {(o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in items}
    cached = {
        (o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in informer.list(namespace)
    }
    return live == cached


async def test_an_informer_resumes_its_watch_after_the_server_is_killed(
    api_server_factory: Any, wait_for: Wait
) -> None:
    server = await asyncio.to_thread(api_server_factory.start)
    async with AsyncClient(server.client_config()) as async_client:
        await async_client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "r"}}
        )
        for name in ("a", "b"):
            await async_client.create_raw(configmap(name, v="1"), "r")
        informer = SharedInformer(async_client, CONFIGMAPS, min_backoff=0.05, max_backoff=0.3)
        recorder = Recorder()
        informer.add_event_handler(recorder.handler())
        informer.start()
        try:
            await asyncio.wait_for(informer.wait_for_sync(), 10)
            assert sorted(recorder.events) == [("add", "a"), ("add", "b")]
            recorder.events.clear()

            await asyncio.to_thread(server.kill)
            await asyncio.sleep(0.3)  # the informer notices and retries against a dead port
            await asyncio.to_thread(server.start)

            await async_client.create_raw(configmap("c", v="1"), "r")
            await async_client.patch_raw(CONFIGMAPS, "a", {"data": {"v": "2"}}, "r")
            await async_client.delete_raw(CONFIGMAPS, "b", "r")

            await wait_for(lambda: cache_matches_server(async_client, informer, "r"))
            assert informer.stats.lists == 1, "resumed from its resourceVersion, no re-list"
            assert informer.stats.watches >= 2
            assert informer.stats.errors >= 1
            assert recorder.events == [("add", "c"), ("update", "a"), ("delete", "b")]
            cached_a = informer.get("r", "a")
            assert cached_a is not None and cached_a["data"] == {"v": "2"}
        finally:
            await informer.stop()


async def test_an_informer_lists_again_when_its_resource_version_was_compacted(
    api_server_factory: Any, wait_for: Wait
) -> None:
    server = await asyncio.to_thread(api_server_factory.start)
    home_port = server.port
    async with AsyncClient(server.client_config()) as async_client:
        await async_client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "r"}}
        )
        for name in ("a", "b"):
            await async_client.create_raw(configmap(name, v="1"), "r")
        informer = SharedInformer(async_client, CONFIGMAPS, min_backoff=0.05, max_backoff=0.3)
        recorder = Recorder()
        informer.add_event_handler(recorder.handler())
        informer.start()
        try:
            await asyncio.wait_for(informer.wait_for_sync(), 10)
            seen = int(informer.last_resource_version)
            recorder.events.clear()

            # While the informer cannot reach it (the server moves to another port), the
            # server changes things and compacts its history past what the informer saw.
            await asyncio.to_thread(server.kill)
            server.port = free_port()
            server.extra_args = ["--compaction-interval", "0.2"]
            await asyncio.to_thread(server.start)
            async with AsyncClient(server.client_config()) as side:
                await side.delete_raw(CONFIGMAPS, "a", "r")
                await side.patch_raw(CONFIGMAPS, "b", {"data": {"v": "2"}}, "r")
                last = await side.create_raw(configmap("c", v="1"), "r")
                written = int(last["metadata"]["resourceVersion"])

                async def compacted_past_the_writes() -> bool:
                    value = await asyncio.to_thread(metric, server, "kumo_store_compacted_revision")
                    return value >= written

                await wait_for(compacted_past_the_writes)
            assert written > seen
            await asyncio.to_thread(server.stop)
            server.port = home_port
            server.extra_args = []
            await asyncio.to_thread(server.start)

            await wait_for(lambda: cache_matches_server(async_client, informer, "r"))
            assert informer.stats.lists == 2, "410 Gone made the informer list again"
            # the differences between the old cache and the new list arrive as events
            assert sorted(recorder.events) == [("add", "c"), ("delete", "a"), ("update", "b")]
        finally:
            await informer.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(server: Any, name: str) -> float:
    """A gauge from the server's /metrics (blocking)."""
    with server.http() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


# ---- the CLI ------------------------------------------------------------------------------

# The ``kumo`` command group, with ``controllers`` registered as main.py does (this also
# works before main.py registers it).
KUMO_CLI = [
    sys.executable,
    "-c",
    "from kumo.cli.main import cli; from kumo.cli import controller_commands as c\n"
    "if 'controllers' not in cli.commands: c.register(cli)\n"
    "cli(prog_name='kumo')",
]


async def test_kumo_controllers_runs_until_sigterm(
    api_server: Any, async_client: AsyncClient, tmp_path: Path, wait_for: Wait
) -> None:
    # as its own identity (system:kube-controller-manager), not as the admin
    kubeconfig = component_kubeconfig(
        api_server.client_config(), "controllers", tmp_path / "controllers.kubeconfig"
    )
    env = {**os.environ, "KUMOCONFIG": str(kubeconfig)}
    log = (tmp_path / "controllers.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *KUMO_CLI,
        "-v",
        "controllers",
        "--controllers",
        "serviceaccount",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        name = "cli-" + os.urandom(3).hex()
        await async_client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        accounts = by_kind("v1", "ServiceAccount")
        assert accounts is not None

        async def account_created() -> bool:
            assert process.returncode is None, (tmp_path / "controllers.log").read_text()
            try:
                await async_client.get_raw(accounts, "default", name)
            except ApiException as exc:
                if exc.not_found:
                    return False
                raise
            return True

        await wait_for(account_created, within=30)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 15)
        assert code == 0, (tmp_path / "controllers.log").read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


def test_kumo_controllers_rejects_unknown_names(tmp_path: Path) -> None:
    result = subprocess.run(
        [*KUMO_CLI, "controllers", "--controllers", "garbagecollector,nope"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUMOCONFIG": str(tmp_path / "missing")},
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown controller(s) nope" in result.stderr
