"""Pure parts of the framework: the informer's indexed cache and event diffing, the runner's
retry rules, and the namespace / service-account decisions."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from kumo.client import ApiException, AsyncClient
from kumo.model.registry import by_kind
from kumo.platform.controllers.informer import (
    OWNER_UID_INDEX,
    EventHandler,
    Indexer,
    InformerFactory,
    SharedInformer,
    by_owner_uid,
    object_key,
    split_key,
)
from kumo.platform.controllers.namespace import Remaining, conditions_for, namespaced_kinds
from kumo.platform.controllers.runner import Controller, Result
from kumo.platform.controllers.serviceaccount import needs_default_account
from kumo.platform.controllers.workqueue import ExponentialBackoff

Obj = dict[str, Any]
NO_CLIENT = cast(AsyncClient, None)  # these tests never reach the network


def cm(name: str, rv: int, namespace: str = "a", owners: tuple[str, ...] = ()) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "resourceVersion": str(rv),
        "uid": f"u-{name}",
    }
    if owners:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": o, "uid": o} for o in owners
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def test_keys() -> None:
    assert object_key(cm("x", 1, "ns")) == "ns/x"
    assert object_key({"metadata": {"name": "node-1"}}) == "node-1"
    assert split_key("ns/x") == ("ns", "x")
    assert split_key("node-1") == ("", "node-1")


def test_indexer_keeps_indexes_in_step_with_the_items() -> None:
    indexer = Indexer()
    indexer.add_index(OWNER_UID_INDEX, by_owner_uid)
    indexer.upsert("a/x", cm("x", 1, owners=("o1",)))
    indexer.upsert("b/y", cm("y", 2, "b", owners=("o1", "o2")))
    assert {o["metadata"]["name"] for o in indexer.by_index(OWNER_UID_INDEX, "o1")} == {"x", "y"}
    assert [o["metadata"]["name"] for o in indexer.list("b")] == ["y"]
    # an update that drops an owner moves the object out of that index entry
    indexer.upsert("b/y", cm("y", 3, "b", owners=("o2",)))
    assert [o["metadata"]["name"] for o in indexer.by_index(OWNER_UID_INDEX, "o1")] == ["x"]
    indexer.remove("a/x")
    assert indexer.by_index(OWNER_UID_INDEX, "o1") == []
    assert len(indexer) == 1
    # an index added later covers what is already cached
    indexer.add_index("name", lambda o: [o["metadata"]["name"]])
    assert indexer.by_index("name", "y")[0]["metadata"]["resourceVersion"] == "3"


def recording_informer() -> tuple[SharedInformer, list[tuple[str, str, str]]]:
    info = by_kind("v1", "ConfigMap")
    assert info is not None
    informer = SharedInformer(NO_CLIENT, info)
    events: list[tuple[str, str, str]] = []
    informer.add_event_handler(
        EventHandler(
            on_add=lambda o: events.append(
                ("add", o["metadata"]["name"], o["metadata"]["resourceVersion"])
            ),
            on_update=lambda old, new: events.append(
                ("update", new["metadata"]["name"], new["metadata"]["resourceVersion"])
            ),
            on_delete=lambda o: events.append(
                ("delete", o["metadata"]["name"], o["metadata"]["resourceVersion"])
            ),
        )
    )
    return informer, events


def test_a_relist_is_delivered_as_the_differences_against_the_cache() -> None:
    informer, events = recording_informer()
    informer._replace([cm("keep", 1), cm("change", 2), cm("drop", 3)], "3")
    assert informer.has_synced and informer.last_resource_version == "3"
    events.clear()
    informer._replace([cm("keep", 1), cm("change", 7), cm("new", 8)], "9")
    assert sorted(events) == [
        ("add", "new", "8"),
        ("delete", "drop", "3"),
        ("update", "change", "7"),
    ]
    assert informer.last_resource_version == "9"
    assert {o["metadata"]["name"] for o in informer.list()} == {"keep", "change", "new"}


def test_watch_events_update_the_cache_and_the_resource_version() -> None:
    informer, events = recording_informer()
    informer._replace([], "10")
    informer._apply("ADDED", cm("x", 11))
    informer._apply("MODIFIED", cm("x", 12))
    informer._apply("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "20"}})
    assert informer.last_resource_version == "20"
    assert informer.synced_to(20) and not informer.synced_to(21)
    informer._apply("DELETED", cm("x", 21))
    informer._apply("DELETED", cm("never-seen", 22))  # not cached: no handler call
    assert events == [("add", "x", "11"), ("update", "x", "12"), ("delete", "x", "21")]
    assert informer.get("a", "x") is None
    assert informer.stats.bookmarks == 1


def test_a_late_handler_sees_the_cached_objects_as_adds() -> None:
    informer, _ = recording_informer()
    informer._replace([cm("x", 1), cm("y", 2)], "2")
    late: list[str] = []
    informer.add_event_handler(EventHandler(on_add=lambda o: late.append(o["metadata"]["name"])))
    assert sorted(late) == ["x", "y"]


def test_a_failing_handler_does_not_stop_the_others() -> None:
    informer, events = recording_informer()

    def broken(obj: Obj) -> None:
        raise RuntimeError("boom")

    informer._handlers.insert(0, EventHandler(on_add=broken))
    informer._replace([cm("x", 1)], "1")
    assert events == [("add", "x", "1")]


def test_the_factory_shares_one_informer_per_kind() -> None:
    factory = InformerFactory(NO_CLIENT)
    pods = by_kind("v1", "Pod")
    assert pods is not None
    from kumo.model.core import Pod

    assert factory.informer(pods) is factory.informer(Pod)
    assert len(factory.informers) == 1


# ---- runner -----------------------------------------------------------------------------


class Scripted(Controller):
    name = "scripted"

    def setup(self) -> None:
        self.script: list[Any] = []
        self.seen: list[str] = []

    async def reconcile(self, key: str) -> Result | None:
        self.seen.append(key)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return cast(Result | None, step)


def scripted(*steps: Any) -> Scripted:
    controller = Scripted(
        NO_CLIENT, InformerFactory(NO_CLIENT), backoff=ExponentialBackoff(base=10, cap=10)
    )
    controller.script = list(steps)
    return controller


async def test_an_error_requeues_with_backoff_and_success_forgets() -> None:
    controller = scripted(RuntimeError("1"), ApiException(409, {"reason": "Conflict"}), None)
    await controller.process("k")
    assert controller.queue.num_requeues("k") == 1
    assert controller.queue.delayed == 1, "retried later, not at once"
    await controller.process("k")
    assert controller.queue.num_requeues("k") == 2
    await controller.process("k")
    assert controller.queue.num_requeues("k") == 0
    assert controller.failures == 2 and controller.reconciles == 3


async def test_requeue_after_asks_for_another_look() -> None:
    controller = scripted(Result(requeue_after=0.01))
    await controller.process("k")
    assert controller.queue.delayed == 1
    assert await asyncio.wait_for(controller.queue.get(), 1) == "k"


async def test_workers_stop_when_the_queue_shuts_down() -> None:
    controller = scripted(None, None)
    controller.queue.add("a")
    controller.queue.add("b")
    controller.queue.shut_down(drain=True)  # hand out what is queued, then stop
    await asyncio.wait_for(controller.run(), 1)
    assert sorted(controller.seen) == ["a", "b"]


# ---- namespace and service-account decisions -----------------------------------------------


def test_namespace_deletion_order_and_scope() -> None:
    kinds = [i.plural for i in namespaced_kinds()]
    assert "namespaces" not in kinds and "nodes" not in kinds and "clusterroles" not in kinds
    assert kinds.index("deployments") < kinds.index("replicasets") < kinds.index("pods")
    assert kinds[-1] == "events"


def test_namespace_conditions() -> None:
    remaining = Remaining(counts={"pods": 2}, finalizers={"example.com/x": 1})
    by_type = {c["type"]: c for c in conditions_for(remaining, "2024-01-01T00:00:00Z")}
    assert by_type["NamespaceContentRemaining"]["status"] == "True"
    assert (
        by_type["NamespaceContentRemaining"]["message"]
        == "Some resources are remaining: pods has 2 resource instances"
    )
    assert by_type["NamespaceFinalizersRemaining"]["status"] == "True"
    assert (
        "example.com/x in 1 resource instances"
        in by_type["NamespaceFinalizersRemaining"]["message"]
    )
    assert by_type["NamespaceDeletionContentFailure"]["status"] == "False"
    failing = {c["type"]: c for c in conditions_for(Remaining(failures=["x"]), "t")}
    assert failing["NamespaceDeletionContentFailure"]["status"] == "True"
    assert not Remaining(failures=["x"]).empty and Remaining().empty


@pytest.mark.parametrize(
    ("namespace", "account", "expected"),
    [
        ({"metadata": {"name": "a"}, "status": {"phase": "Active"}}, None, True),
        ({"metadata": {"name": "a"}}, None, True),
        ({"metadata": {"name": "a"}}, {"metadata": {"name": "default"}}, False),
        (
            {
                "metadata": {"name": "a", "deletionTimestamp": "t"},
                "status": {"phase": "Terminating"},
            },
            None,
            False,
        ),
        (None, None, False),
    ],
)
def test_needs_default_account(namespace: Obj | None, account: Obj | None, expected: bool) -> None:
    assert needs_default_account(namespace, account) is expected


async def test_waiting_to_read_your_own_write() -> None:
    informer, _ = recording_informer()
    early = asyncio.create_task(informer.wait_synced_to(5))
    await asyncio.sleep(0)
    informer._replace([cm("x", 3)], "4")
    await asyncio.sleep(0)
    assert not early.done(), "the list was at revision 4"
    informer._apply("MODIFIED", cm("x", 5))
    await asyncio.wait_for(early, 1)
    await asyncio.wait_for(informer.wait_synced_to(5), 1)  # already there: returns at once
    later = asyncio.create_task(informer.wait_synced_to(9))
    await asyncio.sleep(0)
    informer._apply("BOOKMARK", {"metadata": {"resourceVersion": "9"}})
    await asyncio.wait_for(later, 1)
