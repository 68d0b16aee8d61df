"""Escalation prevention, impersonation and audit records as pure logic (the integration
tests in tests/integration/auth run them through the server)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from kumo.auth.authorizer import Attributes
from kumo.auth.user import UserInfo
from kumo.model.rbac import ClusterRole, Role, RoleBinding
from kumo.model.registry import for_model
from kumo.platform.api import audit
from kumo.platform.api.access import ClusterAuthorizer, EscalationCheck
from kumo.platform.api.errors import ApiError
from kumo.platform.api.impersonation import impersonate
from tests.unit.auth.policy_source import Source

ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))
ROOT = UserInfo("root", groups=("system:masters",))


def _bind(namespace: str, kind: str, name: str, who: str = "alice") -> RoleBinding:
    return RoleBinding.model_validate(
        {
            "metadata": {"name": f"{who}-{name}", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "User", "name": who, "apiGroup": "rbac.authorization.k8s.io"}],
        }
    )


def _role_obj(namespace: str, rules: list[dict[str, Any]], name: str = "r") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _binding_obj(namespace: str, kind: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "User", "name": "bob"}],
    }


def _check(source: Source) -> EscalationCheck:
    return EscalationCheck(source, ClusterAuthorizer(source))


async def test_an_editor_may_write_roles_within_edit_but_not_beyond() -> None:
    source = Source(rbs=[_bind("ns", "ClusterRole", "admin")])
    check = _check(source)
    info = for_model(Role)
    within = _role_obj(
        "ns", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create"]}]
    )
    assert await check.admit("CREATE", info, within, None, ALICE) is None
    beyond = _role_obj("ns", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    with pytest.raises(ApiError) as refused:
        await check.admit("CREATE", info, beyond, None, ALICE)
    assert refused.value.code == 403
    assert "nodes" in refused.value.message
    # another namespace: alice holds nothing there
    with pytest.raises(ApiError):
        await check.admit("CREATE", info, _role_obj("other", within["rules"]), None, ALICE)
    # masters may do anything; an unchanged role needs nothing
    assert await check.admit("CREATE", info, beyond, None, ROOT) is None
    assert await check.admit("UPDATE", info, beyond, beyond, ALICE) is None
    # deletes are not escalations
    assert await check.admit("DELETE", info, beyond, beyond, ALICE) is None


async def test_a_wildcard_is_only_covered_by_a_wildcard() -> None:
    source = Source(rbs=[_bind("ns", "ClusterRole", "admin")])
    star = _role_obj("ns", [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}])
    with pytest.raises(ApiError):
        await _check(source).admit("CREATE", for_model(Role), star, None, ALICE)


async def test_binding_needs_the_rules_or_bind() -> None:
    info = for_model(RoleBinding)
    source = Source(rbs=[_bind("ns", "ClusterRole", "edit")])
    check = _check(source)
    assert (
        await check.admit("CREATE", info, _binding_obj("ns", "ClusterRole", "view"), None, ALICE)
        is None
    )
    with pytest.raises(ApiError):
        await check.admit("CREATE", info, _binding_obj("ns", "ClusterRole", "admin"), None, ALICE)
    with pytest.raises(ApiError) as missing:
        await check.admit("CREATE", info, _binding_obj("ns", "Role", "nosuch"), None, ALICE)
    assert missing.value.code == 404
    binder = ClusterRole.model_validate(
        {
            "metadata": {"name": "binder"},
            "rules": [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["clusterroles"],
                    "resourceNames": ["admin"],
                    "verbs": ["bind"],
                }
            ],
        }
    )
    source.roles.append(binder)
    source.rbs.append(_bind("ns", "ClusterRole", "binder"))
    assert (
        await check.admit("CREATE", info, _binding_obj("ns", "ClusterRole", "admin"), None, ALICE)
        is None
    )
    with pytest.raises(ApiError):
        await check.admit(
            "CREATE", info, _binding_obj("ns", "ClusterRole", "cluster-admin"), None, ALICE
        )


async def _allow_all(attributes: Attributes) -> None:
    return None


async def _deny_all(attributes: Attributes) -> None:
    raise ApiError(403, "Forbidden", attributes.describe())


async def test_impersonation_builds_the_user_and_checks_each_part() -> None:
    seen: list[Attributes] = []

    async def record(attributes: Attributes) -> None:
        seen.append(attributes)

    headers = Headers(
        raw=[
            (b"impersonate-user", b"system:serviceaccount:ns:robot"),
            (b"impersonate-group", b"extra"),
            (b"impersonate-extra-scopes", b"read"),
        ]
    )
    user = await impersonate(ALICE, headers, record)
    assert user.name == "system:serviceaccount:ns:robot"
    assert user.groups == (
        "extra",
        "system:serviceaccounts",
        "system:serviceaccounts:ns",
        "system:authenticated",
    )
    assert user.extra == {"scopes": ("read",)}
    assert [(a.resource, a.namespace, a.name) for a in seen] == [
        ("serviceaccounts", "ns", "robot"),
        ("groups", "", "extra"),
        ("userextras", "", "read"),
    ]
    with pytest.raises(ApiError):
        await impersonate(ALICE, Headers({"impersonate-user": "bob"}), _deny_all)
    with pytest.raises(ApiError) as no_user:
        await impersonate(ALICE, Headers({"impersonate-group": "g"}), _allow_all)
    assert no_user.value.code == 400
    anonymous = await impersonate(
        ALICE, Headers({"impersonate-user": "system:anonymous"}), _allow_all
    )
    assert anonymous.groups == ("system:unauthenticated",)


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"dryRun=All",
        "headers": [(b"user-agent", b"t/1"), (b"authorization", b"Bearer secret")],
        "client": ("10.0.0.1", 5555),
    }


def test_audit_records_writes_and_denials_only() -> None:
    event = audit.AuditEvent(
        user=ALICE,
        attributes=Attributes(user=ALICE, verb="get", resource="pods", namespace="ns", name="p"),
    )
    assert audit.record_for(_scope("GET", "/api/v1/namespaces/ns/pods/p"), event, 200) is None
    denied = audit.record_for(_scope("GET", "/api/v1/namespaces/ns/pods/p"), event, 403)
    assert denied is not None and denied["code"] == 403 and denied["name"] == "p"
    write = audit.AuditEvent(
        user=ALICE,
        attributes=Attributes(user=ALICE, verb="create", resource="secrets", namespace="ns"),
    )
    record = audit.record_for(_scope("POST", "/api/v1/namespaces/ns/secrets"), write, 201)
    assert record is not None
    assert record["requestURI"] == "/api/v1/namespaces/ns/secrets?dryRun=All"
    assert record["sourceIP"] == "10.0.0.1" and record["userAgent"] == "t/1"
    assert "secret" not in str(record).replace("secrets", "")
    # refused before anything was known about the caller
    anonymous = audit.record_for(
        _scope("DELETE", "/apis/apps/v1/namespaces/ns/deployments/d"), audit.AuditEvent(), 401
    )
    assert anonymous is not None
    assert (anonymous["user"], anonymous["verb"], anonymous["apiGroup"], anonymous["name"]) == (
        "system:anonymous",
        "delete",
        "apps",
        "d",
    )


def test_the_audit_log_rotates(tmp_path: Any) -> None:
    log = audit.AuditLog(tmp_path / "audit.log", max_bytes=200)
    for i in range(10):
        log.write({"n": i, "pad": "x" * 40})
    log.close()
    assert (tmp_path / "audit.log.1").exists()
    assert log.records == 10
    assert (tmp_path / "audit.log").stat().st_size <= 200
