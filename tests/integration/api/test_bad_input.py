"""Bad input gets a 4xx ``kind: Status`` that names the problem, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kumo.client import ApiException, Client
from tests.conftest import ApiServerProcess
from tests.integration.api.test_crud import config_map, deployment


@pytest.fixture
def http(api_server: ApiServerProcess) -> Iterator[httpx.Client]:
    with api_server.http() as client:
        yield client


def status_of(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["message"]
    return body


def collection(namespace: str, plural: str = "configmaps", group: str = "") -> str:
    root = f"/apis/{group}" if group else "/api/v1"
    return f"{root}/namespaces/{namespace}/{plural}"


def test_malformed_json(http: httpx.Client, namespace: str) -> None:
    response = http.post(
        collection(namespace), content=b'{"kind": "ConfigMap", ', headers=JSON_HEADERS
    )
    body = status_of(response, 400)
    assert body["reason"] == "BadRequest"
    assert "not valid JSON" in body["message"]


def test_malformed_yaml(http: httpx.Client, namespace: str) -> None:
    response = http.post(
        collection(namespace),
        content=b"kind: ConfigMap\nmetadata: {name: [unclosed\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert "not valid YAML" in status_of(response, 400)["message"]


def test_yaml_body_works(http: httpx.Client, namespace: str) -> None:
    response = http.post(
        collection(namespace),
        content=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"] == {"a": "b"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"", "the request body is empty"),
        (b"   ", "the request body is empty"),
    ],
)
def test_body_that_is_not_an_object(
    http: httpx.Client, namespace: str, body: bytes, problem: str
) -> None:
    response = http.post(collection(namespace), content=body, headers=JSON_HEADERS)
    assert problem in status_of(response, 400)["message"]


def test_unsupported_media_type(http: httpx.Client, namespace: str) -> None:
    response = http.post(
        collection(namespace), content=b"<configmap/>", headers={"Content-Type": "text/xml"}
    )
    body = status_of(response, 415)
    assert "text/xml" in body["message"]


def test_unknown_kind_in_the_client_is_a_404_naming_it(client: Client, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        client.create_raw(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        )
    assert caught.value.code == 404
    assert 'no matches for kind "Widget" in version "example.com/v1"' in caught.value.message


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/{ns}/widgets",
        "/apis/example.com/v1/namespaces/{ns}/widgets",
        "/apis/apps/v2/namespaces/{ns}/deployments",
        "/api/v2/namespaces/{ns}/configmaps",
    ],
)
def test_post_to_an_unknown_resource_path(http: httpx.Client, namespace: str, path: str) -> None:
    url = path.format(ns=namespace)
    body = status_of(http.post(url, json=config_map("x")), 404)
    assert body["reason"] == "NotFound"
    assert url in body["message"]


def test_kind_that_does_not_match_the_path(http: httpx.Client, namespace: str) -> None:
    wrong = {**config_map("x"), "kind": "Secret"}
    body = status_of(http.post(collection(namespace), json=wrong), 400)
    assert (
        "the kind in the data (Secret) does not match the expected kind (ConfigMap)"
        in (body["message"])
    )


def test_missing_name(http: httpx.Client, namespace: str) -> None:
    body = status_of(http.post(collection(namespace), json=config_map("")), 422)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "metadata.name: Required value" in body["message"]
    nameless = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}
    assert (
        "metadata.name"
        in status_of(http.post(collection(namespace), json=nameless), 422)["message"]
    )


def test_invalid_name(http: httpx.Client, namespace: str) -> None:
    body = status_of(http.post(collection(namespace), json=config_map("Not_Valid")), 422)
    assert body["message"].startswith('ConfigMap "Not_Valid" is invalid: metadata.name')


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [
        (lambda d: d["spec"].update(replicas="three"), "spec.replicas", "must be of type integer"),
        (lambda d: d["spec"].update(replicas=[3]), "spec.replicas", "must be of type integer"),
        (lambda d: d["metadata"].update(labels=["a"]), "metadata.labels", "must be of type object"),
        (
            lambda d: d["spec"]["template"]["spec"].update(containers="web"),
            "spec.template.spec.containers",
            "must be of type array",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                ports=[{"containerPort": "80"}]
            ),
            "spec.template.spec.containers[0].ports[0].containerPort",
            "must be of type integer",
        ),
        (lambda d: d.update(metadata="web"), "metadata", "must be of type object"),
    ],
)
def test_wrong_types(
    http: httpx.Client, namespace: str, mutate: Any, field: str, problem: str
) -> None:
    body_in = deployment("typed")
    mutate(body_in)
    body = status_of(http.post(collection(namespace, "deployments", "apps/v1"), json=body_in), 422)
    assert any(
        c["field"] == field and problem in c["message"] for c in body["details"]["causes"]
    ), body
    assert field in body["message"]


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("app in (web", "unexpected end"),
        ("app==", None),
        ("-bad=1", "invalid label key"),
        ("a=b,", "trailing ','"),
        ("app = web = api", "expected: ',' or 'end of string'"),
    ],
)
def test_label_selectors(
    http: httpx.Client, namespace: str, selector: str, problem: str | None
) -> None:
    response = http.get(collection(namespace), params={"labelSelector": selector})
    if problem is None:
        assert response.status_code == 200
        return
    body = status_of(response, 400)
    assert "labelSelector" in body["message"]
    assert problem in body["message"]
    watch = http.get(collection(namespace), params={"labelSelector": selector, "watch": "1"})
    status_of(watch, 400)


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("spec.bogus=1", '"spec.bogus" is not a known field selector'),
        ("metadata.name", "can't understand 'metadata.name'"),
    ],
)
def test_field_selectors(http: httpx.Client, namespace: str, selector: str, problem: str) -> None:
    body = status_of(http.get(collection(namespace), params={"fieldSelector": selector}), 400)
    assert problem in body["message"]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"continue": "%%%"}, "continue"),
        ({"resourceVersionMatch": "Sometimes"}, "resourceVersionMatch"),
        ({"watch": "1", "resourceVersion": "abc"}, "resourceVersion"),
        ({"watch": "1", "timeoutSeconds": "soon"}, "timeoutSeconds"),
    ],
)
def test_bad_query_parameters(
    http: httpx.Client, namespace: str, params: dict[str, str], problem: str
) -> None:
    body = status_of(http.get(collection(namespace), params=params), 400)
    assert problem in body["message"]


MIB = 1024 * 1024


def test_oversized_body_with_content_length(http: httpx.Client, namespace: str) -> None:
    big = config_map("big", {"blob": "x" * (3 * MIB + 10)})
    body = status_of(http.post(collection(namespace), json=big), 413)
    assert body["reason"] == "RequestEntityTooLarge"
    assert str(3 * MIB) in body["message"]


def test_oversized_body_streamed_without_content_length(http: httpx.Client, namespace: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"blob": "'
        for _ in range(4):
            yield b"x" * MIB
        yield b'"}}'

    response = http.post(collection(namespace), content=chunks(), headers=JSON_HEADERS)
    status_of(response, 413)


def test_body_just_under_the_limit_reaches_validation(http: httpx.Client, namespace: str) -> None:
    # 2 MiB fits the request limit but not a ConfigMap's 1 MiB data limit.
    big = config_map("big", {"blob": "x" * (2 * MIB)})
    body = status_of(http.post(collection(namespace), json=big), 422)
    assert "must have at most 1048576 bytes" in body["message"]


def test_wrong_methods_and_subresources(http: httpx.Client, namespace: str) -> None:
    http.post(collection(namespace), json=config_map("m")).raise_for_status()
    status_of(http.put(collection(namespace), json=config_map("m")), 405)
    status_of(http.post(f"{collection(namespace)}/m", json=config_map("m")), 405)
    status_of(http.get(f"{collection(namespace)}/m/nope"), 404)
    status_of(http.get(f"{collection(namespace)}/m/status/deeper/still"), 404)
    status_of(http.patch(collection(namespace), json={}), 405)
    deploys = collection(namespace, "deployments", "apps/v1")
    http.post(deploys, json=deployment("d")).raise_for_status()
    status_of(http.delete(f"{deploys}/d/scale"), 405)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/merge-patch+json", b"[1]", (400, "must be a JSON object")),
        ("application/merge-patch+json", b"{oops", (400, "not valid JSON")),
        ("application/json-patch+json", b'{"op": "add"}', (422, "must be a list")),
        (
            "application/json-patch+json",
            b'[{"op": "jump", "path": "/x"}]',
            (422, "unknown operation"),
        ),
        (
            "application/json-patch+json",
            b'[{"op": "remove", "path": "/missing"}]',
            (422, "not found"),
        ),
        ("application/strategic-merge-patch+json", b'"x"', (400, "must be a JSON object")),
        ("application/merge-patch+json", b'{"data": {"a": 1}}', (422, "must be of type string")),
        ("application/merge-patch+json", b'{"kind": "Secret"}', (400, "does not match")),
    ],
)
def test_bad_patches(
    http: httpx.Client, namespace: str, content_type: str, body: bytes, expected: tuple[int, str]
) -> None:
    code, problem = expected
    http.post(collection(namespace), json=config_map("p")).raise_for_status()
    response = http.patch(
        f"{collection(namespace)}/p", content=body, headers={"Content-Type": content_type}
    )
    assert problem in status_of(response, code)["message"]


def test_bad_delete_options(http: httpx.Client, namespace: str) -> None:
    http.post(collection(namespace), json=config_map("d")).raise_for_status()
    url = f"{collection(namespace)}/d"
    status_of(http.request("DELETE", url, params={"propagationPolicy": "Sideways"}), 400)
    status_of(http.request("DELETE", url, params={"gracePeriodSeconds": "soon"}), 400)
    status_of(http.request("DELETE", url, content=b"[1]", headers=JSON_HEADERS), 400)
    status_of(
        http.request("DELETE", url, content=b'{"gracePeriodSeconds": "x"}', headers=JSON_HEADERS),
        400,
    )
    assert http.get(url).status_code == 200


def test_bad_scale_bodies(http: httpx.Client, namespace: str) -> None:
    deploys = collection(namespace, "deployments", "apps/v1")
    http.post(deploys, json=deployment("s")).raise_for_status()
    status_of(http.put(f"{deploys}/s/scale", json=[1]), 400)
    status_of(http.put(f"{deploys}/s/scale", json={"spec": {"replicas": "two"}}), 422)
    status_of(http.put(f"{deploys}/s/scale", json={"spec": {}}), 422)


def test_immutable_fields_through_the_api(http: httpx.Client, namespace: str) -> None:
    deploys = collection(namespace, "deployments", "apps/v1")
    http.post(deploys, json=deployment("imm")).raise_for_status()
    response = http.patch(
        f"{deploys}/imm",
        json={
            "spec": {
                "selector": {"matchLabels": {"app": "imm", "v": "2"}},
                "template": {"metadata": {"labels": {"app": "imm", "v": "2"}}},
            }
        },
        headers={"Content-Type": "application/merge-patch+json"},
    )
    body = status_of(response, 422)
    assert "spec.selector" in body["message"]
    assert "field is immutable" in body["message"]

    frozen = {**config_map("frozen", {"a": "1"}), "immutable": True}
    http.post(collection(namespace), json=frozen).raise_for_status()
    response = http.patch(
        f"{collection(namespace)}/frozen",
        json={"data": {"a": "2"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert "field is immutable when `immutable` is set" in status_of(response, 422)["message"]


JSON_HEADERS = {"Content-Type": "application/json"}
