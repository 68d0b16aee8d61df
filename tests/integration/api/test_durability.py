"""Acknowledged writes survive SIGKILL; everything survives a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from kumo.client import ApiException, AsyncClient, Client
from tests.conftest import ApiServerFactory, ApiServerProcess, kind_info
from tests.integration.api.test_crud import config_map, deployment

CM = kind_info("v1", "ConfigMap")

TOTAL = 500
WRITERS = 10


async def test_acknowledged_creates_survive_sigkill(api_server_factory: ApiServerFactory) -> None:
    server = api_server_factory.start()
    acknowledged: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    names = iter(range(TOTAL))
    halfway = asyncio.Event()
    killed = asyncio.Event()

    async def writer(client: AsyncClient) -> None:
        for number in names:
            name = f"cm-{number:04d}"
            try:
                created = await client.create_raw(config_map(name, {"number": str(number)}))
            except (httpx.HTTPError, ApiException):
                failed.append(name)
                continue
            acknowledged[name] = created
            if len(acknowledged) >= TOTAL // 2:
                halfway.set()

    async def killer() -> None:
        await halfway.wait()
        await asyncio.to_thread(server.kill)
        killed.set()

    clients = [AsyncClient(server.client_config(), timeout=5.0) for _ in range(WRITERS)]
    try:
        await asyncio.wait_for(asyncio.gather(killer(), *(writer(c) for c in clients)), timeout=120)
    finally:
        for c in clients:
            await c.close()
    assert killed.is_set()
    assert TOTAL // 2 <= len(acknowledged) < TOTAL, "the kill should land mid-stream"
    assert failed, "some creates should have failed when the server died"

    server.start()
    with Client(server.client_config()) as client:
        stored = {i["metadata"]["name"]: i for i in client.list_all_raw(CM)[0]}
    lost = sorted(set(acknowledged) - set(stored))
    assert lost == [], f"{len(lost)} acknowledged creates lost: {lost[:10]}"
    for name, created in acknowledged.items():
        assert stored[name] == created
    # Whatever else was written is a create the server had not acknowledged.
    assert set(stored) - set(acknowledged) <= set(failed)

    # Revisions keep growing after the crash.
    highest = max(int(o["metadata"]["resourceVersion"]) for o in stored.values())
    with Client(server.client_config()) as client:
        after = client.create_raw(config_map("after-crash"))
    assert int(after["metadata"]["resourceVersion"]) > highest


def test_restart_keeps_every_object_and_the_history(api_server_factory: ApiServerFactory) -> None:
    server = api_server_factory.start()
    with Client(server.client_config()) as client:
        namespace = client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kept"}}
        )
        start = client.list_raw(CM, "kept")["metadata"]["resourceVersion"]
        before = [
            namespace,
            client.create_raw(config_map("settings", {"a": "1"}), "kept"),
            client.create_raw(deployment("web"), "kept"),
            client.create_raw(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
                },
                "kept",
            ),
        ]
        updated = client.patch_raw(CM, "settings", {"data": {"a": "2"}}, "kept")
        before[1] = updated
        every = _everything(client)

    server.restart()
    with Client(server.client_config()) as client:
        assert _everything(client) == every
        for obj in before:
            info = kind_info(obj["apiVersion"], obj["kind"])
            assert client.get_raw(info, obj["metadata"]["name"], "kept") == obj
        # The change log survived too: a watch from before the restart replays it.
        events = list(client.watch_raw(CM, "kept", resource_version=start, timeout_seconds=1))
        assert [(e.type, e.object["data"]) for e in events] == [
            ("ADDED", {"a": "1"}),
            ("MODIFIED", {"a": "2"}),
        ]


def _everything(client: Client) -> dict[str, dict[str, Any]]:
    out = {}
    for api_version, kind in (
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
    ):
        info = kind_info(api_version, kind)
        for item in client.list_all_raw(info, all_namespaces=True)[0]:
            meta = item["metadata"]
            out[f"{kind}/{meta.get('namespace', '')}/{meta['name']}"] = item
    return out


def test_sigkill_while_idle_loses_nothing(api_server_factory: ApiServerFactory) -> None:
    server: ApiServerProcess = api_server_factory.start()
    with Client(server.client_config()) as client:
        created = [client.create_raw(config_map(f"idle-{i}")) for i in range(20)]
    server.kill()
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started < 30
    with Client(server.client_config()) as client:
        stored = client.list_all_raw(CM)[0]
    assert sorted(stored, key=_name) == sorted(created, key=_name)


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])
