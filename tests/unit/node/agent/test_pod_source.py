"""The agent's pod list + watch: selector, resume from resourceVersion, relist on 410."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kumo.client import ApiException, RawEvent
from kumo.model.core import Pod
from kumo.node.pod_source import PodSource


def raw_pod(name: str, rv: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": rv},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    }


class ScriptedClient:
    """Lists return the next listing; watches replay scripted events (or errors)."""

    def __init__(
        self, listings: list[tuple[list[dict[str, Any]], str]], watches: list[list[Any]]
    ) -> None:
        self.listings = listings
        self.watches = watches
        self.list_calls: list[dict[str, Any]] = []
        self.watch_calls: list[dict[str, Any]] = []
        self.stop = asyncio.Event()

    async def list_all_raw(
        self, info: object, namespace: str | None = None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], str]:
        self.list_calls.append(kwargs)
        return self.listings.pop(0)

    async def watch_raw(
        self, info: object, namespace: str | None = None, **kwargs: Any
    ) -> AsyncIterator[RawEvent]:
        self.watch_calls.append(kwargs)
        if not self.watches:
            self.stop.set()
            await asyncio.sleep(3600)
        for item in self.watches.pop(0):
            if isinstance(item, Exception):
                raise item
            yield item


async def test_lists_watches_resumes_and_relists_after_410() -> None:
    client = ScriptedClient(
        listings=[([raw_pod("a", "5")], "10"), ([raw_pod("b", "30")], "31")],
        watches=[
            [
                RawEvent("ADDED", raw_pod("b", "11")),
                RawEvent("BOOKMARK", {"metadata": {"resourceVersion": "20"}}),
            ],
            [ApiException(410, {"reason": "Expired", "code": 410})],
            [RawEvent("DELETED", raw_pod("b", "32"))],
        ],
    )
    synced: list[list[str]] = []
    events: list[tuple[str, str]] = []

    def on_sync(pods: list[Pod]) -> None:
        synced.append([p.metadata.name or "" for p in pods])

    def on_event(kind: str, pod: Pod) -> None:
        events.append((kind, pod.metadata.name or ""))

    source = PodSource(client, "n1", on_sync=on_sync, on_event=on_event)  # type: ignore[arg-type]
    task = asyncio.create_task(source.run(client.stop))
    await asyncio.wait_for(client.stop.wait(), 5)
    task.cancel()
    assert synced == [["a"], ["b"]]
    assert events == [("ADDED", "b"), ("DELETED", "b")]
    assert all(call["field_selector"] == "spec.nodeName=n1" for call in client.list_calls)
    assert all(call["all_namespaces"] for call in client.list_calls)
    # resumed from the bookmark's version, then from the relist's
    assert [call["resource_version"] for call in client.watch_calls] == ["10", "20", "31", "32"]
    assert source.synced.is_set()
