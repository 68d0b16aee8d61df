"""Watches: resumable, exactly once and in order; 410 Gone after compaction; selector
transitions; bookmarks; initial state."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient, Client, RawEvent
from tests.conftest import ApiServerFactory, ApiServerProcess, kind_info
from tests.integration.api.test_crud import config_map

CM = kind_info("v1", "ConfigMap")

Event = tuple[str, str, str]  # (type, name, resourceVersion)


def event_of(event: RawEvent) -> Event:
    meta = event.object.get("metadata", {})
    return (event.type, str(meta.get("name")), str(meta.get("resourceVersion")))


async def take(
    stream: AsyncIterator[RawEvent], count: int, within: float = 10.0, skip_bookmarks: bool = True
) -> list[RawEvent]:
    """The next ``count`` events of a watch (bookmarks skipped unless asked for)."""
    out: list[RawEvent] = []
    async with asyncio.timeout(within):
        async for event in stream:
            if skip_bookmarks and event.type == "BOOKMARK":
                continue
            out.append(event)
            if len(out) == count:
                break
    return out


async def nothing_more(stream: AsyncIterator[RawEvent], wait: float = 1.0) -> list[RawEvent]:
    """Events that arrive within ``wait`` seconds (expected: none)."""
    extra: list[RawEvent] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            async for event in stream:
                if event.type != "BOOKMARK":
                    extra.append(event)
    return extra


async def mixed_changes(client: AsyncClient, count: int, seed: int) -> list[Event]:
    """``count`` random creates, updates and deletes; the events a watcher must see."""
    rng = random.Random(seed)
    alive: dict[str, dict[str, Any]] = {}
    expected: list[Event] = []
    serial = 0
    for _ in range(count):
        choice = rng.random()
        if not alive or choice < 0.4:
            serial += 1
            name = f"obj-{serial:03d}"
            created = await client.create_raw(config_map(name, {"n": "0"}))
            alive[name] = created
            expected.append(("ADDED", name, created["metadata"]["resourceVersion"]))
        elif choice < 0.8:
            name = rng.choice(sorted(alive))
            current = alive[name]
            current = await client.replace_raw(
                {**current, "data": {"n": str(int(current["data"]["n"]) + 1)}}
            )
            alive[name] = current
            expected.append(("MODIFIED", name, current["metadata"]["resourceVersion"]))
        else:
            name = rng.choice(sorted(alive))
            deleted = await client.delete_raw(CM, name)
            del alive[name]
            expected.append(("DELETED", name, deleted["metadata"]["resourceVersion"]))
    return expected


async def test_resumed_watch_sees_every_change_once_in_order(
    async_client: AsyncClient, namespace: str
) -> None:
    start = (await async_client.list_raw(CM))["metadata"]["resourceVersion"]
    expected = await mixed_changes(async_client, 80, seed=1)
    assert len({rv for _, _, rv in expected}) == len(expected)

    seen: list[Event] = []
    resume_from = start
    for chunk in (1, 7, 13, 20, 39):  # five watches, each resuming where the last stopped
        stream = async_client.watch_raw(CM, resource_version=resume_from)
        try:
            events = await take(stream, chunk)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        seen.extend(event_of(e) for e in events)
        resume_from = seen[-1][2]
    assert seen == expected

    # Resuming from the last event sees nothing more.
    stream = async_client.watch_raw(CM, resource_version=resume_from, timeout_seconds=2)
    assert await nothing_more(stream, 3.0) == []


async def test_live_watch_and_resumption_while_writes_continue(
    async_client: AsyncClient, namespace: str
) -> None:
    start = (await async_client.list_raw(CM))["metadata"]["resourceVersion"]
    writer = asyncio.create_task(mixed_changes(async_client, 60, seed=2))
    seen: list[Event] = []
    resume_from = start
    try:
        while len(seen) < 60:
            stream = async_client.watch_raw(CM, resource_version=resume_from)
            try:
                events = await take(stream, min(11, 60 - len(seen)), within=20)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            seen.extend(event_of(e) for e in events)
            resume_from = seen[-1][2]
    finally:
        expected = await writer
    assert seen == expected
    revisions = [int(rv) for _, _, rv in seen]
    assert revisions == sorted(revisions)


async def test_watch_objects_are_the_full_objects(
    async_client: AsyncClient, namespace: str
) -> None:
    start = (await async_client.list_raw(CM))["metadata"]["resourceVersion"]
    created = await async_client.create_raw(config_map("full", {"a": "1"}, labels={"x": "y"}))
    stream = async_client.watch_raw(CM, resource_version=start)
    try:
        (event,) = await take(stream, 1)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert event.type == "ADDED"
    assert event.object == created


async def test_watch_without_a_resource_version_starts_with_the_current_state(
    async_client: AsyncClient, namespace: str
) -> None:
    for name in ("a", "b"):
        await async_client.create_raw(config_map(name))
    stream = async_client.watch_raw(CM)
    try:
        initial = await take(stream, 2)
        assert sorted((e.type, e.object["metadata"]["name"]) for e in initial) == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]
        created = await async_client.create_raw(config_map("c"))
        (live,) = await take(stream, 1)
        assert event_of(live) == ("ADDED", "c", created["metadata"]["resourceVersion"])
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_label_selector_transitions(async_client: AsyncClient, namespace: str) -> None:
    start = (await async_client.list_raw(CM))["metadata"]["resourceVersion"]
    obj = await async_client.create_raw(config_map("moving", labels={"app": "web"}))
    obj = await async_client.patch_raw(CM, "moving", {"data": {"step": "1"}})
    obj = await async_client.patch_raw(CM, "moving", {"metadata": {"labels": {"app": "api"}}})
    left_rv = obj["metadata"]["resourceVersion"]
    await async_client.patch_raw(CM, "moving", {"data": {"step": "2"}})  # unseen: not matching
    await async_client.create_raw(config_map("never", labels={"app": "api"}))  # unseen
    obj = await async_client.patch_raw(CM, "moving", {"metadata": {"labels": {"app": "web"}}})
    back_rv = obj["metadata"]["resourceVersion"]
    deleted = await async_client.delete_raw(CM, "moving")

    stream = async_client.watch_raw(CM, resource_version=start, label_selector="app=web")
    try:
        events = await take(stream, 5)
        assert await nothing_more(stream, 1.0) == []
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "moving"),
        ("MODIFIED", "moving"),
        ("DELETED", "moving"),  # stopped matching the selector
        ("ADDED", "moving"),  # matches again
        ("DELETED", "moving"),
    ]
    assert events[2].object["metadata"]["resourceVersion"] == left_rv
    assert events[3].object["metadata"]["resourceVersion"] == back_rv
    assert events[4].object["metadata"]["resourceVersion"] == deleted["metadata"]["resourceVersion"]


async def test_field_selector_watch(async_client: AsyncClient, namespace: str) -> None:
    start = (await async_client.list_raw(CM))["metadata"]["resourceVersion"]
    await async_client.create_raw(config_map("other"))
    mine = await async_client.create_raw(config_map("mine"))
    stream = async_client.watch_raw(CM, resource_version=start, field_selector="metadata.name=mine")
    try:
        (event,) = await take(stream, 1)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert event_of(event) == ("ADDED", "mine", mine["metadata"]["resourceVersion"])


async def test_watch_ends_after_timeout_seconds(async_client: AsyncClient, namespace: str) -> None:
    started = time.monotonic()
    events = [e async for e in async_client.watch_raw(CM, resource_version="1", timeout_seconds=1)]
    assert time.monotonic() - started < 10
    assert all(e.object["metadata"]["namespace"] == namespace for e in events)


async def test_watch_from_the_future_is_refused(async_client: AsyncClient, namespace: str) -> None:
    current = int((await async_client.list_raw(CM))["metadata"]["resourceVersion"])
    with pytest.raises(ApiException) as caught:
        await take(async_client.watch_raw(CM, resource_version=str(current + 1000)), 1)
    assert caught.value.code == 504
    assert "Too large resource version" in caught.value.message


# ---- bookmarks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bookmark_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ApiServerProcess(
        tmp_path_factory.mktemp("bookmarks") / "data", ("--bookmark-interval", "0.3")
    )
    server.start()
    yield server
    server.stop()


async def test_bookmarks_when_asked_for(bookmark_server: ApiServerProcess) -> None:
    async with AsyncClient(bookmark_server.client_config()) as client:
        created = await client.create_raw(config_map("bm"))
        rv = int(created["metadata"]["resourceVersion"])
        stream = client.watch_raw(CM, resource_version=str(rv), bookmarks=True)
        try:
            (bookmark,) = await take(stream, 1, skip_bookmarks=False)
            assert bookmark.type == "BOOKMARK"
            assert bookmark.object["kind"] == "ConfigMap"
            assert int(bookmark.object["metadata"]["resourceVersion"]) >= rv
            changed = await client.patch_raw(CM, "bm", {"data": {"x": "1"}})
            events = await take(stream, 3, skip_bookmarks=False)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        assert event_of(events[0]) == ("MODIFIED", "bm", changed["metadata"]["resourceVersion"])
        later = [e for e in events[1:] if e.type == "BOOKMARK"]
        assert later
        assert all(
            int(e.object["metadata"]["resourceVersion"])
            >= int(changed["metadata"]["resourceVersion"])
            for e in later
        )

        # Without allowWatchBookmarks there are none.
        quiet = [e async for e in client.watch_raw(CM, resource_version=str(rv), timeout_seconds=1)]
        assert [e.type for e in quiet] == ["MODIFIED"]


# ---- compaction ------------------------------------------------------------------------------


def compacted_revision(server: ApiServerProcess) -> int:
    with server.http() as http:
        text = http.get("/metrics").text
    match = re.search(r"^kumo_store_compacted_revision (\S+)$", text, re.MULTILINE)
    assert match, text[:500]
    return int(float(match.group(1)))


async def test_compacted_revision_is_gone(api_server_factory: ApiServerFactory) -> None:
    server = api_server_factory.start("--compaction-interval", "0.5")
    async with AsyncClient(server.client_config()) as client:
        first = await client.create_raw(config_map("old"))
        old_rv = first["metadata"]["resourceVersion"]
        for i in range(3):
            await client.create_raw(config_map(f"new-{i}"))
        page = await client.list_raw(CM, limit=1)
        page_rv = int(page["metadata"]["resourceVersion"])
        deadline = time.monotonic() + 15
        while compacted_revision(server) <= page_rv:
            assert time.monotonic() < deadline, "the store never compacted"
            await client.create_raw(config_map(f"tick-{time.monotonic_ns()}"))
            await asyncio.sleep(0.2)

        with pytest.raises(ApiException) as caught:
            await take(client.watch_raw(CM, resource_version=old_rv), 1)
        assert caught.value.code == 410
        assert caught.value.status["kind"] == "Status"
        assert caught.value.status["reason"] == "Expired"
        assert "too old resource version" in caught.value.message

        token = page["metadata"]["continue"]
        with pytest.raises(ApiException) as expired:
            await client.list_raw(CM, continue_token=token, limit=1)
        assert expired.value.code == 410

        with pytest.raises(ApiException) as exact:
            await client.request(
                "GET",
                CM.path("default"),
                params={"resourceVersion": old_rv, "resourceVersionMatch": "Exact"},
            )
        assert exact.value.code == 410

        # A fresh watch from now works.
        now = (await client.list_raw(CM))["metadata"]["resourceVersion"]
        stream = client.watch_raw(CM, resource_version=now)
        try:
            created = await client.create_raw(config_map("after"))
            (event,) = await take(stream, 1)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        assert event_of(event) == ("ADDED", "after", created["metadata"]["resourceVersion"])


def test_blocking_client_watch(client: Client, namespace: str) -> None:
    start = client.list_raw(CM)["metadata"]["resourceVersion"]
    created = client.create_raw(config_map("sync"))
    events = list(client.watch_raw(CM, resource_version=start, timeout_seconds=1))
    assert [(e.type, e.object["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", created["metadata"]["resourceVersion"])
    ]
