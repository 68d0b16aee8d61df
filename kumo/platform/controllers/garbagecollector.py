"""Garbage collection by ownerReferences, with Kubernetes' semantics, for every kind served.

- Background: a dependent none of whose owners exists any more is deleted. An owner is
  identified by its uid: a new object with the owner's name is not the owner.
- Foreground: an owner with ``deletionTimestamp`` and the ``foregroundDeletion`` finalizer has
  its dependents deleted; the finalizer is removed (and the API server then deletes the owner)
  once no dependent with ``blockOwnerDeletion: true`` is left.
- Orphan: an owner with ``deletionTimestamp`` and the ``orphan`` finalizer has its reference
  removed from every dependent, then the finalizer removed.

A namespaced dependent's owners live in its namespace, or are cluster-scoped; a
cluster-scoped dependent naming a namespaced owner kind, or a kind kumo does not serve, has
an owner that cannot be resolved, which counts as existing (it is never collected for it).

The decisions are pure functions (``plan_dependent``, ``plan_owner``, ...) over the object
and the state of its owners; the ``GarbageCollector`` controller feeds them from informer
caches and confirms with the API server before it deletes anything.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kumo.client import ApiException
from kumo.model.registry import RESOURCES, ResourceInfo, by_kind
from kumo.platform.controllers.informer import (
    OWNER_UID_INDEX,
    EventHandler,
    Obj,
    SharedInformer,
    by_owner_uid,
    resource_version,
)
from kumo.platform.controllers.runner import Controller, Result

log = logging.getLogger(__name__)

ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"

# ---- pure decision logic ------------------------------------------------------------------


class OwnerState(enum.Enum):
    PRESENT = "present"  # an object with the ref's uid exists and is not deleting dependents
    WAITING = "waiting"  # it exists, is being deleted in the foreground: dependents must go
    ABSENT = "absent"  # nothing there, or another object (another uid) under that name
    UNRESOLVABLE = "unresolvable"  # the ref cannot name a valid owner; treated as present


@dataclass(frozen=True, slots=True)
class OwnerCheck:
    uid: str
    state: OwnerState


@dataclass(frozen=True, slots=True)
class Keep:
    """Leave the object alone."""


@dataclass(frozen=True, slots=True)
class RemoveOwnerRefs:
    """The object still has an owner; drop the references to owners that are gone or are
    being deleted in the foreground (so those are not blocked by it)."""

    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeleteDependent:
    """Delete the object with this propagation policy; with ``unblock``, first set
    ``blockOwnerDeletion: false`` on its references (breaks foreground-deletion cycles)."""

    policy: str
    unblock: bool = False


DependentPlan = Keep | RemoveOwnerRefs | DeleteDependent


def meta(obj: Obj) -> dict[str, Any]:
    found: dict[str, Any] = obj.get("metadata") or {}
    return found


def owner_refs(obj: Obj) -> list[dict[str, Any]]:
    return [r for r in meta(obj).get("ownerReferences") or [] if isinstance(r, dict)]


def finalizers(obj: Obj) -> list[str]:
    return [str(f) for f in meta(obj).get("finalizers") or []]


def being_deleted(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def deleting_dependents(obj: Obj) -> bool:
    """Being deleted in the foreground: waiting for its dependents to go."""
    return being_deleted(obj) and FOREGROUND_FINALIZER in finalizers(obj)


def owner_kind(ref: dict[str, Any]) -> ResourceInfo | None:
    """The served kind an owner reference names; another version of the same group counts."""
    api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
    found = by_kind(api_version, kind)
    if found is not None:
        return found
    group = api_version.rpartition("/")[0]
    for info in RESOURCES:
        if info.group == group and info.kind == kind:
            return info
    return None


def owner_location(
    ref: dict[str, Any], dependent_namespace: str
) -> tuple[ResourceInfo, str] | None:
    """(kind, namespace) where the owner must be; None when the reference cannot be resolved.
    ``dependent_namespace`` is "" for a cluster-scoped dependent."""
    info = owner_kind(ref)
    if info is None or not ref.get("name") or not ref.get("uid"):
        return None
    if not info.namespaced:
        return info, ""
    if not dependent_namespace:
        return None  # a cluster-scoped object cannot be owned by a namespaced one
    return info, dependent_namespace


def owner_state(ref: dict[str, Any], found: Obj | None) -> OwnerState:
    """What the object found where ``ref`` points (None: nothing) means for the reference."""
    if found is None or meta(found).get("uid") != ref.get("uid"):
        return OwnerState.ABSENT
    if deleting_dependents(found):
        return OwnerState.WAITING
    return OwnerState.PRESENT


def plan_dependent(
    obj: Obj,
    owners: Sequence[OwnerCheck],
    *,
    has_dependents: bool,
    dependents_deleting_dependents: bool = False,
) -> DependentPlan:
    """What the collector does with ``obj`` given the state of each of its owners."""
    if not owners or being_deleted(obj):
        return Keep()
    solid = [o for o in owners if o.state in (OwnerState.PRESENT, OwnerState.UNRESOLVABLE)]
    dangling = [o.uid for o in owners if o.state is OwnerState.ABSENT]
    waiting = [o.uid for o in owners if o.state is OwnerState.WAITING]
    if solid:
        if not dangling and not waiting:
            return Keep()
        return RemoveOwnerRefs(tuple(dangling + waiting))
    if waiting and has_dependents:
        # Its own dependents must go first, so that the waiting owner is blocked by them too.
        return DeleteDependent("Foreground", unblock=dependents_deleting_dependents)
    held = finalizers(obj)
    if ORPHAN_FINALIZER in held:
        return DeleteDependent("Orphan")
    if FOREGROUND_FINALIZER in held:
        return DeleteDependent("Foreground")
    return DeleteDependent("Background")


class OwnerPlan(enum.Enum):
    NONE = "none"
    ORPHAN = "orphan"  # strip our ref from dependents, then drop the orphan finalizer
    FOREGROUND = "foreground"  # delete dependents; drop the finalizer when none blocks


def plan_owner(obj: Obj) -> OwnerPlan:
    if not being_deleted(obj):
        return OwnerPlan.NONE
    held = finalizers(obj)
    if ORPHAN_FINALIZER in held:
        return OwnerPlan.ORPHAN
    if FOREGROUND_FINALIZER in held:
        return OwnerPlan.FOREGROUND
    return OwnerPlan.NONE


def ref_to(dependent: Obj, owner_uid: str) -> dict[str, Any] | None:
    for ref in owner_refs(dependent):
        if ref.get("uid") == owner_uid:
            return ref
    return None


def blocks_owner(dependent: Obj, owner_uid: str) -> bool:
    ref = ref_to(dependent, owner_uid)
    return ref is not None and ref.get("blockOwnerDeletion") is True


def is_dependent_of(dependent: Obj, owner: Obj, owner_namespaced: bool) -> bool:
    """``dependent`` names ``owner`` (by uid) in a way that resolves to it."""
    if ref_to(dependent, str(meta(owner).get("uid"))) is None:
        return False
    if owner_namespaced:
        return bool(meta(dependent).get("namespace")) and meta(dependent).get("namespace") == meta(
            owner
        ).get("namespace")
    return True


def without_refs(refs: Iterable[dict[str, Any]], uids: Iterable[str]) -> list[dict[str, Any]]:
    drop = set(uids)
    return [r for r in refs if r.get("uid") not in drop]


def unblocked(refs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ref in refs:
        copy = dict(ref)
        if copy.get("blockOwnerDeletion"):
            copy["blockOwnerDeletion"] = False
        out.append(copy)
    return out


# ---- the controller -----------------------------------------------------------------------

_INFOS = {info.group_resource: info for info in RESOURCES}


def item_key(info: ResourceInfo, namespace: str, name: str) -> str:
    return f"{info.group_resource}|{namespace}|{name}"


def parse_item_key(key: str) -> tuple[ResourceInfo, str, str]:
    resource, namespace, name = key.split("|", 2)
    return _INFOS[resource], namespace, name


class GarbageCollector(Controller):
    """Watches every kind; queue keys are ``resource.group|namespace|name``."""

    name = "garbagecollector"
    workers = 4
    # An owner that still waits for dependents is looked at again this often even without
    # events (a safety net; dependents' deletions normally wake it).
    foreground_recheck_seconds = 30.0
    max_patch_attempts = 5

    def setup(self) -> None:
        self.watched: dict[str, SharedInformer] = {}
        for info in RESOURCES:
            informer = self.informers.informer(info)
            informer.add_index(OWNER_UID_INDEX, by_owner_uid)
            informer.add_event_handler(self._handler(info))
            self.watched[info.group_resource] = informer

    # ---- events ---------------------------------------------------------------------------

    def _key_of(self, info: ResourceInfo, obj: Obj) -> str:
        return item_key(info, str(meta(obj).get("namespace") or ""), str(meta(obj).get("name")))

    def _handler(self, info: ResourceInfo) -> EventHandler:
        def added(obj: Obj) -> None:
            if owner_refs(obj) or plan_owner(obj) is not OwnerPlan.NONE:
                self.queue.add(self._key_of(info, obj))

        def updated(old: Obj, new: Obj) -> None:
            refs_changed = _ref_identity(old) != _ref_identity(new)
            if plan_owner(new) is not OwnerPlan.NONE or (refs_changed and owner_refs(new)):
                self.queue.add(self._key_of(info, new))
            if meta(old).get("uid") != meta(new).get("uid"):
                self._enqueue_dependents(str(meta(old).get("uid")))

        def deleted(obj: Obj) -> None:
            self._enqueue_dependents(str(meta(obj).get("uid")))
            # An owner being deleted in the foreground may have been waiting for this one.
            namespace = str(meta(obj).get("namespace") or "")
            for ref in owner_refs(obj):
                location = owner_location(ref, namespace)
                if location is None:
                    continue
                owner_info, owner_namespace = location
                owner = self._cached(owner_info, owner_namespace, str(ref["name"]))
                if owner is not None and being_deleted(owner):
                    self.queue.add(item_key(owner_info, owner_namespace, str(ref["name"])))

        return EventHandler(on_add=added, on_update=updated, on_delete=deleted)

    def _enqueue_dependents(self, uid: str) -> None:
        for info in RESOURCES:
            for dependent in self.watched[info.group_resource].by_index(OWNER_UID_INDEX, uid):
                self.queue.add(self._key_of(info, dependent))

    def _cached(self, info: ResourceInfo, namespace: str, name: str) -> Obj | None:
        return self.watched[info.group_resource].get(namespace or None, name)

    # ---- reconcile --------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        info, namespace, name = parse_item_key(key)
        obj = self._cached(info, namespace, name)
        if obj is None:
            return None
        plan = plan_owner(obj)
        if plan is OwnerPlan.ORPHAN:
            await self._orphan_dependents(info, obj)
            return None
        if plan is OwnerPlan.FOREGROUND:
            return await self._delete_dependents(info, obj)
        if being_deleted(obj) or not owner_refs(obj):
            return None
        await self._collect(info, obj)
        return None

    async def _collect(self, info: ResourceInfo, obj: Obj) -> None:
        """Delete ``obj`` (or trim its references) if its owners say so; cache first, and the
        API server confirms before anything is changed."""
        if isinstance(self._plan_for(info, obj, self._owner_checks_cached(obj)), Keep):
            return
        latest = await self._get_live(info, obj)
        if latest is None:
            return
        plan = self._plan_for(info, latest, await self._owner_checks_live(latest))
        if isinstance(plan, Keep):
            return
        if isinstance(plan, RemoveOwnerRefs):
            log.info("%s: dropping owner references %s", self._describe(info, latest), plan.uids)
            await self._patch_owner_refs(info, latest, lambda refs: without_refs(refs, plan.uids))
            return
        if plan.unblock:
            latest = await self._patch_owner_refs(info, latest, unblocked) or latest
        log.info(
            "%s: no owner keeps it; deleting (%s propagation)",
            self._describe(info, latest),
            plan.policy,
        )
        await self._delete(info, latest, plan.policy)

    def _plan_for(self, info: ResourceInfo, obj: Obj, checks: list[OwnerCheck]) -> DependentPlan:
        uid = str(meta(obj).get("uid"))
        dependents = self._dependents_cached(info, obj)
        return plan_dependent(
            obj,
            checks,
            has_dependents=bool(dependents),
            dependents_deleting_dependents=any(
                deleting_dependents(d) for _, d in dependents if ref_to(d, uid) is not None
            ),
        )

    def _owner_checks_cached(self, obj: Obj) -> list[OwnerCheck]:
        namespace = str(meta(obj).get("namespace") or "")
        checks = []
        for ref in owner_refs(obj):
            location = owner_location(ref, namespace)
            if location is None:
                checks.append(OwnerCheck(str(ref.get("uid")), OwnerState.UNRESOLVABLE))
                continue
            owner_info, owner_namespace = location
            found = self._cached(owner_info, owner_namespace, str(ref["name"]))
            checks.append(OwnerCheck(str(ref["uid"]), owner_state(ref, found)))
        return checks

    async def _owner_checks_live(self, obj: Obj) -> list[OwnerCheck]:
        """Like the cached checks, but an owner the cache does not have is looked up in the
        API server (the cache may not have seen a brand-new owner yet), and so is one it has
        as deleting its dependents in the foreground (a later DELETE may have switched the
        owner to another propagation policy)."""
        namespace = str(meta(obj).get("namespace") or "")
        checks = []
        for check, ref in zip(self._owner_checks_cached(obj), owner_refs(obj), strict=True):
            if check.state not in (OwnerState.ABSENT, OwnerState.WAITING):
                checks.append(check)
                continue
            location = owner_location(ref, namespace)
            assert location is not None
            owner_info, owner_namespace = location
            try:
                found: Obj | None = await self.client.get_raw(
                    owner_info, str(ref["name"]), owner_namespace or None
                )
            except ApiException as exc:
                if not exc.not_found:
                    raise
                found = None
            checks.append(OwnerCheck(check.uid, owner_state(ref, found)))
        return checks

    def _dependents_cached(self, info: ResourceInfo, owner: Obj) -> list[tuple[ResourceInfo, Obj]]:
        uid = str(meta(owner).get("uid"))
        found = []
        for dep_info in RESOURCES:
            for dependent in self.watched[dep_info.group_resource].by_index(OWNER_UID_INDEX, uid):
                if is_dependent_of(dependent, owner, info.namespaced):
                    found.append((dep_info, dependent))
        return found

    async def _dependents_fresh(
        self, info: ResourceInfo, owner: Obj
    ) -> list[tuple[ResourceInfo, Obj]]:
        """Every dependent that existed when ``owner`` was last written. Caches that have
        seen that revision answer from memory; the others (usually idle kinds whose watch
        has not had a bookmark since) are listed from the API server."""
        revision = resource_version(owner)
        found: list[tuple[ResourceInfo, Obj]] = []
        for dep_info in RESOURCES:
            if info.namespaced and not dep_info.namespaced:
                continue  # cluster-scoped objects cannot depend on namespaced ones
            informer = self.watched[dep_info.group_resource]
            if informer.synced_to(revision):
                candidates = informer.by_index(OWNER_UID_INDEX, str(meta(owner).get("uid")))
            else:
                namespace = meta(owner).get("namespace") if info.namespaced else None
                items, _ = await self.client.list_all_raw(
                    dep_info, namespace, all_namespaces=namespace is None
                )
                candidates = items
            found.extend(
                (dep_info, d) for d in candidates if is_dependent_of(d, owner, info.namespaced)
            )
        return found

    async def _orphan_dependents(self, info: ResourceInfo, owner: Obj) -> None:
        # A later DELETE may have switched the owner to another propagation policy (the
        # orphan finalizer replaced): orphan only what the API server says is orphaning now.
        latest = await self._get_live(info, owner)
        if latest is None or plan_owner(latest) is not OwnerPlan.ORPHAN:
            return  # the write that changed it is an event that brings the owner back here
        owner = latest
        uid = str(meta(owner).get("uid"))
        dependents = await self._dependents_fresh(info, owner)
        for dep_info, dependent in dependents:
            await self._patch_owner_refs(
                dep_info, dependent, lambda refs: without_refs(refs, [uid])
            )
        log.info("%s: orphaned %d dependents", self._describe(info, owner), len(dependents))
        await self._remove_finalizer(info, owner, ORPHAN_FINALIZER)

    async def _delete_dependents(self, info: ResourceInfo, owner: Obj) -> Result | None:
        uid = str(meta(owner).get("uid"))
        dependents = await self._dependents_fresh(info, owner)
        blocking = [d for _, d in dependents if blocks_owner(d, uid)]
        if not blocking:
            await self._remove_finalizer(info, owner, FOREGROUND_FINALIZER)
            return None
        for dep_info, dependent in dependents:
            if not being_deleted(dependent) or deleting_dependents(dependent):
                self.queue.add(self._key_of(dep_info, dependent))
        log.info(
            "%s: waiting for %d blocking dependents", self._describe(info, owner), len(blocking)
        )
        return Result(requeue_after=self.foreground_recheck_seconds)

    # ---- writes -----------------------------------------------------------------------------

    @staticmethod
    def _describe(info: ResourceInfo, obj: Obj) -> str:
        namespace = meta(obj).get("namespace")
        where = f"{namespace}/" if namespace else ""
        return f"{info.kind_group} {where}{meta(obj).get('name')}"

    async def _get_live(self, info: ResourceInfo, obj: Obj) -> Obj | None:
        """The object as the API server has it now, or None if it is gone or replaced."""
        try:
            latest = await self.client.get_raw(
                info, str(meta(obj).get("name")), meta(obj).get("namespace") or None
            )
        except ApiException as exc:
            if exc.not_found:
                return None
            raise
        if meta(latest).get("uid") != meta(obj).get("uid"):
            return None
        return latest

    async def _patch_meta(
        self, info: ResourceInfo, obj: Obj, field: str, compute: Any
    ) -> Obj | None:
        """Set ``metadata.<field>`` to ``compute(current value)`` on the latest version of
        ``obj`` (compare-and-swap on resourceVersion, retried on conflict). None if the
        object is gone."""
        current: Obj | None = obj
        for _ in range(self.max_patch_attempts):
            if current is None:
                return None
            before = meta(current).get(field) or []
            after = compute(before)
            if after == before:
                return current
            patch = {
                "metadata": {
                    field: after or None,
                    "resourceVersion": meta(current).get("resourceVersion"),
                }
            }
            try:
                return await self.client.patch_raw(
                    info,
                    str(meta(current).get("name")),
                    patch,
                    meta(current).get("namespace") or None,
                )
            except ApiException as exc:
                if exc.not_found:
                    return None
                if not exc.conflict:
                    raise
            current = await self._get_live(info, current)
        raise RuntimeError(f"{self._describe(info, obj)}: too many conflicting writers")

    async def _patch_owner_refs(self, info: ResourceInfo, obj: Obj, compute: Any) -> Obj | None:
        return await self._patch_meta(info, obj, "ownerReferences", compute)

    async def _remove_finalizer(self, info: ResourceInfo, obj: Obj, finalizer: str) -> None:
        await self._patch_meta(
            info, obj, "finalizers", lambda held: [f for f in held if f != finalizer]
        )

    async def _delete(self, info: ResourceInfo, obj: Obj, policy: str) -> None:
        """Delete exactly this object: its uid must match, and its resourceVersion too unless
        only unrelated fields changed since (then the uid precondition alone is used)."""
        preconditions = {
            "uid": meta(obj).get("uid"),
            "resourceVersion": meta(obj).get("resourceVersion"),
        }
        for _ in range(2):
            try:
                await self.client.request(
                    "DELETE",
                    info.path(meta(obj).get("namespace") or None, str(meta(obj).get("name"))),
                    body={
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "propagationPolicy": policy,
                        "preconditions": preconditions,
                    },
                )
                return
            except ApiException as exc:
                if exc.not_found:
                    return
                if exc.code != 409:
                    raise
            latest = await self._get_live(info, obj)
            if latest is None:
                return
            if _ref_identity(latest) != _ref_identity(obj):
                raise RuntimeError(
                    f"{self._describe(info, obj)}: owner references changed; deciding again"
                )
            preconditions = {"uid": meta(obj).get("uid")}
        raise RuntimeError(f"{self._describe(info, obj)}: delete kept conflicting")


def _ref_identity(obj: Obj) -> list[tuple[str, bool]]:
    return [(str(r.get("uid")), bool(r.get("blockOwnerDeletion"))) for r in owner_refs(obj)]
