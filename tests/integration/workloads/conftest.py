"""Fixtures for the workload controller tests, against the shared real API server.

No node agent exists yet, so ``Kubelet`` plays its part the way Kubernetes' own controller
integration tests do: it registers a Node (and renews its Lease when asked), binds pods to
its node through pods/binding (unless the node is cordoned), reports them Running / Ready (with ``hostIP`` and
``publishedPorts``) or finished through pods/status, and finishes pods that are being
deleted (a delete with gracePeriodSeconds=0, as an agent does once containers stopped).

Fixtures:
- ``kubelets``: ``await kubelets.start(node=..., behaviour=..., ...)`` -> a running ``Kubelet``
  for the test's namespace; all are stopped at the end of the test.
- ``start_controllers``: ``async with start_controllers("replicaset", job=factory):`` runs the
  named controllers (a keyword overrides a factory, e.g. a Job controller with a short
  backoff) until the block ends.
- ``wait_for``: ``await wait_for(check, within=...)`` (from the controller tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient
from kumo.model.registry import by_kind
from kumo.platform.controllers import CONTROLLERS, ControllerFactory, ControllerManager
from tests.integration.controllers.conftest import eventually, running_controllers

Obj = dict[str, Any]
POD = by_kind("v1", "Pod")
NODE = by_kind("v1", "Node")
LEASE = by_kind("coordination.k8s.io/v1", "Lease")
NAMESPACE = by_kind("v1", "Namespace")
assert POD is not None and NODE is not None and LEASE is not None and NAMESPACE is not None
NODE_LEASE_NAMESPACE = "kube-node-lease"


@pytest.fixture
def wait_for() -> Callable[..., Awaitable[Any]]:
    return eventually


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_of(pod: Obj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


def default_behaviour(pod: Obj) -> str:
    """What a pod does, read from its image name: ``...never-ready...`` runs without getting
    Ready, ``...exit-0...`` / ``...exit-1...`` run then succeed / fail, ``...pending...`` never
    starts; anything else runs and is Ready."""
    image = image_of(pod)
    for marker, behaviour in (
        ("never-ready", "running"),
        ("exit-0", "succeed"),
        ("exit-1", "fail"),
        ("pending", "pending"),
    ):
        if marker in image:
            return behaviour
    return "ready"


class Kubelet:
    """Plays a node agent for the pods of one namespace (see the module docstring)."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        node: str,
        *,
        behaviour: Callable[[Obj], str] = default_behaviour,
        host_ip: str = "127.0.0.1",
        bind: bool = True,
        finish_deletes: bool = True,
        finish_delay: float = 0.0,
        run_for: float = 0.3,
        lease_interval: float | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.node = node
        self.behaviour = behaviour
        self.host_ip = host_ip
        self.bind = bind
        self.finish_deletes = finish_deletes
        self.finish_delay = finish_delay
        self.run_for = run_for
        self.lease_interval = lease_interval
        self.next_port = random.randint(20000, 60000)
        self.started: set[str] = set()
        self.binding: set[str] = set()
        self.finishing: set[str] = set()
        self.bound: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: list[asyncio.Task[None]] = []
        self.errors: list[str] = []

    # ---- lifecycle ---------------------------------------------------------------------------

    async def register(self) -> None:
        """Create (or refresh) this node's Node object, Ready, with the node address."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.host_ip}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [self._ready_condition()],
            },
        }
        try:
            await self.client.create_raw(body)
        except ApiException as exc:
            if not exc.already_exists:
                raise
            await self.post_ready()

    def _ready_condition(self) -> Obj:
        return {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now_text(),
            "lastTransitionTime": now_text(),
        }

    async def post_ready(self) -> None:
        await self.client.patch_raw(
            NODE, self.node, {"status": {"conditions": [self._ready_condition()]}}, sub="status"
        )

    async def renew_lease(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": NODE_LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": 40,
                "renewTime": micro_now(),
            },
        }
        try:
            current = await self.client.get_raw(LEASE, self.node, NODE_LEASE_NAMESPACE)
        except ApiException as exc:
            if not exc.not_found:
                raise
            await self.client.create_raw(body, NODE_LEASE_NAMESPACE)
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.client.replace_raw(body, NODE_LEASE_NAMESPACE)

    async def start(self) -> None:
        await self.register()
        items, version = await self.client.list_all_raw(POD, self.namespace)
        for pod in items:
            self._handle(pod)
        self._main.append(asyncio.create_task(self._watch(version)))
        if self.lease_interval is not None:
            await self.renew_lease()
            self._main.append(asyncio.create_task(self._renew()))

    async def stop(self) -> None:
        """Stop everything at once, as an agent that dies."""
        for task in [*self._main, *self._tasks]:
            task.cancel()
        for task in [*self._main, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._main.clear()
        self._tasks.clear()

    async def _renew(self) -> None:
        assert self.lease_interval is not None
        while True:
            await asyncio.sleep(self.lease_interval)
            with contextlib.suppress(ApiException):
                await self.renew_lease()

    async def _watch(self, version: str) -> None:
        while True:
            try:
                async for event in self.client.watch_raw(
                    POD, self.namespace, resource_version=version, timeout_seconds=60
                ):
                    version = str(event.object.get("metadata", {}).get("resourceVersion", version))
                    if event.type in ("ADDED", "MODIFIED"):
                        self._handle(event.object)
            except ApiException as exc:
                if not exc.gone:
                    raise
                items, version = await self.client.list_all_raw(POD, self.namespace)
                for pod in items:
                    self._handle(pod)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(repr(task.exception()))

    # ---- pods --------------------------------------------------------------------------------

    def _handle(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid"))
        node = (pod.get("spec") or {}).get("nodeName")
        if meta.get("deletionTimestamp"):
            if node == self.node and self.finish_deletes and uid not in self.finishing:
                self.finishing.add(uid)
                self._spawn(self._finish(pod))
            return
        if not node:
            if self.bind and uid not in self.binding:
                self.binding.add(uid)
                self._spawn(self._bind(pod))
            return
        if node != self.node or uid in self.started:
            return
        self.started.add(uid)
        self._spawn(self._run_pod(pod))

    async def _finish(self, pod: Obj) -> None:
        if self.finish_delay:
            await asyncio.sleep(self.finish_delay)
        with contextlib.suppress(ApiException):
            await self.client.delete_raw(
                POD, pod["metadata"]["name"], self.namespace, grace_period=0
            )

    async def _bind(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        node = await self.client.get_raw(NODE, self.node)
        if (node.get("spec") or {}).get("unschedulable"):
            self.binding.discard(str(pod["metadata"].get("uid")))
            return  # cordoned: a scheduler would not put it here
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": self.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        try:
            await self.client.request("POST", POD.path(self.namespace, name, "binding"), body=body)
            self.bound.append(name)
        except ApiException as exc:
            if exc.code not in (404, 409):
                raise

    def published_ports(self, pod: Obj) -> list[Obj]:
        out = []
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                host_port = port.get("hostPort")
                if not host_port:
                    host_port = self.next_port
                    self.next_port += 1
                entry = {
                    "containerName": container["name"],
                    "containerPort": port["containerPort"],
                    "protocol": port.get("protocol") or "TCP",
                    "hostIP": self.host_ip,
                    "hostPort": host_port,
                }
                if port.get("name"):
                    entry["name"] = port["name"]
                out.append(entry)
        return out

    def running_status(self, pod: Obj, *, ready: bool) -> Obj:
        stamp = now_text()
        flag = "True" if ready else "False"
        containers = (pod.get("spec") or {}).get("containers") or []
        return {
            "phase": "Running",
            "hostIP": self.host_ip,
            "startTime": stamp,
            "publishedPorts": self.published_ports(pod),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp},
                {"type": "Ready", "status": flag, "lastTransitionTime": stamp},
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image"),
                    "ready": ready,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": stamp}},
                }
                for c in containers
            ],
        }

    async def _patch_status(self, name: str, new_status: Obj) -> None:
        try:
            await self.client.patch_raw(
                POD, name, {"status": new_status}, self.namespace, sub="status"
            )
        except ApiException as exc:
            if exc.code not in (404, 409):
                raise

    async def _run_pod(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        behaviour = self.behaviour(pod)
        if behaviour == "pending":
            return
        await self._patch_status(name, self.running_status(pod, ready=behaviour == "ready"))
        if behaviour not in ("succeed", "fail"):
            return
        await asyncio.sleep(self.run_for)
        code = 0 if behaviour == "succeed" else 1
        stamp = now_text()
        containers = (pod.get("spec") or {}).get("containers") or []
        finished = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": stamp,
                },
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": stamp,
                },
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image"),
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "finishedAt": stamp,
                        }
                    },
                }
                for c in containers
            ],
        }
        await self._patch_status(name, finished)

    async def set_ready(self, name: str, ready: bool) -> None:
        """Flip a running pod's Ready condition, as a readiness probe would."""
        pod = await self.client.get_raw(POD, name, self.namespace)
        status = self.running_status(pod, ready=ready)
        status["publishedPorts"] = (pod.get("status") or {}).get("publishedPorts") or []
        await self._patch_status(name, status)


class Kubelets:
    def __init__(self, client: AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.running: list[Kubelet] = []

    async def start(self, node: str | None = None, **options: Any) -> Kubelet:
        kubelet = Kubelet(self.client, self.namespace, node or f"{self.namespace}-node", **options)
        await kubelet.start()
        self.running.append(kubelet)
        return kubelet

    async def stop_all(self) -> None:
        for kubelet in self.running:
            await kubelet.stop()


@pytest.fixture
async def kubelets(async_client: AsyncClient, namespace: str) -> AsyncIterator[Kubelets]:
    group = Kubelets(async_client, namespace)
    try:
        yield group
    finally:
        await group.stop_all()
        for kubelet in group.running:
            with contextlib.suppress(ApiException):
                await async_client.delete_raw(NODE, kubelet.node)
        errors = [e for k in group.running for e in k.errors]
        assert not errors, f"the kubelet stand-in failed: {errors}"


@contextlib.asynccontextmanager
async def running(
    client: AsyncClient, *names: str, **overrides: ControllerFactory
) -> AsyncIterator[ControllerManager]:
    factories = [CONTROLLERS[name] for name in names if name not in overrides]
    factories += list(overrides.values())
    async with running_controllers(client, factories) as manager:
        yield manager


@pytest.fixture
def start_controllers(async_client: AsyncClient) -> Callable[..., Any]:
    def start(*names: str, **overrides: ControllerFactory) -> Any:
        return running(async_client, *names, **overrides)

    return start


async def ensure_namespace(client: AsyncClient, name: str) -> None:
    try:
        await client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
    except ApiException as exc:
        if not exc.already_exists:
            raise
