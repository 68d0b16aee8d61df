"""Compare-and-swap under contention: no lost updates."""

from __future__ import annotations

import asyncio

from kumo.client import ApiException, AsyncClient
from tests.conftest import ApiServerProcess, kind_info
from tests.integration.api.test_crud import config_map

CM = kind_info("v1", "ConfigMap")

CLIENTS = 20
INCREMENTS_EACH = 5
MAX_ATTEMPTS = 500


async def test_twenty_clients_increment_one_counter(
    api_server: ApiServerProcess, namespace: str
) -> None:
    clients = [AsyncClient(api_server.client_config(namespace)) for _ in range(CLIENTS)]
    await clients[0].create_raw(config_map("counter", {"value": "0"}))
    successes = 0
    conflicts = 0

    async def increment(client: AsyncClient) -> None:
        nonlocal successes, conflicts
        for _ in range(INCREMENTS_EACH):
            for _attempt in range(MAX_ATTEMPTS):
                current = await client.get_raw(CM, "counter")
                current["data"]["value"] = str(int(current["data"]["value"]) + 1)
                try:
                    await client.replace_raw(current)  # carries the resourceVersion it read
                except ApiException as exc:
                    assert exc.code == 409 and exc.reason == "Conflict", exc
                    conflicts += 1
                    continue
                successes += 1
                break
            else:
                raise AssertionError("an increment never got through")

    try:
        await asyncio.wait_for(asyncio.gather(*(increment(c) for c in clients)), timeout=120)
        final = await clients[0].get_raw(CM, "counter")
    finally:
        for client in clients:
            await client.close()
    assert successes == CLIENTS * INCREMENTS_EACH
    assert int(final["data"]["value"]) == successes
    assert conflicts > 0, "20 concurrent writers should have collided at least once"


async def test_concurrent_creates_of_one_name_have_one_winner(
    api_server: ApiServerProcess, namespace: str
) -> None:
    clients = [AsyncClient(api_server.client_config(namespace)) for _ in range(10)]

    async def create(client: AsyncClient, number: int) -> str:
        try:
            await client.create_raw(config_map("contested", {"by": str(number)}))
        except ApiException as exc:
            assert exc.already_exists, exc
            return "lost"
        return "won"

    try:
        results = await asyncio.gather(*(create(c, i) for i, c in enumerate(clients)))
    finally:
        for client in clients:
            await client.close()
    assert sorted(results) == ["lost"] * 9 + ["won"]


async def test_concurrent_patches_without_preconditions_all_apply(
    api_server: ApiServerProcess, namespace: str
) -> None:
    """Patches without a resourceVersion are retried by the server, never lost."""
    clients = [AsyncClient(api_server.client_config(namespace)) for _ in range(10)]
    await clients[0].create_raw(config_map("patched", {}))
    try:
        await asyncio.gather(
            *(
                c.patch_raw(CM, "patched", {"data": {f"key-{i}-{j}": "x"}})
                for i, c in enumerate(clients)
                for j in range(5)
            )
        )
        final = await clients[0].get_raw(CM, "patched")
    finally:
        for client in clients:
            await client.close()
    assert len(final["data"]) == 50
