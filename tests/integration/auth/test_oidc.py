"""OpenID Connect ID tokens, verified against a JWKS file made here (no network): the
issuer's signature, ``iss``, ``aud`` = the client id and ``exp``; claims map to the user
name and groups, which RBAC then binds like any other."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.conftest import ApiServerProcess
from tests.integration.auth.helpers import RBAC, admin_create, binding, group

ISSUER = "https://login.example.test"
CLIENT = "kumo"


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "idp-1"})


@pytest.fixture(scope="module")
def oidc_server(
    tmp_path_factory: pytest.TempPathFactory, idp_key: RSAKey
) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("oidc")
    jwks = root / "jwks.json"
    jwks.write_text(json.dumps(KeySet([idp_key]).as_dict(private=False)))
    server = ApiServerProcess(
        root / "data",
        (
            "--oidc-issuer-url",
            ISSUER,
            "--oidc-client-id",
            CLIENT,
            "--oidc-jwks-file",
            str(jwks),
            "--oidc-username-claim",
            "email",
            "--oidc-groups-claim",
            "groups",
            "--oidc-groups-prefix",
            "oidc:",
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _id_token(key: RSAKey, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "248289761001",
        "email": "jane@example.test",
        "email_verified": True,
        "groups": ["platform", "oncall"],
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def _whoami(server: ApiServerProcess, token: str) -> Any:
    with server.http(token=token) as http:
        return http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )


def test_oidc_tokens_are_accepted_and_mapped(
    oidc_server: ApiServerProcess, idp_key: RSAKey
) -> None:
    review = _whoami(oidc_server, _id_token(idp_key))
    assert review.status_code == 201, review.text
    info = review.json()["status"]["userInfo"]
    assert info["username"] == "jane@example.test"
    assert info["groups"] == ["oidc:platform", "oidc:oncall", "system:authenticated"]
    # the groups bind like any other: give oidc:platform "view" in default
    admin_create(
        oidc_server,
        f"{RBAC}/namespaces/default/rolebindings",
        binding("platform-view", "ClusterRole", "view", [group("oidc:platform")], "default"),
    )
    with oidc_server.http(token=_id_token(idp_key)) as http:
        assert http.get("/api/v1/namespaces/default/configmaps").status_code == 200
        assert http.get("/api/v1/namespaces/default/secrets").status_code == 403


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-client"},
        {"iss": "https://evil.example.test"},
        {"exp": int(time.time()) - 60},
        {"email_verified": False},
        {"email": None},
    ],
    ids=["wrong-audience", "wrong-issuer", "expired", "unverified-email", "no-email"],
)
def test_bad_oidc_tokens_get_401(
    oidc_server: ApiServerProcess, idp_key: RSAKey, overrides: dict[str, Any]
) -> None:
    response = _whoami(oidc_server, _id_token(idp_key, **overrides))
    assert response.status_code == 401, response.text


def test_tokens_signed_by_another_key_get_401(oidc_server: ApiServerProcess) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
    assert _whoami(oidc_server, _id_token(stranger)).status_code == 401
    token = _id_token(stranger)
    header, payload, signature = token.split(".")
    assert _whoami(oidc_server, f"{header}.{payload}.{signature[::-1]}").status_code == 401
