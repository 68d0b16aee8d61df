"""ServiceAccount admission: the account a pod runs as, the token volume it gets, the 403 for
a missing account — against a real SQLite store."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kumo.auth.user import UserInfo
from kumo.model.base import to_wire
from kumo.model.core import Pod, ServiceAccount
from kumo.model.registry import for_model
from kumo.platform.api.errors import ApiError
from kumo.platform.api.serviceaccount_admission import (
    KUBERNETES_MOUNT_PATH,
    MOUNT_PATH,
    ROOT_CA_CONFIG_MAP,
    ServiceAccountAdmission,
    mount_token,
    should_automount,
    token_volume,
)
from kumo.platform.controllers.rootcacertpublisher import DESCRIPTION, plan
from kumo.platform.store.sqlite import SQLiteStore

Obj = dict[str, Any]
POD = for_model(Pod)
USER = UserInfo(name="tester", groups=("system:authenticated",))
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(tmp_path / "store.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_bytes(CA)
    return path


async def add_account(
    store: SQLiteStore, name: str, namespace: str = "team", **fields: Any
) -> None:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}, **fields}
    model = ServiceAccount.model_validate(body)
    model.metadata.namespace = namespace
    model.metadata.uid = f"uid-{name}"
    await store.create(f"registry/core/serviceaccounts/{namespace}/{name}", to_wire(model))


def pod(name: str = "p", namespace: str = "team", **spec: Any) -> Obj:
    raw = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [
                {"name": "app", "image": "busybox"},
                {"name": "side", "image": "busybox"},
            ],
            **spec,
        },
    }
    model = Pod.model_validate(raw)
    model.apply_defaults()
    wire = to_wire(model)
    if "serviceAccountName" not in spec:
        del wire["spec"]["serviceAccountName"]  # as a client would send it
    return wire


def token_volumes(obj: Obj) -> list[Obj]:
    return [
        v for v in obj["spec"].get("volumes") or [] if str(v["name"]).startswith("kube-api-access-")
    ]


async def test_default_account_token_volume_and_mounts(store: SQLiteStore, ca_file: Path) -> None:
    await add_account(store, "default")
    plugin = ServiceAccountAdmission(store, ca_file)
    obj = pod()
    assert await plugin.admit("CREATE", POD, obj, None, USER) is None
    assert obj["spec"]["serviceAccountName"] == "default"
    [volume] = token_volumes(obj)
    name = volume["name"]
    assert len(name) == len("kube-api-access-") + 5
    assert volume == token_volume(name)
    assert volume["projected"] == {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    for container in [*obj["spec"]["initContainers"], *obj["spec"]["containers"]]:
        assert container["volumeMounts"] == [
            {"name": name, "readOnly": True, "mountPath": MOUNT_PATH},
            {"name": name, "readOnly": True, "mountPath": KUBERNETES_MOUNT_PATH},
        ]
    # The pod as mutated is a valid pod.
    model = Pod.model_validate(obj)
    assert model.validate_semantics() == []
    # The namespace got the CA ConfigMap the volume reads.
    entry = store.get_entry(f"registry/core/configmaps/team/{ROOT_CA_CONFIG_MAP}")
    assert entry is not None
    assert entry.obj["data"] == {"ca.crt": CA.decode()}
    assert plan({"metadata": {"name": "team"}}, entry.obj, CA.decode()) is None


async def test_missing_account_is_forbidden(store: SQLiteStore) -> None:
    plugin = ServiceAccountAdmission(store)
    obj = pod("x", serviceAccountName="ghost")
    with pytest.raises(ApiError) as caught:
        await plugin.admit("CREATE", POD, obj, None, USER)
    assert caught.value.code == 403
    assert caught.value.reason == "Forbidden"
    assert caught.value.message == (
        'pods "x" is forbidden: error looking up service account team/ghost:'
        ' serviceaccount "ghost" not found'
    )


async def test_missing_default_account_is_created(store: SQLiteStore) -> None:
    plugin = ServiceAccountAdmission(store)
    obj = pod()
    await plugin.admit("CREATE", POD, obj, None, USER)
    entry = store.get_entry("registry/core/serviceaccounts/team/default")
    assert entry is not None and entry.obj["metadata"]["uid"]
    # No CA file known: no ConfigMap is invented.
    assert store.get_entry(f"registry/core/configmaps/team/{ROOT_CA_CONFIG_MAP}") is None


@pytest.mark.parametrize(
    ("pod_says", "account_says", "mounted"),
    [
        (None, None, True),
        (False, None, False),
        (None, False, False),
        (True, False, True),
        (False, True, False),
    ],
)
async def test_automount_pod_wins_over_account(
    store: SQLiteStore, pod_says: bool | None, account_says: bool | None, mounted: bool
) -> None:
    fields = {} if account_says is None else {"automountServiceAccountToken": account_says}
    await add_account(store, "robot", **fields)
    spec: Obj = {"serviceAccountName": "robot"}
    if pod_says is not None:
        spec["automountServiceAccountToken"] = pod_says
    obj = pod(**spec)
    await ServiceAccountAdmission(store).admit("CREATE", POD, obj, None, USER)
    assert bool(token_volumes(obj)) is mounted
    assert should_automount(fields, spec) is mounted
    if not mounted:
        for container in obj["spec"]["containers"]:
            assert not container.get("volumeMounts")


async def test_only_pod_creates_are_touched(store: SQLiteStore) -> None:
    plugin = ServiceAccountAdmission(store)
    obj = pod(serviceAccountName="ghost")
    before = copy.deepcopy(obj)
    assert await plugin.admit("UPDATE", POD, obj, copy.deepcopy(obj), USER) is None
    assert obj == before
    config_map = {"metadata": {"name": "c", "namespace": "team"}, "data": {}}
    await plugin.admit("CREATE", for_model(ServiceAccount), config_map, None, USER)
    assert config_map == {"metadata": {"name": "c", "namespace": "team"}, "data": {}}


def test_existing_volume_and_own_mounts_are_kept() -> None:
    spec: Obj = {
        "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
        "containers": [
            {
                "name": "app",
                "image": "busybox",
                "volumeMounts": [
                    {"name": "mine", "mountPath": KUBERNETES_MOUNT_PATH + "/"},
                ],
            }
        ],
    }
    assert mount_token(spec) == "kube-api-access-abcde"
    assert len(spec["volumes"]) == 1  # a copied spec keeps its volume
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "mine", "mountPath": KUBERNETES_MOUNT_PATH + "/"},
        {"name": "kube-api-access-abcde", "readOnly": True, "mountPath": MOUNT_PATH},
    ]
    # Idempotent: a second pass adds nothing.
    again = copy.deepcopy(spec)
    mount_token(again)
    assert again == spec


def test_root_ca_publisher_plan() -> None:
    namespace = {"metadata": {"name": "team"}, "status": {"phase": "Active"}}
    good = {
        "metadata": {"annotations": {"kubernetes.io/description": DESCRIPTION}},
        "data": {"ca.crt": "PEM"},
    }
    assert plan(namespace, None, "PEM") == "create"
    assert plan(namespace, good, "PEM") is None
    assert plan(namespace, {**good, "data": {"ca.crt": "old"}}, "PEM") == "update"
    assert plan(namespace, {**good, "data": {"ca.crt": "PEM", "extra": "x"}}, "PEM") == "update"
    assert plan(namespace, {"data": {"ca.crt": "PEM"}}, "PEM") == "update"
    assert plan(None, None, "PEM") is None
    terminating = {"metadata": {"name": "team"}, "status": {"phase": "Terminating"}}
    assert plan(terminating, None, "PEM") is None
