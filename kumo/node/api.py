"""What the node agent asks of the API server, behind one small interface.

``NodeApi`` is the contract the pod workers use: read ConfigMaps and Secrets, request
service-account tokens, write a pod's status, delete a finished pod, record Events.
``ClientNodeApi`` implements it over ``kumo.client.AsyncClient``; unit tests use an
in-memory fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from kumo.client import ApiException, AsyncClient
from kumo.model.core import ConfigMap, Event, Pod, Secret, Service
from kumo.model.registry import for_model

__all__ = ["ClientNodeApi", "EventRecorder", "NodeApi", "PodGone", "format_time", "utcnow"]

log = logging.getLogger(__name__)

POD = for_model(Pod)
EVENT = for_model(Event)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(when: datetime.datetime | None = None) -> str:
    """Kubernetes' Time: whole seconds, UTC."""
    return (when or utcnow()).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodGone(Exception):
    """The pod no longer exists (or its name now belongs to a pod with another uid)."""


class NodeApi(Protocol):
    """The API calls of a pod worker. Every method may raise ``ApiException`` for
    unexpected server errors; the worker retries on its next sync."""

    async def get_config_map(self, namespace: str, name: str) -> ConfigMap | None:
        """None if it does not exist."""
        ...

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        """None if it does not exist."""
        ...

    async def list_services(self, namespace: str) -> list[Service]:
        """The Services of a namespace (for the service environment variables)."""
        ...

    async def get_service(self, namespace: str, name: str) -> Service | None:
        """None if it does not exist."""
        ...

    async def request_token(
        self,
        pod: Pod,
        audiences: list[str] | None,
        expiration_seconds: int,
    ) -> tuple[str, datetime.datetime]:
        """A token for the pod's service account, bound to the pod (TokenRequest API);
        ``audiences`` None means the server's default. Returns (token, expiry)."""
        ...

    async def write_pod_status(self, pod: Pod, status: dict[str, Any]) -> Pod:
        """Replace the pod's status (status subresource), guarded by the pod's
        resourceVersion and uid. Returns the stored pod; PodGone if it is gone."""
        ...

    async def delete_pod(self, pod: Pod) -> None:
        """Delete the pod object for good (gracePeriodSeconds=0); gone already is fine."""

    def record_event(
        self,
        pod: Pod,
        event_type: str,
        reason: str,
        message: str,
        field_path: str | None = None,
    ) -> None:
        """Queue an Event about the pod (never blocks, never raises)."""


@dataclass(slots=True)
class _Recorded:
    name: str
    namespace: str
    count: int
    first: str


class EventRecorder:
    """Writes Events in the background, as the kubelet does: an identical event
    (same object, field, reason and message) bumps ``count`` and ``lastTimestamp``
    of the event already written instead of creating another."""

    _MAX_QUEUE = 1000
    _MAX_REMEMBERED = 4096

    def __init__(self, client: AsyncClient, node_name: str, component: str = "kubelet") -> None:
        self.client = client
        self.node_name = node_name
        self.component = component
        self._queue: asyncio.Queue[tuple[dict[str, Any], tuple[str, ...]]] = asyncio.Queue(
            self._MAX_QUEUE
        )
        self._seen: OrderedDict[tuple[str, ...], _Recorded] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-recorder")

    async def stop(self, drain_timeout: float = 2.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def record(
        self,
        involved: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
    ) -> None:
        key = (
            str(involved.get("uid", "")),
            str(involved.get("fieldPath", "")),
            event_type,
            reason,
            message,
        )
        now = format_time()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{involved.get('name')}.{os.urandom(8).hex()}",
                "namespace": involved.get("namespace") or "default",
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": self.component, "host": self.node_name},
            "reportingComponent": self.component,
            "reportingInstance": self.node_name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._queue.put_nowait((event, key))
        except asyncio.QueueFull:
            log.warning("event queue full; dropping %s %s", reason, message)

    async def _run(self) -> None:
        while True:
            event, key = await self._queue.get()
            try:
                await self._write(event, key)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.debug("could not record event %s: %s", event.get("reason"), err)
            finally:
                self._queue.task_done()

    async def _write(self, event: dict[str, Any], key: tuple[str, ...]) -> None:
        seen = self._seen.get(key)
        if seen is not None:
            seen.count += 1
            try:
                await self.client.patch_raw(
                    EVENT,
                    seen.name,
                    {"count": seen.count, "lastTimestamp": event["lastTimestamp"]},
                    seen.namespace,
                )
                self._seen.move_to_end(key)
                return
            except ApiException as err:
                if not err.not_found:
                    raise
                del self._seen[key]
        created = await self.client.create_raw(event, event["metadata"]["namespace"])
        meta = created.get("metadata") or {}
        self._seen[key] = _Recorded(
            str(meta.get("name")), str(meta.get("namespace")), 1, event["firstTimestamp"]
        )
        while len(self._seen) > self._MAX_REMEMBERED:
            self._seen.popitem(last=False)


def pod_reference(pod: Pod, field_path: str | None = None) -> dict[str, Any]:
    reference: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod.metadata.name,
        "namespace": pod.metadata.namespace,
        "uid": pod.metadata.uid,
    }
    if field_path:
        reference["fieldPath"] = field_path
    return reference


class ClientNodeApi:
    """``NodeApi`` over the kumo API client."""

    def __init__(self, client: AsyncClient, recorder: EventRecorder) -> None:
        self.client = client
        self.recorder = recorder

    async def get_config_map(self, namespace: str, name: str) -> ConfigMap | None:
        try:
            return await self.client.get(ConfigMap, name, namespace)
        except ApiException as err:
            if err.not_found:
                return None
            raise

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        try:
            return await self.client.get(Secret, name, namespace)
        except ApiException as err:
            if err.not_found:
                return None
            raise

    async def list_services(self, namespace: str) -> list[Service]:
        return (await self.client.list(Service, namespace)).items

    async def get_service(self, namespace: str, name: str) -> Service | None:
        try:
            return await self.client.get(Service, name, namespace)
        except ApiException as err:
            if err.not_found:
                return None
            raise

    async def request_token(
        self,
        pod: Pod,
        audiences: list[str] | None,
        expiration_seconds: int,
    ) -> tuple[str, datetime.datetime]:
        namespace = pod.metadata.namespace or "default"
        account = pod.spec.service_account_name or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": pod.metadata.name,
                "uid": pod.metadata.uid,
            },
        }
        if audiences:
            spec["audiences"] = audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        response = await self.client.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", body=body
        )
        status = response.json().get("status") or {}
        token = str(status.get("token") or "")
        expires = str(status.get("expirationTimestamp") or "")
        if not token or not expires:
            raise ApiException(
                500, {"reason": "InternalError", "message": "the TokenRequest returned no token"}
            )
        when = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00"))
        return token, when

    async def write_pod_status(self, pod: Pod, status: dict[str, Any]) -> Pod:
        body = pod.model_dump(mode="json", by_alias=True, exclude_none=True)
        body["status"] = status
        for _ in range(5):
            try:
                stored = await self.client.replace_raw(body, pod.metadata.namespace, "status")
                return Pod.model_validate(stored)
            except ApiException as err:
                if err.not_found:
                    raise PodGone(pod.metadata.name or "") from err
                if not err.conflict:
                    raise
            latest = await self._current(pod)
            body["metadata"]["resourceVersion"] = latest.metadata.resource_version
        raise ApiException(409, {"reason": "Conflict", "message": "pod status kept changing"})

    async def _current(self, pod: Pod) -> Pod:
        try:
            raw = await self.client.get_raw(POD, pod.metadata.name or "", pod.metadata.namespace)
        except ApiException as err:
            if err.not_found:
                raise PodGone(pod.metadata.name or "") from err
            raise
        current = Pod.model_validate(raw)
        if current.metadata.uid != pod.metadata.uid:
            raise PodGone(pod.metadata.name or "")
        return current

    async def _delete_current(self, pod: Pod) -> None:
        """Delete the pod at its current resourceVersion (PodGone when it is gone or was
        replaced by another of the same name)."""
        current = await self._current(pod)
        await self.client.delete_raw(
            POD,
            pod.metadata.name or "",
            pod.metadata.namespace,
            grace_period=0,
            resource_version=current.metadata.resource_version,
        )

    async def delete_pod(self, pod: Pod) -> None:
        try:
            await self._delete_current(pod)
        except PodGone:
            return
        except ApiException as err:
            if err.not_found:
                return
            if err.conflict:
                # Changed in between (a status write, a label): try once more.
                with contextlib.suppress(PodGone):
                    await self._delete_current(pod)
                return
            raise

    def record_event(
        self,
        pod: Pod,
        event_type: str,
        reason: str,
        message: str,
        field_path: str | None = None,
    ) -> None:
        self.recorder.record(pod_reference(pod, field_path), event_type, reason, message)
