"""Namespace deletion: empty a terminating namespace, then release its ``kubernetes`` finalizer.

When a Namespace has ``deletionTimestamp`` and ``spec.finalizers`` contains ``kubernetes``,
every namespaced object in it (every namespaced kind in the registry) is deleted with
background propagation. Objects that linger (finalizers, pods still shutting down on a node)
are reported in the namespace's status conditions, written through the status subresource,
and the namespace is looked at again later. When nothing is left, ``PUT
/api/v1/namespaces/{name}/finalize`` drops ``kubernetes`` from ``spec.finalizers`` and the API
server removes the namespace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kumo.client import ApiException
from kumo.model.core import Namespace
from kumo.model.meta import now_rfc3339
from kumo.model.registry import RESOURCES, ResourceInfo
from kumo.platform.controllers.informer import EventHandler, Obj
from kumo.platform.controllers.runner import Controller, Result, write_status

log = logging.getLogger(__name__)

NAMESPACE_FINALIZER = "kubernetes"


@dataclass(slots=True)
class Remaining:
    """What is still in a namespace after one round of deletes."""

    counts: dict[str, int] = field(default_factory=dict)  # resource -> objects left
    finalizers: dict[str, int] = field(default_factory=dict)  # finalizer -> objects holding it
    failures: list[str] = field(default_factory=list)  # deletes that failed

    @property
    def empty(self) -> bool:
        return not self.counts and not self.failures


def namespaced_kinds() -> list[ResourceInfo]:
    """Deletion order: workloads' owners first, so their controllers do not recreate pods,
    then everything else; Events last, as they describe the rest."""
    first = ("deployments", "replicasets", "jobs", "functions")
    kinds = [info for info in RESOURCES if info.namespaced]
    return sorted(
        kinds,
        key=lambda i: (
            0 if i.plural in first else 2 if i.plural == "events" else 1,
            i.group_resource,
        ),
    )


def conditions_for(remaining: Remaining, now: str) -> list[dict[str, Any]]:
    """Kubernetes' namespace deletion conditions for what is left."""

    def condition(kind: str, problem: bool, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if problem else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }

    content = ", ".join(
        f"{r} has {n} resource instances" for r, n in sorted(remaining.counts.items())
    )
    held = ", ".join(
        f"{f} in {n} resource instances" for f, n in sorted(remaining.finalizers.items())
    )
    return [
        condition(
            "NamespaceDeletionContentFailure",
            bool(remaining.failures),
            "ContentDeletionFailed" if remaining.failures else "ContentDeleted",
            "; ".join(remaining.failures)
            or "All content successfully deleted, may be waiting on finalization",
        ),
        condition(
            "NamespaceContentRemaining",
            bool(remaining.counts),
            "SomeResourcesRemain" if remaining.counts else "ContentRemoved",
            f"Some resources are remaining: {content}"
            if content
            else "All content successfully removed",
        ),
        condition(
            "NamespaceFinalizersRemaining",
            bool(remaining.finalizers),
            "SomeFinalizersRemain" if remaining.finalizers else "ContentHasNoFinalizers",
            f"Some content in the namespace has finalizers remaining: {held}"
            if held
            else "All content-preserving finalizers finished",
        ),
    ]


class NamespaceController(Controller):
    """Queue keys are namespace names."""

    name = "namespace"
    workers = 2
    # How soon to look again while objects are still going away: quickly at first (most
    # content goes at once), then less often (pods waiting for their node, finalizers).
    recheck_first = 0.2
    recheck_max = 5.0

    def setup(self) -> None:
        self._rounds: dict[str, int] = {}
        self.namespaces = self.informers.informer(Namespace)
        self.namespaces.add_event_handler(
            EventHandler(
                on_add=self._maybe_enqueue, on_update=lambda old, new: self._maybe_enqueue(new)
            )
        )

    def _maybe_enqueue(self, obj: Obj) -> None:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.enqueue(obj)

    async def reconcile(self, key: str) -> Result | None:
        info = self.namespaces.info
        try:
            namespace = await self.client.get_raw(info, key)
        except ApiException as exc:
            if exc.not_found:
                self._rounds.pop(key, None)
                return None
            raise
        meta = namespace.get("metadata") or {}
        spec_finalizers = list((namespace.get("spec") or {}).get("finalizers") or [])
        if not meta.get("deletionTimestamp") or NAMESPACE_FINALIZER not in spec_finalizers:
            self._rounds.pop(key, None)
            return None
        remaining = await self._delete_content(key)
        if not remaining.empty:
            log.info("namespace %s: waiting for %s", key, remaining.counts or remaining.failures)
            await self._report(namespace, remaining)
            rounds = self._rounds.get(key, 0)
            self._rounds[key] = rounds + 1
            delay = min(self.recheck_first * 1.5**rounds, self.recheck_max)
            return Result(requeue_after=delay)
        self._rounds.pop(key, None)
        await self._finalize(namespace, [f for f in spec_finalizers if f != NAMESPACE_FINALIZER])
        log.info("namespace %s: content removed; finalized", key)
        return None

    async def _delete_content(self, namespace: str) -> Remaining:
        remaining = Remaining()
        for info in namespaced_kinds():
            try:
                items, _ = await self.client.list_all_raw(info, namespace)
            except ApiException as exc:
                remaining.failures.append(f"listing {info.group_resource}: {exc.message}")
                continue
            for item in items:
                item_meta = item.get("metadata") or {}
                if item_meta.get("deletionTimestamp"):
                    continue  # already going; it may wait for finalizers or its node
                try:
                    await self.client.delete_raw(
                        info, str(item_meta.get("name")), namespace, propagation="Background"
                    )
                except ApiException as exc:
                    if not exc.not_found:
                        remaining.failures.append(
                            f"deleting {info.group_resource} {item_meta.get('name')}: {exc.message}"
                        )
            if not items:
                continue
            # Only a fresh list says what is really gone (finalizers keep objects around).
            still, _ = await self.client.list_all_raw(info, namespace)
            if still:
                remaining.counts[info.group_resource] = len(still)
                for obj in still:
                    for finalizer in (obj.get("metadata") or {}).get("finalizers") or []:
                        remaining.finalizers[finalizer] = remaining.finalizers.get(finalizer, 0) + 1
        return remaining

    async def _report(self, namespace: Obj, remaining: Remaining) -> None:
        status = dict(namespace.get("status") or {})
        status["phase"] = "Terminating"
        status["conditions"] = conditions_for(remaining, now_rfc3339())
        current = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in (namespace.get("status") or {}).get("conditions") or []
        ]
        wanted = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
        ]
        if current == wanted:
            return
        try:
            await write_status(self.client, {**namespace, "status": status})
        except ApiException as exc:
            if not (exc.conflict or exc.not_found):
                raise  # a conflict is fine: the next round writes it again

    async def _finalize(self, namespace: Obj, finalizers: list[str]) -> None:
        name = str((namespace.get("metadata") or {}).get("name"))
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "resourceVersion": (namespace.get("metadata") or {}).get("resourceVersion"),
            },
            "spec": {"finalizers": finalizers},
        }
        try:
            await self.client.request("PUT", f"/api/v1/namespaces/{name}/finalize", body=body)
        except ApiException as exc:
            if not exc.not_found:
                raise
