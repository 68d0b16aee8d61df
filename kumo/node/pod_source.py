"""The pods bound to this node, from the API: a list, then a watch.

``PodSource.run`` lists pods with ``fieldSelector=spec.nodeName=<node>`` across all
namespaces, hands the full set to ``on_sync`` (which also tells the agent which pods
disappeared while it was not watching), then watches from the list's
resourceVersion and hands every change to ``on_event``. A watch that ends is resumed
from the last resourceVersion seen (bookmarks keep it fresh); 410 Gone means the
history is compacted, so it lists again. Errors are retried with a capped back-off.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError

from kumo.client import ApiException, AsyncClient
from kumo.model.core import Pod
from kumo.model.registry import for_model

__all__ = ["PodSource"]

log = logging.getLogger(__name__)

POD = for_model(Pod)


class PodSource:
    def __init__(
        self,
        client: AsyncClient,
        node_name: str,
        *,
        on_sync: Callable[[list[Pod]], None],
        on_event: Callable[[str, Pod], None],
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.on_sync = on_sync
        self.on_event = on_event
        self.watch_timeout = watch_timeout
        self.resource_version = ""
        self.synced = asyncio.Event()

    @property
    def selector(self) -> str:
        return f"spec.nodeName={self.node_name}"

    async def _list(self) -> None:
        items, version = await self.client.list_all_raw(
            POD, all_namespaces=True, field_selector=self.selector
        )
        pods = []
        for item in items:
            pod = _decode(item)
            if pod is not None:
                pods.append(pod)
        self.resource_version = version
        self.on_sync(pods)
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.client.watch_raw(
            POD,
            all_namespaces=True,
            resource_version=self.resource_version,
            field_selector=self.selector,
            timeout_seconds=self.watch_timeout,
            bookmarks=True,
        ):
            version = (event.object.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = str(version)
            if event.type == "BOOKMARK":
                continue
            pod = _decode(event.object)
            if pod is not None:
                self.on_event(event.type, pod)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        need_list = True
        while not stop.is_set():
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                failures = 0
            except asyncio.CancelledError:
                raise
            except ApiException as err:
                if err.gone or err.code == 410:
                    log.info("pod watch expired (410); listing again")
                    need_list = True
                    continue
                failures += 1
                log.warning("pod watch failed: %s", err)
            except (httpx.HTTPError, OSError, ValueError) as err:
                failures += 1
                log.warning("pod watch interrupted: %s", err)
            if failures:
                delay = min(0.2 * 2 ** min(failures, 6), 10.0) * random.uniform(0.8, 1.2)
                try:
                    async with asyncio.timeout(delay):
                        await stop.wait()
                except TimeoutError:
                    pass


def _decode(raw: dict[str, Any]) -> Pod | None:
    try:
        return Pod.model_validate(raw)
    except ValidationError as err:
        name = (raw.get("metadata") or {}).get("name")
        log.warning("ignoring pod %s that does not decode: %s", name, err)
        return None
