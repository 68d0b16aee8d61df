"""Turning a request body into an object: wrong types, unknown fields, missing names, and
semantic checks, each reported with the field's path (no silent drops, no coercion)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumo.model import ConfigMap, Deployment, Node, unknown_fields
from kumo.model.registry import ResourceInfo, by_kind
from kumo.platform.api import admission
from kumo.platform.api.errors import ApiError

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    },
}


def info(api_version: str = "apps/v1", kind: str = "Deployment") -> ResourceInfo:
    found = by_kind(api_version, kind)
    assert found is not None
    return found


def create(raw: Any, field_validation: str = "Warn", namespace: str = "default") -> list[str]:
    """What the API does on POST, minus the store; returns the warnings."""
    decoded = admission.decode_object(info(), raw, field_validation)
    admission.prepare_create(info(), decoded.model, namespace)
    admission.admit_new(info(), decoded.model)
    return decoded.warnings


def changed(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(DEPLOYMENT)
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


_DELETE = object()


def error_of(raw: Any, field_validation: str = "Warn") -> ApiError:
    with pytest.raises(ApiError) as caught:
        create(raw, field_validation)
    return caught.value


def test_a_valid_deployment_has_no_warnings() -> None:
    assert create(copy.deepcopy(DEPLOYMENT)) == []


def test_unknown_fields_are_kept_and_warned_about_by_default() -> None:
    raw = changed("spec.template.spec.containers.0.sparkles", True)
    raw["topLevelThing"] = {"x": 1}
    warnings = create(raw)
    assert len(warnings) == 2
    assert any('unknown field "topLevelThing"' in w for w in warnings)
    assert any('unknown field "spec.template.spec.containers[0].sparkles"' in w for w in warnings)
    model = Deployment.model_validate(raw)
    assert sorted(unknown_fields(model)) == [
        "spec.template.spec.containers[0].sparkles",
        "topLevelThing",
    ]


def test_strict_field_validation_rejects_unknown_fields_naming_them() -> None:
    error = error_of(changed("spec.replicaz", 3), "Strict")
    assert error.code == 400
    assert 'unknown field "spec.replicaz"' in error.message


def test_ignore_field_validation_keeps_quiet() -> None:
    assert create(changed("spec.replicaz", 3), "Ignore") == []


@pytest.mark.parametrize(
    ("path", "value", "field", "problem"),
    [
        ("spec.replicas", "3", "spec.replicas", 'Invalid value: "3": must be of type integer'),
        ("spec.replicas", True, "spec.replicas", "must be of type integer"),
        ("spec.replicas", 1.5, "spec.replicas", "must be of type integer"),
        ("metadata.labels", {"app": 1}, "metadata.labels.app", "must be of type string"),
        (
            "spec.template.spec.containers",
            {"name": "c"},
            "spec.template.spec.containers",
            "must be of type array",
        ),
        ("spec.template", _DELETE, "spec.template", "Required value"),
        (
            "spec.template.spec.containers.0.ports",
            [{"containerPort": "http"}],
            "spec.template.spec.containers[0].ports[0].containerPort",
            "must be of type integer",
        ),
        (
            "spec.template.spec.containers.0.resources",
            {"limits": {"cpu": "lots"}},
            "spec.template.spec.containers[0].resources.limits.cpu",
            "quantities must match",
        ),
    ],
)
def test_wrong_types_are_rejected_with_the_field_path(
    path: str, value: Any, field: str, problem: str
) -> None:
    error = error_of(changed(path, value))
    assert error.code == 422
    assert error.reason == "Invalid"
    assert error.details is not None
    causes = {(c["field"], c["message"]) for c in error.details["causes"]}
    assert any(f == field and problem in m for f, m in causes), causes
    assert field in error.message


@pytest.mark.parametrize(
    ("path", "value", "field", "problem"),
    [
        ("metadata.name", _DELETE, "metadata.name", "Required value"),
        ("metadata.name", "Web_1", "metadata.name", "RFC 1123 subdomain"),
        ("metadata.labels", {"bad key": "x"}, "metadata.labels", "'bad key'"),
        (
            "spec.template.metadata.labels",
            {"app": "api"},
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ),
        ("spec.replicas", -1, "spec.replicas", "must be greater than or equal to 0"),
        (
            "spec.template.spec.containers.0.ports",
            [{"containerPort": 70000}],
            "spec.template.spec.containers[0].ports[0].containerPort",
            "must be between 1 and 65535",
        ),
        (
            "spec.template.spec.containers.0.image",
            _DELETE,
            "spec.template.spec.containers[0].image",
            "Required value",
        ),
        (
            "spec.strategy",
            {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        ),
        (
            "spec.strategy",
            {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
            "spec.strategy.rollingUpdate.maxUnavailable",
            "may not be 0 when `maxSurge` is 0",
        ),
        (
            "spec.template.spec.restartPolicy",
            "Never",
            "spec.template.spec.restartPolicy",
            'supported values: "Always"',
        ),
    ],
)
def test_semantic_problems_name_the_field(path: str, value: Any, field: str, problem: str) -> None:
    error = error_of(changed(path, value))
    assert error.code == 422
    assert error.details is not None
    causes = [(c["field"], c["message"]) for c in error.details["causes"]]
    assert any(f == field and problem in m for f, m in causes), causes


def test_generate_name_makes_a_name() -> None:
    raw = changed("metadata", {"generateName": "web-"})
    decoded = admission.decode_object(info(), raw, "Warn")
    admission.prepare_create(info(), decoded.model, "default")
    admission.admit_new(info(), decoded.model)
    name = decoded.model.metadata.name
    assert name is not None and name.startswith("web-") and len(name) == len("web-") + 5


def test_create_sets_system_fields_and_ignores_client_values() -> None:
    raw = changed(
        "metadata",
        {
            "name": "web",
            "uid": "forged",
            "resourceVersion": "99",
            "generation": 7,
            "creationTimestamp": "2000-01-01T00:00:00Z",
            "deletionTimestamp": "2000-01-01T00:00:00Z",
        },
    )
    raw["status"] = {"replicas": 100}
    decoded = admission.decode_object(info(), raw, "Warn")
    admission.prepare_create(info(), decoded.model, "team-a")
    wire = admission.admit_new(info(), decoded.model)
    meta = wire["metadata"]
    assert meta["uid"] != "forged"
    assert "resourceVersion" not in meta
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert "deletionTimestamp" not in meta
    assert meta["namespace"] == "team-a"
    assert wire["status"] == {}  # status is the controllers' to write


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([1], "must be a JSON object"),
        ({"apiVersion": "v1", "kind": "Deployment"}, "does not match the expected API version"),
        ({"apiVersion": "apps/v1", "kind": "Pod"}, "does not match the expected kind"),
    ],
)
def test_wrong_shape_or_kind_is_a_bad_request(raw: Any, problem: str) -> None:
    error = error_of(raw)
    assert error.code == 400
    assert problem in error.message


def test_config_map_keys_and_sizes() -> None:
    cm = ConfigMap.model_validate({"metadata": {"name": "c"}, "data": {"bad/key": "x"}})
    assert any("a valid config key" in p for _, p in cm.validate_semantics())
    big = ConfigMap.model_validate({"metadata": {"name": "c"}, "data": {"k": "x" * (1024 * 1024)}})
    assert ("", "Too long: must have at most 1048576 bytes") in big.validate_semantics()
    both = ConfigMap.model_validate(
        {"metadata": {"name": "c"}, "data": {"k": "1"}, "binaryData": {"k": "MQ=="}}
    )
    assert any("duplicate of key present in binaryData" in p for _, p in both.validate_semantics())


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"a: [unclosed", "application/yaml", "not valid YAML"),
        (b"a: 1\n---\nb: 2\n", "application/yaml", "exactly one YAML document"),
        (b"", "application/json", "the request body is empty"),
    ],
)
def test_malformed_bodies_are_bad_requests(body: bytes, content_type: str, problem: str) -> None:
    with pytest.raises(ApiError) as caught:
        admission.decode_body(body, content_type)
    assert caught.value.code == 400
    assert problem in caught.value.message


def test_unsupported_media_type() -> None:
    with pytest.raises(ApiError) as caught:
        admission.decode_body(b"<xml/>", "application/xml")
    assert caught.value.code == 415


def test_yaml_bodies_are_accepted() -> None:
    assert admission.decode_body(b"kind: ConfigMap\ndata:\n  a: '1'\n", "application/yaml") == {
        "kind": "ConfigMap",
        "data": {"a": "1"},
    }


def test_node_system_info_uses_kubernetes_field_names() -> None:
    """What an agent reports about its machine is known to the model (no warnings), under
    the names Kubernetes uses (``machineID``, ``systemUUID``, ``bootID``)."""
    info = {
        "machineID": "m",
        "systemUUID": "s",
        "bootID": "b",
        "kernelVersion": "6.1",
        "osImage": "Debian",
        "containerRuntimeVersion": "podman://4.3.1",
        "kubeletVersion": "v0.1.0",
        "kubeProxyVersion": "v0.1.0",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }
    node = Node.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n"},
            "status": {"nodeInfo": info},
        }
    )
    assert unknown_fields(node) == []
    dumped = node.model_dump(by_alias=True, exclude_none=True)
    assert dumped["status"]["nodeInfo"] == info
