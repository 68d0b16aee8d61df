"""The resourcequota controller: keeps every ResourceQuota's ``status.hard`` and
``status.used`` up to date (Kubernetes' resourcequota controller).

- ``status.hard`` is a copy of ``spec.hard``; ``status.used`` has every hard resource,
  counted as admission counts it (``kumo.model.quota``): pods that are not finished, their
  requests and limits, services by type, objects by kind (``count/<resource>.<group>``);
- pods, services, secrets and configmaps are followed through informers: a change in a
  namespace recounts its quotas at once; other kinds a quota counts are listed from the API
  on each reconcile, and every quota is recounted every ``resync`` seconds anyway (pods stuck
  terminating stop counting when their grace period is long past, which no event announces);
- status goes through the ``status`` subresource, only when it changed.

Admission never trusts this status: it counts from the store itself (see
``kumo.platform.api.quota``); this controller is what ``kumo get quota`` and
``kumo describe quota`` show.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from kumo.client import ApiException
from kumo.model.core import ConfigMap, Pod, ResourceQuota, Secret, Service
from kumo.model.quota import format_amount, total_usage, tracks
from kumo.model.registry import RESOURCES, ResourceInfo, for_model
from kumo.platform.controllers.informer import EventHandler, Obj, SharedInformer, split_key
from kumo.platform.controllers.runner import Controller, Result, write_status

log = logging.getLogger(__name__)

FOLLOWED = (Pod, Service, Secret, ConfigMap)


def quota_status(quota: Obj, used: dict[str, Decimal]) -> Obj:
    """The status a quota should have given the usage of its namespace (pure)."""
    hard = dict(((quota.get("spec") or {}).get("hard")) or {})
    return {
        "hard": hard,
        "used": {name: format_amount(name, used.get(name, Decimal(0))) for name in sorted(hard)},
    }


class ResourceQuotaController(Controller):
    """Queue keys are ``namespace/name`` of ResourceQuotas."""

    name = "resourcequota"
    workers = 2
    resync = 60.0

    def setup(self) -> None:
        self.quotas = self.informers.informer(ResourceQuota)
        self.quotas.add_event_handler(
            EventHandler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        )
        self.followed: dict[tuple[str, str], SharedInformer] = {}
        for model in FOLLOWED:
            info = for_model(model)
            informer = self.informers.informer(model)
            self.followed[(info.group, info.plural)] = informer
            informer.add_event_handler(self._handler(info))

    def _handler(self, info: ResourceInfo) -> EventHandler:
        def changed(obj: Obj) -> None:
            namespace = str((obj.get("metadata") or {}).get("namespace") or "")
            for quota in self.quotas.list(namespace):
                hard = (quota.get("spec") or {}).get("hard") or {}
                if any(tracks(info.plural, info.group, name) for name in hard):
                    self.enqueue(quota)

        return EventHandler.for_each(changed)

    async def _objects(self, info: ResourceInfo, namespace: str) -> list[Obj]:
        informer = self.followed.get((info.group, info.plural))
        if informer is not None:
            return informer.list(namespace)
        items, _ = await self.client.list_all_raw(info, namespace)
        return items

    async def usage(self, quota: Obj) -> dict[str, Decimal]:
        """What the quota's namespace uses of each of its hard resources."""
        spec = quota.get("spec") or {}
        hard = spec.get("hard") or {}
        scopes = spec.get("scopes") or []
        namespace = str((quota.get("metadata") or {}).get("namespace") or "")
        used: dict[str, Decimal] = {}
        for info in RESOURCES:
            if not info.namespaced:
                continue
            names = [name for name in hard if tracks(info.plural, info.group, name)]
            if not names:
                continue
            total = total_usage(
                info.plural, info.group, await self._objects(info, namespace), scopes
            )
            for name in names:
                used[name] = used.get(name, Decimal(0)) + total.get(name, Decimal(0))
        return used

    async def reconcile(self, key: str) -> Result | None:
        namespace, name = split_key(key)
        quota = self.quotas.get(namespace, name)
        if quota is None or (quota.get("metadata") or {}).get("deletionTimestamp"):
            return None
        status = quota_status(quota, await self.usage(quota))
        if quota.get("status") != status:
            try:
                await write_status(self.client, {**quota, "status": status})
            except ApiException as exc:
                if exc.not_found:
                    return None
                raise  # a conflict: the informer brings the newer quota, then we recount
        return Result(requeue_after=self.resync)
