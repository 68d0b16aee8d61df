"""The typed Python clients (what every component uses) against the real server."""

from __future__ import annotations

import asyncio

import pytest

from kumo.client import ApiException, AsyncClient, Client, WatchEvent
from kumo.model import ConfigMap, Deployment, ObjectMeta
from tests.conftest import ApiServerProcess
from tests.integration.api.test_crud import deployment


def config_map(name: str, **data: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, labels={"app": "typed"}), data=data)


async def test_typed_async_round_trip(async_client: AsyncClient, namespace: str) -> None:
    created = await async_client.create(config_map("typed", a="1"))
    assert isinstance(created, ConfigMap)
    assert created.namespace == namespace
    assert created.metadata.uid and created.metadata.resource_version

    fetched = await async_client.get(ConfigMap, "typed")
    assert fetched == created

    fetched.data = {"a": "2"}
    replaced = await async_client.replace(fetched)
    assert replaced.data == {"a": "2"}
    with pytest.raises(ApiException) as stale:
        await async_client.replace(fetched)  # fetched still carries the old resourceVersion
    assert stale.value.conflict

    patched = await async_client.patch(ConfigMap, "typed", {"data": {"b": "3"}})
    assert patched.data == {"a": "2", "b": "3"}

    await async_client.create(ConfigMap(metadata=ObjectMeta(name="untyped-label"), data={}))
    listed = await async_client.list(ConfigMap, label_selector="app=typed")
    assert [i.name for i in listed.items] == ["typed"]
    assert int(listed.resource_version) >= int(patched.metadata.resource_version or 0)

    await async_client.delete(ConfigMap, "typed")
    with pytest.raises(ApiException) as missing:
        await async_client.get(ConfigMap, "typed")
    assert missing.value.not_found


async def test_typed_watch(async_client: AsyncClient, namespace: str) -> None:
    start = (await async_client.list(ConfigMap)).resource_version
    events: list[WatchEvent[ConfigMap]] = []

    async def watch() -> None:
        async for event in async_client.watch(ConfigMap, resource_version=start):
            events.append(event)
            if len(events) == 3:
                return

    watcher = asyncio.create_task(watch())
    await async_client.create(config_map("w"))
    await async_client.patch(ConfigMap, "w", {"data": {"x": "1"}})
    await async_client.delete(ConfigMap, "w")
    await asyncio.wait_for(watcher, 10)
    assert [(e.type, e.object.name) for e in events] == [
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]
    assert all(isinstance(e.object, ConfigMap) for e in events)
    assert events[1].object.data == {"x": "1"}


async def test_typed_apply(async_client: AsyncClient, namespace: str) -> None:
    web = Deployment.model_validate(deployment("applied"))
    web.metadata.namespace = namespace
    first = await async_client.apply(web)
    assert first.action == "created"
    again = await async_client.apply(web)
    assert again.action == "unchanged"
    assert web.spec.replicas is not None
    web.spec.replicas += 1
    changed = await async_client.apply(web)
    assert changed.action == "configured"
    assert changed.object["spec"]["replicas"] == 3


def test_blocking_client_round_trip(client: Client, namespace: str) -> None:
    created = client.create(config_map("sync", a="1"))
    assert client.get(ConfigMap, "sync") == created
    assert [i.name for i in client.list(ConfigMap).items] == ["sync"]
    client.delete(ConfigMap, "sync")
    assert client.list(ConfigMap).items == []


def test_errors_carry_the_status(client: Client, namespace: str) -> None:
    client.create(config_map("dup"))
    with pytest.raises(ApiException) as caught:
        client.create(config_map("dup"))
    error = caught.value
    assert error.already_exists and not error.conflict and not error.not_found
    assert error.code == 409
    assert error.status["kind"] == "Status"
    assert 'configmaps "dup" already exists' in str(error)


def test_client_from_a_kubeconfig_file(api_server: ApiServerProcess) -> None:
    from kumo.client.config import load

    config = load(api_server.kubeconfig_path)
    assert config.server == api_server.url
    assert config.namespace == "default"
    with Client(config) as client:
        assert client.request("GET", "/version").json()["gitVersion"]
