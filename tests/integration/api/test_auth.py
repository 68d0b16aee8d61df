"""No anonymous access: every route but the health checks needs a valid bearer token."""

from __future__ import annotations

import pytest

from tests.conftest import ApiServerProcess

PROTECTED = [
    ("GET", "/metrics"),
    ("GET", "/version"),
    ("GET", "/openapi/v3"),
    ("GET", "/api"),
    ("GET", "/apis"),
    ("GET", "/api/v1"),
    ("GET", "/apis/apps/v1"),
    ("GET", "/api/v1/namespaces"),
    ("GET", "/api/v1/namespaces/default"),
    ("GET", "/api/v1/namespaces/default/configmaps"),
    ("GET", "/api/v1/configmaps"),
    ("GET", "/api/v1/namespaces/default/configmaps?watch=1"),
    ("GET", "/api/v1/configmaps?watch=true&resourceVersion=0"),
    ("GET", "/apis/apps/v1/namespaces/default/deployments/web/scale"),
    ("POST", "/api/v1/namespaces/default/configmaps"),
    ("PUT", "/api/v1/namespaces/default/configmaps/x"),
    ("PATCH", "/api/v1/namespaces/default/configmaps/x"),
    ("DELETE", "/api/v1/namespaces/default/configmaps/x"),
    ("DELETE", "/api/v1/namespaces/default/configmaps"),
    ("POST", "/api/v1/namespaces/default/pods/x/binding"),
    ("GET", "/api/v1/namespaces/default/widgets"),
    ("GET", "/apis/example.com/v1/things"),
    ("GET", "/no/such/route"),
    ("GET", "/"),
    ("OPTIONS", "/api/v1/namespaces"),
    ("PUT", "/version"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-a-kumo-token",
        "Bearer kumo_deadbeef0000.forgedsecret",
        "Basic YWRtaW46YWRtaW4=",
        "bearer",
    ],
    ids=["none", "garbage", "forged", "basic", "no-token"],
)
def test_unauthenticated_requests_are_refused(
    api_server: ApiServerProcess, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    with api_server.http(authenticated=False) as http:
        response = http.request(method, path, headers=headers, content=b"{}")
    assert response.status_code == 401, (method, path, response.text)
    body = response.json()
    assert body["kind"] == "Status"
    assert body["reason"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_forged_secret_for_a_real_token_id_is_refused(api_server: ApiServerProcess) -> None:
    token_id = api_server.token.split(".", 1)[0]
    with api_server.http(token=f"{token_id}.not-the-secret") as http:
        assert http.get("/api/v1/namespaces").status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_health_checks_are_open(api_server: ApiServerProcess, path: str) -> None:
    with api_server.http(authenticated=False) as http:
        response = http.get(path)
    assert response.status_code == 200
    assert response.text == "ok"


def test_the_admin_token_works_everywhere(api_server: ApiServerProcess) -> None:
    with api_server.http() as http:
        for path in ("/metrics", "/version", "/openapi/v3", "/api", "/apis", "/api/v1"):
            assert http.get(path).status_code == 200, path
        metrics = http.get("/metrics").text
    assert "apiserver_request_total" in metrics
    assert "kumo_store_revision" in metrics


def test_tls_only(api_server: ApiServerProcess) -> None:
    import httpx

    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{api_server.port}/healthz", timeout=5)
