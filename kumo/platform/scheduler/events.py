"""Events the scheduler records (core/v1 Event), deduplicated like Kubernetes' event
correlator: the same (object, type, reason, message) again bumps ``count`` and
``lastTimestamp`` on the existing Event instead of creating a new one.

What callers may rely on: ``record`` never raises for API trouble (it logs); events of one
object are written in order; memory is bounded (the oldest entries are forgotten first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from kumo.model.meta import now_rfc3339
from kumo.platform.scheduler.framework import Writer
from kumo.platform.scheduler.podinfo import PodInfo

log = logging.getLogger(__name__)

FAILED_SCHEDULING = "FailedScheduling"
WARNING = "Warning"
MERGE_PATCH = "application/merge-patch+json"


@dataclass
class _Entry:
    name: str
    namespace: str
    count: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EventRecorder:
    def __init__(
        self,
        writer: Writer,
        component: str = "default-scheduler",
        *,
        instance: str | None = None,
        max_entries: int = 4096,
    ) -> None:
        self.writer = writer
        self.component = component
        self.instance = instance or socket.gethostname()
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str, str], _Entry] = OrderedDict()
        self.created = 0
        self.updated = 0

    def _entry(self, pod: PodInfo, type_: str, reason: str, message: str) -> _Entry:
        key = (pod.uid or pod.key, type_, reason, message)
        entry = self._entries.get(key)
        if entry is None:
            name = f"{pod.name}.{time.time_ns():x}"
            entry = _Entry(name, pod.namespace)
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    async def record(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        entry = self._entry(pod, type_, reason, message)
        async with entry.lock:
            now = now_rfc3339()
            try:
                if entry.count > 0 and await self._bump(entry, now):
                    return
                await self._create(entry, pod, type_, reason, message, now=now)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.warning("recording event for %s: %s", pod.key, exc)

    async def _bump(self, entry: _Entry, now: str) -> bool:
        path = f"/api/v1/namespaces/{entry.namespace}/events/{entry.name}"
        patch = {"count": entry.count + 1, "lastTimestamp": now}
        code, body = await self.writer.request("PATCH", path, patch, MERGE_PATCH)
        if code == 200:
            entry.count += 1
            self.updated += 1
            return True
        if code != 404:
            log.warning("updating event %s: HTTP %s: %s", entry.name, code, body[:200])
            return True
        entry.name = f"{entry.name.rsplit('.', 1)[0]}.{time.time_ns():x}"
        return False  # it expired or was deleted: create it afresh

    async def _create(
        self, entry: _Entry, pod: PodInfo, type_: str, reason: str, message: str, *, now: str
    ) -> None:
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": entry.name, "namespace": entry.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
                "resourceVersion": str((pod.obj.get("metadata") or {}).get("resourceVersion", "")),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        code, body = await self.writer.request(
            "POST", f"/api/v1/namespaces/{entry.namespace}/events", event
        )
        if code == 201:
            entry.count = 1
            self.created += 1
        else:
            detail = body[:300]
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                detail = orjson.loads(body).get("message", detail)
            log.warning("creating event for %s: HTTP %s: %s", pod.key, code, detail)
