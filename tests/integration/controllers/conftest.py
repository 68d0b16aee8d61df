"""Fixtures for the controller tests: a controller manager running against the shared API
server (``api_server`` / ``async_client`` / ``namespace`` from tests/conftest.py), and
``wait_for`` for polling the API until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kumo.client import AsyncClient
from kumo.platform.controllers import ControllerFactory, ControllerManager, select
from tests.conftest import component_config


@contextlib.asynccontextmanager
async def running_manager(
    client: AsyncClient, names: list[str] | None = None, **informer_options: Any
) -> AsyncIterator[ControllerManager]:
    """The named controllers (all by default), as ``running_controllers`` runs them."""
    async with running_controllers(client, select(names), **informer_options) as manager:
        yield manager


@contextlib.asynccontextmanager
async def running_controllers(
    client: AsyncClient, factories: list[ControllerFactory], **informer_options: Any
) -> AsyncIterator[ControllerManager]:
    """The controllers of ``factories``, started and synced; stopped on exit. They act as
    their own identity (system:kube-controller-manager) on ``client``'s server, as ``kumo
    up`` runs them; ``max_backoff`` is 1 s unless given."""
    informer_options.setdefault("max_backoff", 1.0)
    async with AsyncClient(component_config(client.config, "controllers")) as own:
        manager = ControllerManager(own, factories, **informer_options)
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))
        try:
            waiting = asyncio.create_task(manager.wait_started())
            await asyncio.wait({waiting, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if task.done():
                task.result()
            assert manager.started, "the controller manager did not start within 30 s"
            yield manager
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def manager(async_client: AsyncClient) -> AsyncIterator[ControllerManager]:
    """The garbage collector, namespace and service-account controllers against the shared
    server (the workload controllers have tests of their own under tests/integration/workloads)."""
    async with running_manager(
        async_client, ["garbagecollector", "namespace", "serviceaccount"]
    ) as running:
        yield running


@pytest.fixture
def start_manager() -> Callable[..., contextlib.AbstractAsyncContextManager[ControllerManager]]:
    """``async with start_manager(client, names=[...]) as manager:``"""
    return running_manager


async def eventually(
    check: Callable[[], Awaitable[Any]], within: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last result."""
    deadline = time.monotonic() + within
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last result: {last!r})")
        await asyncio.sleep(interval)


@pytest.fixture
def wait_for() -> Callable[..., Awaitable[Any]]:
    return eventually
