"""Cold start: how the gateway asks for a Function's first pod.

Contract with the Function controller (which owns the Function's pods and its Service, named
like the Function): the gateway sets the annotation ``kumo.dev/activation-requested-at`` on the
Function to the current time (RFC 3339, UTC) when a request finds no ready pod. The controller,
seeing a request newer than its last scale-down, scales the Function to at least one replica;
the gateway holds the request until the Service's Endpoints list a ready address (or its
cold-start timeout passes, then 504), and forwards it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Protocol

from kumo.client import ApiException, AsyncClient
from kumo.model.functions import ACTIVATION_ANNOTATION, Function
from kumo.model.registry import for_model

log = logging.getLogger(__name__)


class FunctionNotFound(Exception):
    """The Function a ``/fn/`` request names does not exist."""


class Activator(Protocol):
    """The cold-start hook: asked when a request for a Function finds no ready pod."""

    async def activate(self, namespace: str, name: str) -> None:
        """Ask for at least one ready pod of Function namespace/name and return without
        waiting for it. Raises ``FunctionNotFound`` when there is no such Function."""
        ...


def function_service_name(function: str) -> str:
    """The Service that fronts a Function's pods."""
    return function


class ApiActivator:
    """Asks through the API server; at most one request per Function per ``min_interval``
    seconds (requests arriving meanwhile share it)."""

    def __init__(self, client: AsyncClient, *, min_interval: float = 5.0) -> None:
        self.client = client
        self.min_interval = min_interval
        self._info = for_model(Function)
        self._recent: dict[tuple[str, str], float] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def activate(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        running = self._running.get(key)
        if running is None:
            last = self._recent.get(key)
            if last is not None and time.monotonic() - last < self.min_interval:
                return
            running = asyncio.get_running_loop().create_task(self._request(namespace, name))
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # shield: one held request giving up must not cancel the others' activation
        await asyncio.shield(running)
        self._recent[key] = time.monotonic()
        if len(self._recent) > 10_000:
            self._recent.clear()

    async def _request(self, namespace: str, name: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"metadata": {"annotations": {ACTIVATION_ANNOTATION: now}}}
        try:
            await self.client.patch_raw(self._info, name, patch, namespace)
        except ApiException as exc:
            if exc.not_found:
                raise FunctionNotFound(f"{namespace}/{name}") from exc
            raise
        log.info("asked for a pod of function %s/%s (cold start)", namespace, name)
