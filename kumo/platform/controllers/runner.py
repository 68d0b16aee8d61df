"""The controller base and the manager that runs controllers over shared informers.

A controller (the sample-controller pattern):
- in ``setup`` it asks the ``InformerFactory`` for the kinds it reads and registers handlers
  that turn events into keys on its ``WorkQueue``;
- workers take keys and call ``reconcile(key)``, which must be idempotent: it reads the
  current state (cache or API), makes the world match, and may be called again any time;
- ``reconcile`` raising means "retry with per-key exponential backoff"; returning
  ``Result(requeue_after=s)`` means "look again in s seconds"; returning normally resets
  the key's backoff;
- status is written through the ``status`` subresource (``write_status``), never together
  with spec.

The manager starts the informers every controller asked for, waits until they have synced,
then runs each controller's workers until the stop event is set. All controllers share one
``AsyncClient`` and one informer per kind.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kumo.client import ApiException, AsyncClient
from kumo.model.registry import ResourceInfo, by_kind
from kumo.platform.controllers.informer import EventHandler, InformerFactory, Obj, object_key
from kumo.platform.controllers.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """What a successful reconcile asks for next."""

    requeue_after: float | None = None


class Controller(abc.ABC):
    """Subclasses set ``name`` and implement ``setup`` and ``reconcile``."""

    name: ClassVar[str] = ""
    workers: int = 2

    def __init__(
        self,
        client: AsyncClient,
        informers: InformerFactory,
        *,
        workers: int | None = None,
        backoff: ExponentialBackoff[str] | None = None,
    ) -> None:
        self.client = client
        self.informers = informers
        if workers is not None:
            self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue(self.name, backoff)
        self.reconciles = 0
        self.failures = 0
        self.setup()

    @abc.abstractmethod
    def setup(self) -> None:
        """Get informers from ``self.informers`` and register event handlers."""

    @abc.abstractmethod
    async def reconcile(self, key: str) -> Result | None:
        """Make the world match the desired state for ``key``; raise to retry with backoff."""

    def enqueue(self, obj: Obj) -> None:
        """The usual handler: queue the object's ``namespace/name`` key."""
        self.queue.add(object_key(obj))

    def enqueue_handler(self) -> EventHandler:
        """An ``EventHandler`` that queues the key of every added, changed or deleted object."""
        return EventHandler.for_each(self.enqueue)

    async def run(self) -> None:
        """Run the workers until the queue shuts down."""
        async with asyncio.TaskGroup() as group:
            for index in range(self.workers):
                group.create_task(self._worker(), name=f"{self.name} worker {index}")

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: str) -> None:
        """One reconcile of ``key`` with the retry rules of the module docstring."""
        self.reconciles += 1
        try:
            result = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            retries = self.queue.num_requeues(key)
            if isinstance(exc, ApiException) and exc.conflict:
                log.info("%s: %s: conflict, retrying (%d)", self.name, key, retries)
            else:
                log.warning(
                    "%s: reconcile %s failed (retry %d): %s",
                    self.name,
                    key,
                    retries,
                    exc,
                    exc_info=not isinstance(exc, ApiException),
                )
            self.queue.add_rate_limited(key)
            return
        self.queue.forget(key)
        if result is not None and result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)

    def shut_down(self) -> None:
        self.queue.shut_down()


async def write_status(client: AsyncClient, obj: Obj) -> Obj:
    """PUT ``obj`` to its ``status`` subresource: only its status is stored; a stale
    resourceVersion fails with 409 like any update."""
    info = info_for(obj)
    meta = obj.get("metadata") or {}
    path = info.path(meta.get("namespace") if info.namespaced else None, meta.get("name"), "status")
    response = await client.request("PUT", path, body=obj)
    data: Obj = response.json()
    return data


def info_for(obj: Obj) -> ResourceInfo:
    info = by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if info is None:
        raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
    return info


ControllerFactory = Callable[[AsyncClient, InformerFactory], Controller]


class ControllerManager:
    """Runs controllers that share one client and one informer per kind."""

    def __init__(
        self,
        client: AsyncClient,
        factories: Sequence[ControllerFactory],
        **informer_options: Any,
    ) -> None:
        self.client = client
        self.informers = InformerFactory(client, **informer_options)
        self.controllers = [factory(client, self.informers) for factory in factories]
        self._started = asyncio.Event()

    def controller(self, name: str) -> Controller:
        for controller in self.controllers:
            if controller.name == name:
                return controller
        raise KeyError(name)

    @property
    def started(self) -> bool:
        """The informers synced and the workers are running."""
        return self._started.is_set()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: start informers, wait for their sync, run every controller."""
        self.informers.start()
        stopper = asyncio.create_task(stop.wait())
        try:
            syncing = asyncio.create_task(self.informers.wait_for_sync())
            await asyncio.wait({syncing, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not syncing.done():
                syncing.cancel()
                return
            log.info(
                "controllers %s running", ", ".join(c.name for c in self.controllers) or "(none)"
            )
            runs = [
                asyncio.create_task(c.run(), name=f"controller {c.name}") for c in self.controllers
            ]
            self._started.set()
            await asyncio.wait({stopper, *runs}, return_when=asyncio.FIRST_COMPLETED)
            for controller in self.controllers:
                controller.shut_down()
            for run in runs:
                run.cancel()
            for run in runs:
                with contextlib.suppress(asyncio.CancelledError):
                    await run
        finally:
            stopper.cancel()
            await self.informers.stop()
