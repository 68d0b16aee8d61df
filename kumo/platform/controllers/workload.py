"""What the workload controllers (replicaset, deployment, job, endpoints, nodelifecycle) share:

- ``Expectations``: read-your-writes for informer caches. After a reconcile writes objects,
  the next reconcile of the same key first waits until the informers have seen those writes'
  resourceVersions (kumo's resourceVersion is one global revision, so ``wait_synced_to``
  answers this exactly). A controller therefore never creates pods twice because its cache
  lags its own creates, nor deletes twice because it lags its own deletes: Kubernetes'
  "expectations" problem, solved by revision instead of by counting.
- ``EventRecorder``: posts core/v1 Events in the background; repeats bump ``count``.
- ``claim``: Kubernetes' ControllerRefManager. Adopt orphans that match the owner's selector,
  release owned objects that stopped matching, ignore objects another controller owns.
- ``WorkloadController``: a ``Controller`` with the three above wired in.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from kumo.client import ApiException, AsyncClient
from kumo.model.registry import ResourceInfo
from kumo.model.selectors import Selector
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    controller_ref,
    format_time,
    label_selector,
    labels_match,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    uid_of,
    utcnow,
)
from kumo.platform.controllers.informer import (
    InformerFactory,
    SharedInformer,
    resource_version,
)
from kumo.platform.controllers.runner import Controller, info_for
from kumo.platform.controllers.workqueue import ExponentialBackoff

log = logging.getLogger(__name__)

# ---- read your own writes ----------------------------------------------------------------


class CacheLagging(Exception):
    """The informer caches have not yet seen this key's last writes; retry shortly."""


class Expectations:
    """Per key: the highest revision written through each informer's kind."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._pending: dict[str, dict[int, tuple[SharedInformer, int]]] = {}

    def expect(self, key: str, informer: SharedInformer, written: Obj | int) -> None:
        """``written`` is the object the API answered a write with (or its revision)."""
        revision = written if isinstance(written, int) else resource_version(written)
        if revision <= 0:
            return
        slots = self._pending.setdefault(key, {})
        current = slots.get(id(informer))
        if current is None or current[1] < revision:
            slots[id(informer)] = (informer, revision)

    def satisfied(self, key: str) -> bool:
        slots = self._pending.get(key)
        if not slots:
            return True
        for slot, (informer, revision) in list(slots.items()):
            if informer.synced_to(revision):
                del slots[slot]
        if not slots:
            self._pending.pop(key, None)
            return True
        return False

    async def wait(self, key: str) -> None:
        """Until the caches hold the key's writes; ``CacheLagging`` after ``timeout``."""
        if self.satisfied(key):
            return
        slots = list(self._pending.get(key, {}).values())
        try:
            async with asyncio.timeout(self.timeout):
                for informer, revision in slots:
                    await informer.wait_synced_to(revision)
        except TimeoutError as exc:
            raise CacheLagging(f"{key}: caches have not caught up with its writes") from exc
        self.satisfied(key)

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


# ---- events --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Recorded:
    name: str
    namespace: str
    count: int
    first_seen: float


class EventRecorder:
    """Posts Events about objects without making the caller wait. Failing to record is
    logged, never raised. The same event (object uid, type, reason, message) seen again
    within ``dedupe_window`` seconds bumps the stored event's ``count`` and
    ``lastTimestamp`` instead of creating another."""

    def __init__(
        self,
        client: AsyncClient,
        component: str,
        *,
        dedupe_window: float = 600.0,
        max_pending: int = 500,
    ) -> None:
        self.client = client
        self.component = component
        self.dedupe_window = dedupe_window
        self.max_pending = max_pending
        self._recent: dict[tuple[str, ...], _Recorded] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        if len(self._tasks) >= self.max_pending:
            log.warning("event dropped (too many pending): %s %s", reason, message)
            return
        task = asyncio.get_running_loop().create_task(self._record(obj, kind, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def normal(self, obj: Obj, reason: str, message: str) -> None:
        self.event(obj, "Normal", reason, message)

    def warning(self, obj: Obj, reason: str, message: str) -> None:
        self.event(obj, "Warning", reason, message)

    async def flush(self) -> None:
        """Wait for events already handed in (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        """Drop events not yet posted (the controller is stopping)."""
        for task in list(self._tasks):
            task.cancel()

    async def _record(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        try:
            async with self._lock:
                await self._post(obj, kind, reason, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("could not record event %s for %s: %s", reason, name_of(obj), exc)

    async def _post(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        now = time.monotonic()
        stamp = format_time(utcnow())
        namespace = namespace_of(obj) or "default"
        key = (namespace, uid_of(obj) or name_of(obj), kind, reason, message)
        seen = self._recent.get(key)
        if seen is not None and now - seen.first_seen < self.dedupe_window:
            seen.count += 1
            try:
                await self.client.request(
                    "PATCH",
                    f"/api/v1/namespaces/{seen.namespace}/events/{seen.name}",
                    body={"count": seen.count, "lastTimestamp": stamp},
                    content_type="application/merge-patch+json",
                )
                return
            except ApiException as exc:
                if not exc.not_found:
                    raise
        if len(self._recent) > 4096:
            cutoff = now - self.dedupe_window
            self._recent = {k: v for k, v in self._recent.items() if v.first_seen >= cutoff}
        involved: Obj = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": name_of(obj),
            "uid": uid_of(obj),
        }
        if namespace_of(obj):
            involved["namespace"] = namespace_of(obj)
        if meta(obj).get("resourceVersion"):
            involved["resourceVersion"] = meta(obj)["resourceVersion"]
        name = f"{name_of(obj)}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v},
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await self.client.create_raw(body, namespace)
        self._recent[key] = _Recorded(name, namespace, 1, now)


# ---- adoption and release ----------------------------------------------------------------


def _merged_refs(obj: Obj, add: Obj | None, remove_uid: str | None) -> list[Obj]:
    refs = [dict(r) for r in meta(obj).get("ownerReferences") or [] if isinstance(r, dict)]
    if remove_uid is not None:
        refs = [r for r in refs if str(r.get("uid")) != remove_uid]
    if add is not None:
        refs = [r for r in refs if str(r.get("uid")) != str(add.get("uid"))] + [add]
    return refs


async def set_owner_refs(
    client: AsyncClient, obj: Obj, refs: list[Obj], info: ResourceInfo | None = None
) -> Obj:
    """Replace ``obj``'s ownerReferences, on the condition that it has not changed since it
    was read (its resourceVersion); 409 otherwise."""
    patch = {
        "metadata": {
            "ownerReferences": refs or None,
            "resourceVersion": meta(obj).get("resourceVersion"),
        }
    }
    return await client.patch_raw(
        info or info_for(obj), name_of(obj), patch, namespace_of(obj) or None
    )


async def claim(
    client: AsyncClient,
    owner: Obj,
    selector: Selector,
    candidates: Sequence[Obj],
    *,
    can_adopt: Callable[[], Awaitable[None]],
    on_write: Callable[[Obj], None],
) -> list[Obj]:
    """Kubernetes' ClaimObject over ``candidates`` (same namespace as ``owner``): the
    objects ``owner`` controls after adopting matching orphans and releasing owned objects
    that no longer match. ``can_adopt`` raises if the owner may not adopt (it is gone, or
    is being deleted: checked against the API, not the cache, once, before the first
    adoption). ``on_write`` sees each patched object."""
    owner_uid = uid_of(owner)
    owner_deleting = being_deleted(owner)
    ref = owner_reference(owner, str(owner.get("apiVersion")), str(owner.get("kind")))
    checked = False
    claimed: list[Obj] = []
    for obj in candidates:
        current = controller_ref(obj)
        matches = labels_match(selector, obj)
        if current is not None:
            if str(current.get("uid")) != owner_uid:
                continue
            if matches:
                claimed.append(obj)
                continue
            if owner_deleting:
                continue
            try:
                released = await set_owner_refs(client, obj, _merged_refs(obj, None, owner_uid))
            except ApiException as exc:
                if exc.not_found:
                    continue
                raise
            on_write(released)
            log.info("%s released %s/%s", name_of(owner), namespace_of(obj), name_of(obj))
            continue
        if owner_deleting or not matches or being_deleted(obj):
            continue
        if namespace_of(owner) and namespace_of(owner) != namespace_of(obj):
            continue
        if not checked:
            await can_adopt()
            checked = True
        try:
            adopted = await set_owner_refs(client, obj, _merged_refs(obj, ref, None))
        except ApiException as exc:
            if exc.not_found:
                continue
            raise
        on_write(adopted)
        log.info("%s adopted %s/%s", name_of(owner), namespace_of(obj), name_of(obj))
        claimed.append(adopted)
    return claimed


async def recheck_owner(client: AsyncClient, owner: Obj) -> None:
    """Raise unless ``owner`` still exists with the same uid and is not being deleted
    (Kubernetes' RecheckDeletionTimestamp, asked of the API rather than a cache)."""
    info = info_for(owner)
    fresh = await client.get_raw(info, name_of(owner), namespace_of(owner) or None)
    if uid_of(fresh) != uid_of(owner):
        raise RuntimeError(
            f"original {info.kind} {name_of(owner)} is gone: got uid {uid_of(fresh)}, "
            f"wanted {uid_of(owner)}"
        )
    if being_deleted(fresh):
        raise RuntimeError(f"{info.kind} {name_of(owner)} has just been deleted")


# ---- indexes and selectors ----------------------------------------------------------------

CONTROLLER_UID_INDEX = "controller-uid"


def by_controller_uid(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    return [str(ref["uid"])] if ref is not None and ref.get("uid") else []


@functools.lru_cache(maxsize=4096)
def _selector_from_json(text: str) -> Selector:
    return label_selector(json.loads(text))


def selector_of(obj: Obj) -> Selector:
    """The object's ``spec.selector`` as a matcher (parsed once per distinct selector)."""
    raw = (obj.get("spec") or {}).get("selector")
    return _selector_from_json(json.dumps(raw, sort_keys=True))


# ---- the base class ------------------------------------------------------------------------


class WorkloadController(Controller):
    """A controller with an ``EventRecorder`` (``self.recorder``) and ``Expectations``
    (``self.expectations``). Subclasses call ``await self.expectations.wait(key)`` first
    in ``reconcile`` and ``self.wrote(key, informer, obj)`` after each write."""

    def __init__(
        self,
        client: AsyncClient,
        informers: InformerFactory,
        *,
        workers: int | None = None,
        backoff: ExponentialBackoff[str] | None = None,
    ) -> None:
        self.recorder = EventRecorder(client, self.name)
        self.expectations = Expectations()
        super().__init__(client, informers, workers=workers, backoff=backoff)

    def wrote(self, key: str, informer: SharedInformer, obj: Obj | int) -> None:
        self.expectations.expect(key, informer, obj)

    def shut_down(self) -> None:
        super().shut_down()
        self.recorder.cancel()


async def ignore_not_found(call: Awaitable[Obj]) -> Obj | None:
    try:
        return await call
    except ApiException as exc:
        if exc.not_found:
            return None
        raise
