"""limit/continue paging: every page of one list is the same snapshot, even when objects
change between pages."""

from __future__ import annotations

import pytest

from kumo.client import ApiException, Client
from tests.conftest import kind_info
from tests.integration.api.test_crud import config_map

CM = kind_info("v1", "ConfigMap")


def test_pages_are_one_consistent_snapshot(client: Client, namespace: str) -> None:
    for i in range(25):
        client.create_raw(
            config_map(f"item-{i:02d}", {"v": "original"}, labels={"even": str(i % 2 == 0).lower()})
        )
    snapshot = {i["metadata"]["name"]: i for i in client.list_raw(CM)["items"]}
    assert len(snapshot) == 25

    first = client.list_raw(CM, limit=10)
    assert len(first["items"]) == 10
    assert first["metadata"]["remainingItemCount"] == 15
    token = first["metadata"]["continue"]
    version = first["metadata"]["resourceVersion"]

    # Change the world between pages: delete, update and add in the pages still to come.
    client.delete_raw(CM, "item-12")
    client.patch_raw(CM, "item-15", {"data": {"v": "changed"}})
    client.create_raw(config_map("item-17a"))
    client.delete_raw(CM, "item-03")  # already returned
    client.create_raw(config_map("item-99"))

    pages = [first]
    while token:
        page = client.list_raw(CM, limit=10, continue_token=token)
        assert page["metadata"]["resourceVersion"] == version
        pages.append(page)
        token = page["metadata"].get("continue")
    assert [len(p["items"]) for p in pages] == [10, 10, 5]
    seen = [i for p in pages for i in p["items"]]
    assert [i["metadata"]["name"] for i in seen] == sorted(snapshot)
    assert {i["metadata"]["name"]: i for i in seen} == snapshot

    # A new list sees the changes.
    now = {i["metadata"]["name"]: i for i in client.list_raw(CM)["items"]}
    assert "item-12" not in now and "item-03" not in now
    assert {"item-17a", "item-99"} <= set(now)
    assert now["item-15"]["data"] == {"v": "changed"}


def test_paging_with_a_label_selector(client: Client, namespace: str) -> None:
    for i in range(12):
        client.create_raw(config_map(f"sel-{i:02d}", labels={"even": str(i % 2 == 0).lower()}))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = client.list_raw(CM, limit=4, label_selector="even=true", continue_token=token)
        pages += 1
        names.extend(i["metadata"]["name"] for i in page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
        client.create_raw(config_map(f"sel-late-{pages}", labels={"even": "true"}))
    assert names == [f"sel-{i:02d}" for i in range(0, 12, 2)]


def test_list_all_pages_with_the_client(client: Client, namespace: str) -> None:
    for i in range(7):
        client.create_raw(config_map(f"all-{i}"))
    items, version = client.list_all_raw(CM)
    assert [i["metadata"]["name"] for i in items] == [f"all-{i}" for i in range(7)]
    assert int(version) > 0


def test_a_continue_token_from_another_list_is_refused(client: Client, namespace: str) -> None:
    for i in range(3):
        client.create_raw(config_map(f"tok-{i}"))
    token = client.list_raw(CM, limit=1)["metadata"]["continue"]
    secrets = kind_info("v1", "Secret")
    with pytest.raises(ApiException) as caught:
        client.list_raw(secrets, limit=1, continue_token=token)
    assert caught.value.code == 400
    with pytest.raises(ApiException) as garbage:
        client.list_raw(CM, limit=1, continue_token="not-a-token")
    assert garbage.value.code == 400
    assert "continue" in garbage.value.message


def test_limit_zero_means_everything(client: Client, namespace: str) -> None:
    for i in range(3):
        client.create_raw(config_map(f"z-{i}"))
    page = client.request("GET", CM.path(namespace), params={"limit": "0"}).json()
    assert len(page["items"]) == 3
    assert "continue" not in page["metadata"]
