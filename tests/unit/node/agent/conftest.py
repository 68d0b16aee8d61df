"""Unit-test helpers for the node agent: an in-memory ``NodeApi``, pods, and pod workers
on ``FakeRuntime``."""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kumo.model.core import ConfigMap, Pod, PodStatus, Secret, Service
from kumo.node.backoff import Backoff
from kumo.node.config import AgentOptions
from kumo.node.pod_worker import PodWorker, WorkerContext
from kumo.node.ports import HostPortAllocator
from kumo.node.runtime.fake import FakeHost, FakeRuntime
from kumo.node.volumes import VolumeManager

Obj = dict[str, Any]


class FakeApi:
    """``NodeApi`` in memory: ConfigMaps/Secrets to read, and a record of what the
    worker wrote."""

    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], ConfigMap] = {}
        self.secrets: dict[tuple[str, str], Secret] = {}
        self.statuses: list[Obj] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str, str | None]] = []
        self.gone: set[str] = set()
        self.services: dict[tuple[str, str], Service] = {}
        # TokenRequests: (namespace, account, pod name, pod uid, audiences, seconds).
        self.token_requests: list[tuple[str, str, str, str, list[str] | None, int]] = []
        self.token_lifetime: int | None = None  # seconds; None: as requested
        self.token_error: Exception | None = None

    async def request_token(
        self, pod: Pod, audiences: list[str] | None, expiration_seconds: int
    ) -> tuple[str, datetime.datetime]:
        if self.token_error is not None:
            raise self.token_error
        namespace = pod.metadata.namespace or "default"
        account = pod.spec.service_account_name or "default"
        self.token_requests.append(
            (
                namespace,
                account,
                pod.metadata.name or "",
                pod.metadata.uid or "",
                audiences,
                expiration_seconds,
            )
        )
        lifetime = self.token_lifetime if self.token_lifetime is not None else expiration_seconds
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lifetime)
        return f"token-{account}-{len(self.token_requests)}", expires

    def add_service(self, name: str, spec: Obj, namespace: str = "ns") -> None:
        service = Service.model_validate(
            {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        )
        service.apply_defaults()
        self.services[(namespace, name)] = service

    async def list_services(self, namespace: str) -> list[Service]:
        return [s for (ns, _), s in sorted(self.services.items()) if ns == namespace]

    async def get_service(self, namespace: str, name: str) -> Service | None:
        return self.services.get((namespace, name))

    def add_config_map(self, name: str, data: dict[str, str], namespace: str = "ns") -> None:
        self.config_maps[(namespace, name)] = ConfigMap.model_validate(
            {"metadata": {"name": name, "namespace": namespace}, "data": data}
        )

    def add_secret(self, name: str, data: dict[str, str], namespace: str = "ns") -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.secrets[(namespace, name)] = Secret.model_validate(
            {"metadata": {"name": name, "namespace": namespace}, "data": encoded}
        )

    async def get_config_map(self, namespace: str, name: str) -> ConfigMap | None:
        return self.config_maps.get((namespace, name))

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        return self.secrets.get((namespace, name))

    async def write_pod_status(self, pod: Pod, status: Obj) -> Pod:
        from kumo.node.api import PodGone

        if pod.metadata.uid in self.gone:
            raise PodGone(pod.metadata.name or "")
        self.statuses.append(status)
        updated = pod.model_copy(deep=True)
        updated.status = PodStatus.model_validate(status)
        updated.metadata.resource_version = str(int(pod.metadata.resource_version or 0) + 1)
        return updated

    async def delete_pod(self, pod: Pod) -> None:
        self.deleted.append(pod.metadata.uid or "")

    def record_event(
        self,
        pod: Pod,
        event_type: str,
        reason: str,
        message: str,
        field_path: str | None = None,
    ) -> None:
        self.events.append((event_type, reason, message, field_path))

    @property
    def last(self) -> Obj:
        return self.statuses[-1] if self.statuses else {}

    def reasons(self) -> list[str]:
        return [reason for _, reason, _, _ in self.events]


def make_pod(
    containers: list[Obj],
    *,
    name: str = "p",
    namespace: str = "ns",
    uid: str | None = None,
    **spec: Any,
) -> Pod:
    """A pod as the API would store it (defaults applied), bound to ``fake-node``."""
    pod = Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid or str(uuid.uuid4()),
                "resourceVersion": "1",
            },
            "spec": {
                "nodeName": "fake-node",
                "terminationGracePeriodSeconds": 1,
                "containers": containers,
                **spec,
            },
        }
    )
    pod.apply_defaults()
    return pod


def fast_options(tmp_path: Path, **overrides: Any) -> AgentOptions:
    values: dict[str, Any] = {
        "node_name": "fake-node",
        "data_dir": tmp_path / "agent",
        "restart_backoff_initial": 0.3,
        "restart_backoff_max": 2.0,
        "image_backoff_initial": 0.3,
        "image_backoff_max": 2.0,
        "sync_period": 0.1,
        "port_range": "40000-40100",
    }
    values.update(overrides)
    return AgentOptions.build(**values)


class Harness:
    """Pod workers on a ``FakeRuntime`` with a ``FakeApi``."""

    def __init__(self, tmp_path: Path, host: FakeHost | None = None, **overrides: Any) -> None:
        self.options = fast_options(tmp_path, **overrides)
        self.runtime = FakeRuntime("fake-node", host=host)
        self.api = FakeApi()
        self.finished: list[str] = []
        self.context = WorkerContext(
            runtime=self.runtime,
            api=self.api,
            options=self.options,
            volumes=VolumeManager(self.options.pods_dir, self.runtime, self.api),
            ports=HostPortAllocator(*self.options.port_range, is_free=lambda a, p, t: True),
            crash_backoff=Backoff(
                self.options.restart_backoff_initial, self.options.restart_backoff_max
            ),
            image_backoff=Backoff(
                self.options.image_backoff_initial, self.options.image_backoff_max
            ),
            node_cpu_millis=2000,
            node_memory_bytes=4 << 30,
            on_finished=self.finished.append,
        )
        self.workers: list[PodWorker] = []

    def run(self, pod: Pod) -> PodWorker:
        worker = PodWorker(self.context, pod)
        self.workers.append(worker)
        worker.start()
        return worker

    async def until(
        self, check: Callable[[Obj], bool], within: float = 5.0, what: str = "status"
    ) -> Obj:
        """Wait until the last written status satisfies ``check``."""
        deadline = time.monotonic() + within
        while not (self.api.statuses and check(self.api.last)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached; last status: {self.api.last}")
            await asyncio.sleep(0.02)
        return self.api.last

    async def close(self) -> None:
        for worker in self.workers:
            await worker.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        await h.close()


def status_of(status: Obj, name: str, *, init: bool = False) -> Obj:
    key = "initContainerStatuses" if init else "containerStatuses"
    for entry in status.get(key) or []:
        if entry["name"] == name:
            return dict(entry)
    return {}


def condition_of(status: Obj, kind: str) -> Obj:
    for entry in status.get("conditions") or []:
        if entry["type"] == kind:
            return dict(entry)
    return {}
