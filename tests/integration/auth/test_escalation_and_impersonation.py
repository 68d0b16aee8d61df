"""No privilege escalation through RBAC objects (unless ``escalate`` / ``bind``), and
impersonation headers checked against the ``impersonate`` verb."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import (
    RBAC,
    admin_create,
    binding,
    cluster_role,
    grant,
    mint_token,
    role,
    user,
)

RBAC_WRITER = [
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["create", "update", "patch", "get"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
]
GET_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
DELETE_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]


def _writer(api_server: ApiServerProcess, namespace: str) -> tuple[str, str]:
    name = unique_name("lead")
    _, token = mint_token(api_server, name, ["leads"])
    grant(api_server, namespace, user(name), RBAC_WRITER, "rbac-writer")
    return name, token


def _post(api_server: ApiServerProcess, token: str, path: str, obj: dict[str, Any]) -> Any:
    with api_server.http(token=token) as http:
        return http.post(path, json=obj)


def test_roles_may_only_hold_rules_the_writer_holds(
    api_server: ApiServerProcess, namespace: str
) -> None:
    name, token = _writer(api_server, namespace)
    roles = f"{RBAC}/namespaces/{namespace}/roles"
    assert _post(api_server, token, roles, role(namespace, "readers", GET_PODS)).status_code == 201
    denied = _post(api_server, token, roles, role(namespace, "deleters", DELETE_PODS))
    assert denied.status_code == 403
    message = denied.json()["message"]
    assert f'user "{name}"' in message
    assert "attempting to grant RBAC permissions not currently held" in message
    assert "delete" in message
    # widening an existing role is the same escalation
    with api_server.http(token=token) as http:
        current = http.get(f"{roles}/readers").json()
        current["rules"] = GET_PODS + DELETE_PODS
        assert http.put(f"{roles}/readers", json=current).status_code == 403
        # a change that keeps the rules is fine
        current["rules"] = GET_PODS
        current["metadata"]["labels"] = {"team": "a"}
        assert http.put(f"{roles}/readers", json=current).status_code == 200
    # with escalate on roles, the writer may grant more than it holds
    grant(
        api_server,
        namespace,
        user(name),
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles"],
                "verbs": ["escalate"],
            }
        ],
        "escalator",
    )
    allowed = _post(api_server, token, roles, role(namespace, "deleters", DELETE_PODS))
    assert allowed.status_code == 201, allowed.text


def test_bindings_may_only_grant_what_the_writer_holds(
    api_server: ApiServerProcess, namespace: str
) -> None:
    name, token = _writer(api_server, namespace)
    bindings = f"{RBAC}/namespaces/{namespace}/rolebindings"
    friend = user(unique_name("friend"))
    admin_create(
        api_server, f"{RBAC}/namespaces/{namespace}/roles", role(namespace, "readers", GET_PODS)
    )
    # a role whose rules the writer holds can be handed on
    ok = _post(api_server, token, bindings, binding("r", "Role", "readers", [friend], namespace))
    assert ok.status_code == 201, ok.text
    # "edit" holds far more than the writer
    denied = _post(
        api_server, token, bindings, binding("e", "ClusterRole", "edit", [friend], namespace)
    )
    assert denied.status_code == 403
    assert "not currently held" in denied.json()["message"]
    # nor may it bind itself to more
    self_grant = _post(
        api_server, token, bindings, binding("me", "ClusterRole", "admin", [user(name)], namespace)
    )
    assert self_grant.status_code == 403
    # with bind on exactly that ClusterRole, it may
    grant(
        api_server,
        namespace,
        user(name),
        [
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "resourceNames": ["edit"],
                "verbs": ["bind"],
            }
        ],
        "binder",
    )
    bound = _post(
        api_server, token, bindings, binding("e", "ClusterRole", "edit", [friend], namespace)
    )
    assert bound.status_code == 201, bound.text
    still_denied = _post(
        api_server, token, bindings, binding("a", "ClusterRole", "admin", [friend], namespace)
    )
    assert still_denied.status_code == 403


def test_cluster_roles_need_the_rules_cluster_wide(
    api_server: ApiServerProcess, namespace: str
) -> None:
    # admin of a namespace (the "admin" ClusterRole bound there) cannot make ClusterRoles at all,
    # and a user allowed to create ClusterRoles cannot put rules in them it lacks cluster-wide
    name = unique_name("crwriter")
    _, token = mint_token(api_server, name)
    writer = unique_name("cr-writer")
    admin_create(
        api_server,
        f"{RBAC}/clusterroles",
        cluster_role(
            writer,
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["clusterroles"],
                    "verbs": ["create"],
                },
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            ],
        ),
    )
    admin_create(
        api_server,
        f"{RBAC}/clusterrolebindings",
        binding(writer, "ClusterRole", writer, [user(name)]),
    )
    grant(
        api_server,
        namespace,
        user(name),
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        "ns-secrets",
    )
    ok = _post(
        api_server,
        token,
        f"{RBAC}/clusterroles",
        cluster_role(
            unique_name("cm"), [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
        ),
    )
    assert ok.status_code == 201, ok.text
    # get secrets is held only in one namespace, not cluster-wide
    denied = _post(
        api_server,
        token,
        f"{RBAC}/clusterroles",
        cluster_role(
            unique_name("sec"), [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
        ),
    )
    assert denied.status_code == 403
    aggregated = _post(
        api_server,
        token,
        f"{RBAC}/clusterroles",
        {
            **cluster_role(unique_name("agg"), []),
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]},
        },
    )
    assert aggregated.status_code == 403
    assert "aggregationRule" in aggregated.json()["message"]


# ---- impersonation ----------------------------------------------------------------------------


def _whoami(
    api_server: ApiServerProcess, token: str, headers: dict[str, str] | list[tuple[str, str]]
) -> Any:
    with api_server.http(token=token) as http:
        return http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            headers=headers,
        )


def test_admin_can_act_as_a_user_and_gets_exactly_their_rights(
    api_server: ApiServerProcess, namespace: str
) -> None:
    alice = unique_name("alice")
    grant(api_server, namespace, user(alice), GET_PODS, "alice-pods")
    review = _whoami(
        api_server, api_server.token, [("Impersonate-User", alice), ("Impersonate-Group", "devs")]
    )
    assert review.status_code == 201, review.text
    info = review.json()["status"]["userInfo"]
    assert info["username"] == alice
    assert info["groups"] == ["devs", "system:authenticated"]
    with api_server.http() as http:
        headers = {"Impersonate-User": alice}
        assert http.get(f"/api/v1/namespaces/{namespace}/pods", headers=headers).status_code == 200
        assert (
            http.get(f"/api/v1/namespaces/{namespace}/secrets", headers=headers).status_code == 403
        )
        assert http.get("/api/v1/namespaces/default/pods", headers=headers).status_code == 403


def test_impersonation_needs_the_impersonate_verb(
    api_server: ApiServerProcess, namespace: str
) -> None:
    carol = unique_name("carol")
    _, token = mint_token(api_server, carol)
    target, other = unique_name("alice"), unique_name("dave")
    # no impersonate at all
    denied = _whoami(api_server, token, {"Impersonate-User": "admin"})
    assert denied.status_code == 403
    assert 'cannot impersonate resource "users"' in denied.json()["message"]
    # impersonate one named user only
    rule_name = unique_name("impersonate-alice")
    admin_create(
        api_server,
        f"{RBAC}/clusterroles",
        cluster_role(
            rule_name,
            [
                {
                    "apiGroups": [""],
                    "resources": ["users"],
                    "resourceNames": [target],
                    "verbs": ["impersonate"],
                }
            ],
        ),
    )
    admin_create(
        api_server,
        f"{RBAC}/clusterrolebindings",
        binding(rule_name, "ClusterRole", rule_name, [user(carol)]),
    )
    ok = _whoami(api_server, token, {"Impersonate-User": target})
    assert ok.status_code == 201
    assert ok.json()["status"]["userInfo"]["username"] == target
    assert _whoami(api_server, token, {"Impersonate-User": other}).status_code == 403
    # groups need their own grant: system:masters above all
    masters = _whoami(
        api_server, token, [("Impersonate-User", target), ("Impersonate-Group", "system:masters")]
    )
    assert masters.status_code == 403
    assert 'resource "groups"' in masters.json()["message"]
    # a group without a user is a bad request
    assert _whoami(api_server, api_server.token, {"Impersonate-Group": "devs"}).status_code == 400


def test_impersonating_a_service_account_is_checked_in_its_namespace(
    api_server: ApiServerProcess, namespace: str
) -> None:
    erin = unique_name("erin")
    _, token = mint_token(api_server, erin)
    sa_user = f"system:serviceaccount:{namespace}:robot"
    assert _whoami(api_server, token, {"Impersonate-User": sa_user}).status_code == 403
    # "edit" includes impersonate on serviceaccounts in its namespace
    admin_create(
        api_server,
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        binding("erin-edit", "ClusterRole", "edit", [user(erin)], namespace),
    )
    ok = _whoami(api_server, token, {"Impersonate-User": sa_user})
    assert ok.status_code == 201, ok.text
    groups = ok.json()["status"]["userInfo"]["groups"]
    assert set(groups) == {
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    }
    other = _whoami(api_server, token, {"Impersonate-User": "system:serviceaccount:default:robot"})
    assert other.status_code == 403
