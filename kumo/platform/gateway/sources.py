"""Keeps a ``RouteTable`` in step with the API: shared informers on Services and Endpoints
(all namespaces); any change to either object of a Service rebuilds that Service's route."""

from __future__ import annotations

from typing import Any

from kumo.client import AsyncClient
from kumo.model.core import Endpoints, Service
from kumo.platform.controllers.informer import EventHandler, InformerFactory
from kumo.platform.gateway.metrics import ServiceStats
from kumo.platform.gateway.routing import RouteTable

Obj = dict[str, Any]


class RouteSource:
    def __init__(
        self, client: AsyncClient, table: RouteTable[ServiceStats], **informer_options: Any
    ) -> None:
        self.table = table
        self.factory = InformerFactory(client, **informer_options)
        self.services = self.factory.informer(Service)
        self.endpoints = self.factory.informer(Endpoints)
        handler = EventHandler(
            on_add=self._changed,
            on_update=lambda _old, new: self._changed(new),
            on_delete=self._changed,
        )
        self.services.add_event_handler(handler)
        self.endpoints.add_event_handler(handler)

    def _changed(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        name = str(meta.get("name") or "")
        if not namespace or not name:
            return
        self.table.update(
            namespace,
            name,
            self.services.get(namespace, name),
            self.endpoints.get(namespace, name),
        )

    def start(self) -> None:
        self.factory.start()

    @property
    def has_synced(self) -> bool:
        return self.factory.has_synced

    async def wait_for_sync(self) -> None:
        await self.factory.wait_for_sync()

    async def stop(self) -> None:
        await self.factory.stop()
