"""The garbage collector honours a propagation policy switched by a second DELETE (the API
server replaces ``orphan`` with ``foregroundDeletion`` or the other way round, or drops
both for Background): against a real API server, with the collector started after the
switch and while it is already collecting."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from kumo.client import AsyncClient
from kumo.platform.controllers import ControllerManager
from tests.conftest import kind_info
from tests.integration.controllers.test_garbage_collection import (
    HOLD,
    configmap,
    delete,
    get,
    gone,
    owner_uids,
    ref,
)

Obj = dict[str, Any]
Wait = Callable[..., Awaitable[Any]]
StartManager = Callable[..., contextlib.AbstractAsyncContextManager[ControllerManager]]
CM = kind_info("v1", "ConfigMap")


async def family(async_client: AsyncClient, namespace: str) -> tuple[Obj, list[Obj]]:
    """An owner and two dependents that block its foreground deletion."""
    owner = await async_client.create_raw(configmap("owner"), namespace)
    dependents = [
        await async_client.create_raw(configmap(f"dep-{i}", [ref(owner, block=True)]), namespace)
        for i in range(2)
    ]
    return owner, dependents


async def switch(async_client: AsyncClient, owner: Obj, namespace: str, policy: str) -> Obj:
    return await delete(async_client, owner, namespace, policy)


async def test_foreground_switched_to_orphan_orphans_the_dependents(
    async_client: AsyncClient, namespace: str, start_manager: StartManager, wait_for: Wait
) -> None:
    owner, dependents = await family(async_client, namespace)
    first = await switch(async_client, owner, namespace, "Foreground")
    assert first["metadata"]["finalizers"] == ["foregroundDeletion"]
    second = await switch(async_client, owner, namespace, "Orphan")
    assert second["metadata"]["finalizers"] == ["orphan"]

    async with start_manager(async_client, ["garbagecollector"]):
        await wait_for(gone(async_client, namespace, owner))
    for dependent in dependents:
        current = await get(async_client, dependent, namespace)
        assert current is not None, "orphaned, not deleted"
        assert not current["metadata"].get("deletionTimestamp")
        assert owner["metadata"]["uid"] not in owner_uids(current)


async def test_orphan_switched_to_foreground_deletes_the_dependents_first(
    async_client: AsyncClient, namespace: str, start_manager: StartManager, wait_for: Wait
) -> None:
    owner, dependents = await family(async_client, namespace)
    held = await async_client.create_raw(
        configmap("held", [ref(owner, block=True)], finalizers=[HOLD]), namespace
    )
    await switch(async_client, owner, namespace, "Orphan")
    switched = await switch(async_client, owner, namespace, "Foreground")
    assert switched["metadata"]["finalizers"] == ["foregroundDeletion"]

    async with start_manager(async_client, ["garbagecollector"]):
        await wait_for(gone(async_client, namespace, *dependents))

        async def held_is_deleting() -> bool:
            current = await get(async_client, held, namespace)
            return current is not None and bool(current["metadata"].get("deletionTimestamp"))

        await wait_for(held_is_deleting)
        waiting = await get(async_client, owner, namespace)
        assert waiting is not None, "the owner waits for its blocking dependent"
        assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
        current_held = await get(async_client, held, namespace)
        assert current_held is not None
        assert owner_uids(current_held) == [owner["metadata"]["uid"]], "deleted, not orphaned"

        await async_client.patch_raw(CM, "held", {"metadata": {"finalizers": None}}, namespace)
        await wait_for(gone(async_client, namespace, held, owner))


async def test_orphan_switched_to_background_deletes_the_owner_then_its_dependents(
    async_client: AsyncClient, namespace: str, start_manager: StartManager, wait_for: Wait
) -> None:
    owner, dependents = await family(async_client, namespace)
    await switch(async_client, owner, namespace, "Orphan")
    await switch(async_client, owner, namespace, "Background")
    assert await get(async_client, owner, namespace) is None, "no finalizer left: gone at once"

    async with start_manager(async_client, ["garbagecollector"]):
        await wait_for(gone(async_client, namespace, *dependents))


async def test_a_switch_to_orphan_while_the_collector_waits_in_the_foreground(
    async_client: AsyncClient, namespace: str, start_manager: StartManager, wait_for: Wait
) -> None:
    owner = await async_client.create_raw(configmap("owner"), namespace)
    held = await async_client.create_raw(
        configmap("held", [ref(owner, block=True)], finalizers=[HOLD]), namespace
    )
    async with start_manager(async_client, ["garbagecollector"]):
        await switch(async_client, owner, namespace, "Foreground")

        async def held_is_deleting() -> bool:
            current = await get(async_client, held, namespace)
            return current is not None and bool(current["metadata"].get("deletionTimestamp"))

        await wait_for(held_is_deleting)
        assert await get(async_client, owner, namespace) is not None, "blocked by held"

        switched = await switch(async_client, owner, namespace, "Orphan")
        assert switched["metadata"]["finalizers"] == ["orphan"]
        # the collector now orphans instead: the reference goes, then the owner
        await wait_for(gone(async_client, namespace, owner))
        current = await get(async_client, held, namespace)
        assert current is not None
        assert owner_uids(current) == []
    await async_client.patch_raw(CM, "held", {"metadata": {"finalizers": None}}, namespace)
    assert await get(async_client, held, namespace) is None
