"""GatewayRestriction: which Function changes the gateway may make (pure logic)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from kumo.auth.user import GATEWAY_USER, UserInfo
from kumo.model.functions import ACTIVATION_ANNOTATION, Function
from kumo.model.registry import for_model
from kumo.platform.api.errors import ApiError
from kumo.platform.api.gatewayrestriction import GatewayRestriction, changes_beyond_activation

FUNCTION = for_model(Function)
GATEWAY = UserInfo(GATEWAY_USER)
STORED: dict[str, Any] = {
    "apiVersion": "kumo.dev/v1",
    "kind": "Function",
    "metadata": {
        "name": "hello",
        "namespace": "team",
        "resourceVersion": "7",
        "generation": 1,
        "labels": {"app": "hello"},
        "annotations": {"note": "keep"},
    },
    "spec": {"image": "busybox"},
}


def changed(**edits: Any) -> dict[str, Any]:
    obj = copy.deepcopy(STORED)
    for path, value in edits.items():
        where = obj
        *parents, last = path.split("__")
        for part in parents:
            where = where.setdefault(part, {})
        where[last] = value
    return obj


def admit(obj: dict[str, Any], user: UserInfo = GATEWAY, operation: str = "UPDATE") -> None:
    asyncio.run(GatewayRestriction().admit(operation, FUNCTION, obj, STORED, user))


def test_setting_the_activation_annotation_is_allowed() -> None:
    obj = changed(metadata__annotations={"note": "keep", ACTIVATION_ANNOTATION: "now"})
    obj["metadata"]["resourceVersion"] = "8"
    assert changes_beyond_activation(obj, STORED) == []
    admit(obj)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"spec__image": "evil"}, "spec"),
        ({"metadata__labels": {"app": "other"}}, "metadata.labels"),
        ({"metadata__annotations": {"note": "changed"}}, "metadata.annotations"),
        ({"metadata__finalizers": ["x"]}, "metadata.finalizers"),
        ({"metadata__ownerReferences": [{"uid": "u"}]}, "metadata.ownerReferences"),
    ],
)
def test_any_other_change_is_refused_naming_it(edit: dict[str, Any], named: str) -> None:
    with pytest.raises(ApiError) as refused:
        admit(changed(**edit))
    assert refused.value.code == 403
    assert named in refused.value.message and GATEWAY_USER in refused.value.message


def test_the_gateway_creates_no_function() -> None:
    with pytest.raises(ApiError):
        admit(copy.deepcopy(STORED), operation="CREATE")


def test_other_users_are_left_to_rbac() -> None:
    admit(changed(spec__image="other"), user=UserInfo("alice"))
