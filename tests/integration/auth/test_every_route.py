"""Nothing answers without a token but the health checks: every path discovery lists (each
resource's collection, object and subresources, namespaced and not), the reviews, the token
endpoints and the non-resource paths."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import mint_token

OPEN = ("/healthz", "/livez", "/readyz")
NON_RESOURCE = [
    "/",
    "/api",
    "/apis",
    "/version",
    "/metrics",
    "/openapi/v3",
    "/openapi/v2",
    "/kumo/admin/encryption",
    "/kumo/admin/rotate-key",
    "/apis/kumo.dev/v1/usertokens",
    "/apis/kumo.dev/v1/usertokens/abc",
    "/.well-known/openid-configuration",
    "/openid/v1/jwks",
    "/logs",
    "/debug/pprof",
]


def _discovered_paths(http: httpx.Client) -> list[tuple[str, list[str]]]:
    """(path, verbs) for everything discovery lists."""
    lists = ["/api/v1"]
    for group in http.get("/apis").json()["groups"]:
        lists.extend(f"/apis/{v['groupVersion']}" for v in group["versions"])
    out: list[tuple[str, list[str]]] = []
    for root in lists:
        document: dict[str, Any] = http.get(root).json()
        out.append((root, ["discovery"]))
        for resource in document["resources"]:
            name, _, sub = resource["name"].partition("/")
            verbs = list(resource["verbs"])
            prefixes = [root]
            if resource["namespaced"]:
                # every namespace at once: only for kinds that can be listed
                listable = not sub and "list" in verbs
                prefixes = [f"{root}/namespaces/default", *([root] if listable else [])]
            for prefix in prefixes:
                if sub:
                    out.append((f"{prefix}/{name}/x/{sub}", verbs))
                else:
                    out.append((f"{prefix}/{name}", verbs))
                    if verbs != ["create"]:  # reviews have no objects to name
                        out.append((f"{prefix}/{name}/x", verbs))
    return out


def test_discovery_lists_the_access_kinds(api_server: ApiServerProcess) -> None:
    with api_server.http() as http:
        paths = {path for path, _ in _discovered_paths(http)}
    assert "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" in paths
    assert "/apis/authentication.k8s.io/v1/tokenreviews" in paths
    assert "/api/v1/namespaces/default/serviceaccounts/x/token" in paths
    assert "/apis/kumo.dev/v1/usertokens" in paths


def test_every_discovered_route_needs_a_token(api_server: ApiServerProcess) -> None:
    with api_server.http() as http:
        targets = _discovered_paths(http)
    assert len(targets) > 100
    methods = {
        "get": "GET",
        "list": "GET",
        "watch": "GET",
        "create": "POST",
        "update": "PUT",
        "patch": "PATCH",
        "delete": "DELETE",
        "deletecollection": "DELETE",
    }
    checked = 0
    with api_server.http(authenticated=False) as anonymous:
        for path, verbs in targets:
            for method in sorted({methods.get(v, "GET") for v in verbs} | {"GET"}):
                query = "?watch=1" if method == "GET" and "watch" in verbs else ""
                response = anonymous.request(
                    method,
                    path + query,
                    content=b"{}",
                    headers={"Content-Type": "application/json"},
                )
                assert response.status_code == 401, (
                    method,
                    path,
                    response.status_code,
                    response.text,
                )
                assert response.json()["reason"] == "Unauthorized"
                checked += 1
    assert checked > 200


def test_non_resource_paths_need_a_token(api_server: ApiServerProcess) -> None:
    with api_server.http(authenticated=False) as anonymous:
        for path in NON_RESOURCE:
            for method in ("GET", "POST", "DELETE"):
                response = anonymous.request(method, path)
                assert response.status_code == 401, (method, path, response.text)
        for path in OPEN:
            assert anonymous.get(path).status_code == 200, path


def test_a_user_with_no_rights_gets_nothing_but_discovery(api_server: ApiServerProcess) -> None:
    _, token = mint_token(api_server, unique_name("nobody"))
    with api_server.http() as http:
        targets = _discovered_paths(http)
    roots = {path for path, verbs in targets if verbs == ["discovery"]}
    assert "/api/v1" in roots and "/apis/apps/v1" in roots
    with api_server.http(token=token) as nobody:
        for path, _ in targets:
            response = nobody.get(path)
            if path in roots:  # discovery is open to every authenticated user
                assert response.status_code == 200, path
                continue
            if "/selfsubject" in path:
                continue  # asking about oneself is open to every authenticated user
            assert response.json()["kind"] == "Status", path
            assert response.status_code in (403, 404, 405), (path, response.status_code)
            if response.status_code != 403:  # GET is not served there; a write is refused
                write = nobody.post(path, json={})
                assert write.status_code == 403, (path, write.status_code, write.text)
