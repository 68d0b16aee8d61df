"""The audit log (<data-dir>/audit.log): a JSON line per write and per denial, with who,
what, the answer and from where, and never a Secret's value."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import audit_records, mint_token

FIELDS = {
    "time",
    "user",
    "groups",
    "verb",
    "apiGroup",
    "resource",
    "subresource",
    "namespace",
    "name",
    "code",
    "sourceIP",
    "userAgent",
    "requestURI",
}


def _find(records: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def test_writes_are_audited_and_secret_values_never_are(
    api_server: ApiServerProcess, namespace: str
) -> None:
    value = "s3cr3t-" + secrets.token_hex(16)
    name = unique_name("creds")
    with api_server.http() as http:
        created = http.post(
            f"/api/v1/namespaces/{namespace}/secrets",
            json={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {"password": value},
            },
            headers={"User-Agent": "audit-test/1"},
        )
        assert created.status_code == 201, created.text
        patched = http.patch(
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            json={"stringData": {"password": value + "-2"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert patched.status_code == 200
        # reads are not audited
        assert http.get(f"/api/v1/namespaces/{namespace}/secrets/{name}").status_code == 200
        assert http.delete(f"/api/v1/namespaces/{namespace}/secrets/{name}").status_code == 200
    records = audit_records(api_server)
    mine = _find(records, namespace=namespace, resource="secrets", name=name)
    assert [r["verb"] for r in mine] == ["create", "patch", "delete"]
    create = mine[0]
    assert set(create) >= FIELDS
    assert create["user"] == "admin"
    assert "system:masters" in create["groups"]
    assert create["code"] == 201
    assert create["apiGroup"] == "" and create["subresource"] == ""
    assert create["sourceIP"] == "127.0.0.1"
    assert create["userAgent"] == "audit-test/1"
    assert create["requestURI"] == f"/api/v1/namespaces/{namespace}/secrets"
    assert create["time"].endswith("Z")
    text = (api_server.data_dir / "audit.log").read_text()
    for form in (value, base64.b64encode(value.encode()).decode(), value + "-2"):
        assert form not in text


def test_denials_are_audited(api_server: ApiServerProcess, namespace: str) -> None:
    user = unique_name("mallory")
    _, token = mint_token(api_server, user, ["outsiders"])
    with api_server.http(token=token) as http:
        assert http.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403
        assert (
            http.get(
                f"/api/v1/namespaces/{namespace}/pods", headers={"Impersonate-User": "admin"}
            ).status_code
            == 403
        )
    with api_server.http(authenticated=False) as anonymous:
        assert anonymous.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 401
    with api_server.http(token="kumo_0123456789ab.wrong") as forged:
        assert forged.delete(f"/api/v1/namespaces/{namespace}/pods/x").status_code == 401
    records = audit_records(api_server)
    denied = _find(records, user=user, code=403)
    assert {(r["verb"], r["resource"]) for r in denied} >= {("list", "secrets")}
    list_secrets = _find(denied, resource="secrets")[0]
    assert list_secrets["namespace"] == namespace
    assert list_secrets["groups"] == ["outsiders", "system:authenticated"]
    impersonation = [r for r in denied if r["resource"] != "secrets"]
    assert impersonation, denied
    unauthenticated = _find(records, code=401, namespace=namespace)
    assert {(r["verb"], r["resource"]) for r in unauthenticated} >= {
        ("get", "configmaps"),
        ("delete", "pods"),
    }
    assert all(r["user"] == "system:anonymous" for r in unauthenticated)
    # no token ever lands in the log
    assert token.split(".", 1)[1] not in (api_server.data_dir / "audit.log").read_text()


def test_impersonated_writes_name_both_users(api_server: ApiServerProcess, namespace: str) -> None:
    name = unique_name("cm")
    with api_server.http() as http:
        response = http.post(
            f"/api/v1/namespaces/{namespace}/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
            headers={"Impersonate-User": "someone", "Impersonate-Group": "system:masters"},
        )
    assert response.status_code == 201
    [record] = _find(audit_records(api_server), name=name, verb="create")
    assert record["user"] == "admin"
    assert record["impersonatedUser"] == {
        "username": "someone",
        "groups": ["system:masters", "system:authenticated"],
    }


def test_the_audit_log_is_private(api_server: ApiServerProcess) -> None:
    mode = (api_server.data_dir / "audit.log").stat().st_mode & 0o777
    assert mode == 0o600
