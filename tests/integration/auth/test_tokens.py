"""Tokens: user tokens (stored as hashes, expiry, revocation) and service-account JWTs
(TokenRequest; signature, expiry, audience, and the account's uid); the reviews Kubernetes
serves (TokenReview, SelfSubjectReview, SelfSubjectAccessReview, SubjectAccessReview)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import USER_TOKENS, admin_create, grant, mint_token, user

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUTHN = "/apis/authentication.k8s.io/v1"
AUTHZ = "/apis/authorization.k8s.io/v1"


def _status(api_server: ApiServerProcess, token: str, path: str = "/api") -> int:
    with api_server.http(token=token) as http:
        return http.get(path).status_code


def _token_request(
    api_server: ApiServerProcess,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    token: str | None = None,
) -> Any:
    with api_server.http(token=token) as http:
        return http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )


def _service_account(api_server: ApiServerProcess, namespace: str, name: str) -> dict[str, Any]:
    return admin_create(
        api_server,
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )


def _whoami(api_server: ApiServerProcess, token: str) -> Any:
    with api_server.http(token=token) as http:
        return http.post(
            f"{AUTHN}/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


# ---- user tokens ------------------------------------------------------------------------------


def test_user_tokens_authenticate_and_are_stored_only_as_hashes(
    api_server: ApiServerProcess,
) -> None:
    name = unique_name("alice")
    token_id, token = mint_token(api_server, name, ["devs"])
    review = _whoami(api_server, token)
    assert review.status_code == 201
    info = review.json()["status"]["userInfo"]
    assert info["username"] == name
    assert info["groups"] == ["devs", "system:authenticated"]
    secret = token.split(".", 1)[1]
    with api_server.http() as http:
        listing = http.get(USER_TOKENS)
        one = http.get(f"{USER_TOKENS}/{token_id}")
    assert listing.status_code == 200 and one.status_code == 200
    assert secret not in listing.text and secret not in one.text
    assert "hash" not in one.text
    assert one.json()["spec"] == {"user": name, "groups": ["devs"]}
    assert token_id in {item["metadata"]["name"] for item in listing.json()["items"]}
    # nor is the secret anywhere in the store's file
    store = (api_server.data_dir / "store.db").read_bytes()
    assert secret.encode() not in store


def test_revoked_user_tokens_get_401(api_server: ApiServerProcess) -> None:
    token_id, token = mint_token(api_server, unique_name("leaver"))
    assert _status(api_server, token) == 200
    with api_server.http() as http:
        revoked = http.delete(f"{USER_TOKENS}/{token_id}")
        assert revoked.status_code == 200
        assert revoked.json()["status"]["revoked"] is True
        assert http.delete(f"{USER_TOKENS}/nosuchtoken").status_code == 404
    response = None
    with api_server.http(token=token) as http:
        response = http.get("/api")
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"


def test_expired_user_tokens_get_401(api_server: ApiServerProcess) -> None:
    _, token = mint_token(api_server, unique_name("temp"), seconds=1)
    assert _status(api_server, token) == 200
    time.sleep(1.5)  # until the token's expiry has passed (not a timing assertion)
    assert _status(api_server, token) == 401


def test_only_authorized_users_manage_tokens_and_nobody_mints_more_than_they_hold(
    api_server: ApiServerProcess, namespace: str
) -> None:
    name = unique_name("helpdesk")
    _, token = mint_token(api_server, name)
    body = {"apiVersion": "kumo.dev/v1", "kind": "UserToken", "spec": {"user": "x"}}
    with api_server.http(token=token) as http:
        assert http.get(USER_TOKENS).status_code == 403
        assert http.post(USER_TOKENS, json=body).status_code == 403
    # allowed to create tokens, but not to act as anyone: still no token for system:masters
    admin_create(
        api_server,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["kumo.dev"],
                    "resources": ["usertokens"],
                    "verbs": ["create", "list"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["users"],
                    "resourceNames": ["intern"],
                    "verbs": ["impersonate"],
                },
            ],
        },
    )
    admin_create(
        api_server,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [user(name)],
        },
    )
    with api_server.http(token=token) as http:
        root = {
            "apiVersion": "kumo.dev/v1",
            "kind": "UserToken",
            "spec": {"user": "intern", "groups": ["system:masters"]},
        }
        assert http.post(USER_TOKENS, json=root).status_code == 403
        other = {"apiVersion": "kumo.dev/v1", "kind": "UserToken", "spec": {"user": "boss"}}
        assert http.post(USER_TOKENS, json=other).status_code == 403
        intern = {"apiVersion": "kumo.dev/v1", "kind": "UserToken", "spec": {"user": "intern"}}
        created = http.post(USER_TOKENS, json=intern)
        assert created.status_code == 201, created.text
        assert created.json()["status"]["createdBy"] == name
        assert http.get(USER_TOKENS).status_code == 200
        assert http.delete(f"{USER_TOKENS}/{created.json()['metadata']['name']}").status_code == 403


# ---- service-account tokens ------------------------------------------------------------------------


def test_token_request_gives_a_working_service_account_token(
    api_server: ApiServerProcess, namespace: str
) -> None:
    account = _service_account(api_server, namespace, "robot")
    response = _token_request(api_server, namespace, "robot", {"expirationSeconds": 3600})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "TokenRequest" and body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["spec"]["audiences"] == [ISSUER]
    assert body["status"]["expirationTimestamp"].endswith("Z")
    token = body["status"]["token"]
    claims = _claims(token)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert claims["aud"] == [ISSUER]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"]["namespace"] == namespace
    assert claims["kubernetes.io"]["serviceaccount"] == {
        "name": "robot",
        "uid": account["metadata"]["uid"],
    }
    info = _whoami(api_server, token).json()["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{namespace}:robot"
    assert info["uid"] == account["metadata"]["uid"]
    assert info["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    ]
    # RBAC sees it as a ServiceAccount subject
    ns = f"/api/v1/namespaces/{namespace}/pods"
    assert _status(api_server, token, ns) == 403
    admin_create(
        api_server,
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "robot-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}],
        },
    )
    assert _status(api_server, token, ns) == 200


def test_tampered_wrong_audience_and_expired_service_account_tokens_get_401(
    api_server: ApiServerProcess, namespace: str
) -> None:
    account = _service_account(api_server, namespace, "robot")
    good = _token_request(api_server, namespace, "robot", {}).json()["status"]["token"]
    assert _status(api_server, good) == 200
    # tampered: the payload says another account; the signature no longer matches
    header, payload, signature = good.split(".")
    claims = _claims(good)
    claims["kubernetes.io"]["serviceaccount"]["name"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert _status(api_server, f"{header}.{forged_payload}.{signature}") == 401
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    assert _status(api_server, f"{header}.{payload}.{flipped}") == 401
    # wrong audience: valid for "vault", not for the API server
    vault = _token_request(api_server, namespace, "robot", {"audiences": ["vault"]})
    assert vault.status_code == 201
    vault_token = vault.json()["status"]["token"]
    assert _status(api_server, vault_token) == 401
    # ... though a TokenReview for that audience accepts it (and only that audience)
    with api_server.http() as http:
        review = http.post(
            f"{AUTHN}/tokenreviews",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": vault_token, "audiences": ["vault"]},
            },
        ).json()
        assert review["status"]["authenticated"] is True
        assert review["status"]["audiences"] == ["vault"]
        assert review["status"]["user"]["username"] == f"system:serviceaccount:{namespace}:robot"
        default = http.post(
            f"{AUTHN}/tokenreviews",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": vault_token},
            },
        ).json()
        assert default["status"]["authenticated"] is False
    # expired: signed with the cluster's own key, but past its expiry
    key = ECKey.import_key((api_server.data_dir / "pki" / "sa.key").read_bytes())
    now = int(time.time())
    stale_claims = {**_claims(good), "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
    stale = jwt.encode({"alg": "ES256", "kid": key.thumbprint()}, stale_claims, key)
    assert _status(api_server, stale) == 401
    # the same claims with a fresh expiry pass: the 401 above was the expiry alone
    fresh = jwt.encode(
        {"alg": "ES256", "kid": key.thumbprint()}, {**stale_claims, "exp": now + 600}, key
    )
    assert _status(api_server, fresh) == 200
    # signed by a key the cluster does not have
    stranger = ECKey.generate_key("P-256")
    assert (
        _status(
            api_server, jwt.encode({"alg": "ES256"}, {**stale_claims, "exp": now + 600}, stranger)
        )
        == 401
    )
    assert account["metadata"]["uid"] == claims["kubernetes.io"]["serviceaccount"]["uid"]


def test_deleting_the_service_account_revokes_its_tokens(
    api_server: ApiServerProcess, namespace: str
) -> None:
    _service_account(api_server, namespace, "robot")
    token = _token_request(api_server, namespace, "robot", {}).json()["status"]["token"]
    assert _status(api_server, token) == 200
    with api_server.http() as http:
        assert (
            http.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/robot").status_code == 200
        )
    assert _status(api_server, token) == 401
    # a new account with the same name is another account (another uid)
    _service_account(api_server, namespace, "robot")
    assert _status(api_server, token) == 401


def test_a_token_bound_to_a_pod_dies_with_the_pod(
    api_server: ApiServerProcess, namespace: str
) -> None:
    _service_account(api_server, namespace, "robot")
    pod = admin_create(
        api_server,
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "worker"},
            "spec": {
                "serviceAccountName": "robot",
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
    )
    response = _token_request(
        api_server,
        namespace,
        "robot",
        {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker"}},
    )
    assert response.status_code == 201, response.text
    token = response.json()["status"]["token"]
    assert _claims(token)["kubernetes.io"]["pod"] == {
        "name": "worker",
        "uid": pod["metadata"]["uid"],
    }
    info = _whoami(api_server, token).json()["status"]["userInfo"]
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == ["worker"]
    with api_server.http() as http:
        assert http.delete(f"/api/v1/namespaces/{namespace}/pods/worker").status_code == 200
    assert _status(api_server, token) == 401


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"expirationSeconds": 60}, 422),
        ({"expirationSeconds": 2**33}, 422),
        ({"expirationSeconds": "1h"}, 400),
        ({"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}}, 422),
        ({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "nosuchpod"}}, 404),
    ],
)
def test_token_requests_are_validated(
    api_server: ApiServerProcess, namespace: str, spec: dict[str, Any], code: int
) -> None:
    _service_account(api_server, namespace, "robot")
    response = _token_request(api_server, namespace, "robot", spec)
    assert response.status_code == code, response.text
    assert response.json()["kind"] == "Status"


def test_token_requests_need_create_on_serviceaccounts_token(
    api_server: ApiServerProcess, namespace: str
) -> None:
    assert _token_request(api_server, namespace, "nosuch", {}).status_code == 404
    _service_account(api_server, namespace, "robot")
    name = unique_name("dev")
    _, token = mint_token(api_server, name)
    grant(
        api_server,
        namespace,
        user(name),
        [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "create"]}],
        "sa-get",
    )
    denied = _token_request(api_server, namespace, "robot", {}, token=token)
    assert denied.status_code == 403
    assert 'resource "serviceaccounts/token"' in denied.json()["message"]
    grant(
        api_server,
        namespace,
        user(name),
        [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}],
        "sa-token",
    )
    assert _token_request(api_server, namespace, "robot", {}, token=token).status_code == 201


# ---- reviews ------------------------------------------------------------------------------------


def test_access_reviews(api_server: ApiServerProcess, namespace: str) -> None:
    name = unique_name("reviewer")
    _, token = mint_token(api_server, name)
    grant(
        api_server,
        namespace,
        user(name),
        [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
        "r",
    )

    def ssar(spec: dict[str, Any]) -> Any:
        with api_server.http(token=token) as http:
            return http.post(
                f"{AUTHZ}/selfsubjectaccessreviews",
                json={
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": spec,
                },
            )

    yes = ssar(
        {
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "get",
                "group": "apps",
                "resource": "deployments",
            }
        }
    )
    assert yes.status_code == 201
    assert yes.json()["status"]["allowed"] is True
    assert yes.json()["kind"] == "SelfSubjectAccessReview"
    no = ssar(
        {
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "delete",
                "group": "apps",
                "resource": "deployments",
            }
        }
    )
    assert no.json()["status"]["allowed"] is False
    assert (
        ssar({"nonResourceAttributes": {"verb": "get", "path": "/version"}}).json()["status"][
            "allowed"
        ]
        is True
    )
    assert ssar({}).status_code == 422
    # SubjectAccessReview: about someone else; needs its own right
    sar = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": name,
            "resourceAttributes": {
                "namespace": namespace,
                "verb": "get",
                "group": "apps",
                "resource": "deployments",
            },
        },
    }
    with api_server.http(token=token) as http:
        assert http.post(f"{AUTHZ}/subjectaccessreviews", json=sar).status_code == 403
    with api_server.http() as http:
        answer = http.post(f"{AUTHZ}/subjectaccessreviews", json=sar)
        assert answer.status_code == 201
        assert answer.json()["status"]["allowed"] is True
        masters = {
            **sar,
            "spec": {
                "user": "x",
                "groups": ["system:masters"],
                "nonResourceAttributes": {"verb": "get", "path": "/metrics"},
            },
        }
        assert (
            http.post(f"{AUTHZ}/subjectaccessreviews", json=masters).json()["status"]["allowed"]
            is True
        )
        nobody = {**sar, "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}
        assert http.post(f"{AUTHZ}/subjectaccessreviews", json=nobody).status_code == 422
        # reviews are not stored: there is nothing to get or list
        assert http.get(f"{AUTHZ}/subjectaccessreviews").status_code in (404, 405)
        discovery = http.get(AUTHZ).json()
        assert {r["name"] for r in discovery["resources"]} >= {
            "selfsubjectaccessreviews",
            "subjectaccessreviews",
        }
        groups = {g["name"] for g in http.get("/apis").json()["groups"]}
        assert {"authorization.k8s.io", "authentication.k8s.io"} <= groups


def test_service_account_issuer_discovery(api_server: ApiServerProcess, namespace: str) -> None:
    _service_account(api_server, namespace, "robot")
    token = _token_request(api_server, namespace, "robot", {}).json()["status"]["token"]
    with api_server.http(token=token) as http:
        config = http.get("/.well-known/openid-configuration")
        assert config.status_code == 200
        assert config.json()["issuer"] == ISSUER
        jwks = http.get("/openid/v1/jwks")
    assert jwks.status_code == 200
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(jwks.json())
    verified = jwt.decode(token, keys, algorithms=["ES256"])
    assert verified.claims["sub"] == f"system:serviceaccount:{namespace}:robot"
    _, nobody = mint_token(api_server, unique_name("nobody"))
    assert _status(api_server, nobody, "/openid/v1/jwks") == 403
