"""Streaming lists (Kubernetes' WatchList) against a real API server: a watch with
``sendInitialEvents=true`` sends the current state as ADDED events, then a BOOKMARK
annotated ``k8s.io/initial-events-end``, then live events; the ListOptions rules that go
with it are answered 422 Invalid like Kubernetes does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kumo.client import Client
from tests.conftest import ApiServerProcess, kind_info

CM = kind_info("v1", "ConfigMap")
END = "k8s.io/initial-events-end"
STREAMING = {
    "watch": "1",
    "sendInitialEvents": "true",
    "allowWatchBookmarks": "true",
    "resourceVersionMatch": "NotOlderThan",
}
Event = dict[str, Any]


@pytest.fixture
def http(api_server: ApiServerProcess) -> Iterator[httpx.Client]:
    with api_server.http() as raw:
        yield raw


def config_map(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": {"k": "v"},
    }


def collection(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def events(lines: Iterator[str]) -> Iterator[Event]:
    for line in lines:
        if line.strip():
            event: Event = json.loads(line)
            yield event


def names(received: list[Event]) -> list[str]:
    return [e["object"]["metadata"]["name"] for e in received]


def read_to_end(http: httpx.Client, namespace: str, params: dict[str, str]) -> list[Event]:
    """Every event of a watch the server ends after a second."""
    with http.stream("GET", collection(namespace), params={**params, "timeoutSeconds": "1"}) as r:
        assert r.status_code == 200, r.read().decode()
        return list(events(r.iter_lines()))


def test_initial_events_then_the_end_bookmark_then_live_events(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    mine = {"set": "mine"}  # only this test's objects (a controller may add others)
    created = [client.create_raw(config_map(f"cm-{i}", mine)) for i in range(3)]
    latest = max(int(c["metadata"]["resourceVersion"]) for c in created)
    params = {**STREAMING, "labelSelector": "set=mine", "timeoutSeconds": "20"}
    with http.stream("GET", collection(namespace), params=params) as response:
        assert response.status_code == 200, response.read().decode()
        stream = events(response.iter_lines())
        initial = [next(stream) for _ in range(3)]
        assert [e["type"] for e in initial] == ["ADDED"] * 3
        assert sorted(names(initial)) == ["cm-0", "cm-1", "cm-2"]
        assert {e["object"]["metadata"]["uid"] for e in initial} == {
            c["metadata"]["uid"] for c in created
        }

        bookmark = next(stream)
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["kind"] == "ConfigMap"
        assert bookmark["object"]["apiVersion"] == "v1"
        assert bookmark["object"]["metadata"]["annotations"] == {END: "true"}
        synced = int(bookmark["object"]["metadata"]["resourceVersion"])
        assert synced >= latest

        later = client.create_raw(config_map("cm-late", mine))
        changed = client.patch_raw(CM, "cm-0", {"data": {"k": "changed"}})
        live = [next(stream), next(stream)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in live] == [
        ("ADDED", "cm-late"),
        ("MODIFIED", "cm-0"),
    ]
    assert live[0]["object"]["metadata"]["resourceVersion"] == later["metadata"]["resourceVersion"]
    assert (
        live[1]["object"]["metadata"]["resourceVersion"] == (changed["metadata"]["resourceVersion"])
    )
    assert int(later["metadata"]["resourceVersion"]) > synced


def test_initial_events_honour_selectors_and_an_older_resource_version(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    first = client.create_raw(config_map("blue-1", {"color": "blue"}))
    client.create_raw(config_map("red-1", {"color": "red"}))
    client.create_raw(config_map("blue-2", {"color": "blue"}))
    client.delete_raw(CM, "blue-1")
    # NotOlderThan an old revision: the current state (blue-1 is gone), not the old one
    params = {
        **STREAMING,
        "labelSelector": "color=blue",
        "resourceVersion": first["metadata"]["resourceVersion"],
    }
    received = read_to_end(http, namespace, params)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in received[:1]] == [
        ("ADDED", "blue-2")
    ]
    assert received[1]["type"] == "BOOKMARK"
    assert received[1]["object"]["metadata"]["annotations"] == {END: "true"}
    assert all(e["type"] == "BOOKMARK" for e in received[1:])


def test_a_single_object_watch_streams_it_then_the_bookmark(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    client.create_raw(config_map("one"))
    client.create_raw(config_map("two"))
    received = read_to_end(http, namespace, {**STREAMING, "fieldSelector": "metadata.name=two"})
    assert [e["type"] for e in received[:2]] == ["ADDED", "BOOKMARK"]
    assert names(received[:1]) == ["two"]


def test_without_bookmarks_the_initial_events_come_without_the_end_marker(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    """Kubernetes accepts sendInitialEvents without allowWatchBookmarks; it only sends the
    end marker to a client that allows bookmarks."""
    client.create_raw(config_map("solo"))
    params = {k: v for k, v in STREAMING.items() if k != "allowWatchBookmarks"}
    received = read_to_end(http, namespace, params)
    assert {e["type"] for e in received} == {"ADDED"}
    assert "solo" in names(received)


def test_send_initial_events_false_streams_changes_only(
    client: Client, http: httpx.Client, namespace: str
) -> None:
    old = client.create_raw(config_map("old"))
    params = {**STREAMING, "sendInitialEvents": "false", "timeoutSeconds": "20"}
    with http.stream("GET", collection(namespace), params=params) as response:
        assert response.status_code == 200, response.read().decode()
        stream = events(response.iter_lines())
        client.create_raw(config_map("new"))
        first = next(stream)
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "new")

    # from a given resourceVersion: the changes after it, as a plain watch
    since = read_to_end(
        http,
        namespace,
        {
            **STREAMING,
            "sendInitialEvents": "false",
            "resourceVersion": old["metadata"]["resourceVersion"],
        },
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in since] == [("ADDED", "new")]


@pytest.mark.parametrize(
    ("params", "field", "problem"),
    [
        (
            {"watch": "1", "sendInitialEvents": "true", "allowWatchBookmarks": "true"},
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ),
        (
            {"watch": "1", "resourceVersionMatch": "NotOlderThan"},
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ),
        (
            {**STREAMING, "resourceVersionMatch": "Exact", "resourceVersion": "1"},
            "resourceVersionMatch",
            'Unsupported value: "Exact"',
        ),
        (
            {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"},
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ),
    ],
)
def test_invalid_list_options_are_refused(
    http: httpx.Client, namespace: str, params: dict[str, str], field: str, problem: str
) -> None:
    response = http.get(collection(namespace), params=params)
    assert response.status_code == 422, response.text
    status = response.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('ListOptions.meta.k8s.io "" is invalid')
    assert problem in status["message"]
    assert status["details"]["kind"] == "ListOptions"
    assert status["details"]["group"] == "meta.k8s.io"
    assert field in {c["field"] for c in status["details"]["causes"]}


def test_a_streaming_list_from_the_future_times_out_like_a_watch(
    http: httpx.Client, namespace: str
) -> None:
    current = int(http.get(collection(namespace)).json()["metadata"]["resourceVersion"])
    response = http.get(
        collection(namespace), params={**STREAMING, "resourceVersion": str(current + 1000)}
    )
    assert response.status_code == 504, response.text
    assert "Too large resource version" in response.json()["message"]
