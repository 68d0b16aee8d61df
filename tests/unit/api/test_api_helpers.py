"""Pure pieces of the API server: path parsing, error wording, Warning headers, key locks."""

from __future__ import annotations

import asyncio

import pytest

from kumo.platform.api import paths
from kumo.platform.api.errors import invalid
from kumo.platform.api.resources import KeyLocks, _json, _quote, storage_key, storage_prefix
from tests.conftest import kind_info


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/pods", ("", "v1", "pods", "", "", "")),
        ("/api/v1/namespaces/ns/pods", ("", "v1", "pods", "ns", "", "")),
        ("/api/v1/namespaces/ns/pods/web", ("", "v1", "pods", "ns", "web", "")),
        ("/api/v1/namespaces/ns/pods/web/status", ("", "v1", "pods", "ns", "web", "status")),
        ("/api/v1/namespaces", ("", "v1", "namespaces", "", "", "")),
        ("/api/v1/namespaces/ns", ("", "v1", "namespaces", "", "ns", "")),
        ("/api/v1/namespaces/ns/finalize", ("", "v1", "namespaces", "", "ns", "finalize")),
        ("/api/v1/nodes/n1", ("", "v1", "nodes", "", "n1", "")),
        (
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
            ("apps", "v1", "deployments", "ns", "web", "scale"),
        ),
        ("/apis/kumo.dev/v1/functions", ("kumo.dev", "v1", "functions", "", "", "")),
    ],
)
def test_paths(path: str, expected: tuple[str, ...]) -> None:
    target = paths.parse(path)
    assert target.info is not None
    assert (
        target.group,
        target.version,
        target.info.plural,
        target.namespace,
        target.name,
        target.subresource,
    ) == expected


def test_group_version_paths_are_discovery() -> None:
    target = paths.parse("/apis/apps/v1")
    assert target.info is None and (target.group, target.version) == ("apps", "v1")


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api",
        "/apis/apps",
        "/api/v2/pods",
        "/apis/apps/v2/deployments",
        "/api/v1/widgets",
        "/api/v1/namespaces/ns/nodes",  # cluster-scoped kinds have no namespace
        "/api/v1/namespaces/ns/pods/web/nope",
        "/api/v1/namespaces/ns/configmaps/c/status",
        "/api/v1/namespaces/ns/pods/web/status/more",
        "/other/v1/pods",
    ],
)
def test_paths_that_are_not_served(path: str) -> None:
    with pytest.raises(paths.PathError):
        paths.parse(path)


def test_storage_keys() -> None:
    pods, nodes = kind_info("v1", "Pod"), kind_info("v1", "Node")
    assert storage_key(pods, "ns", "web") == "registry/core/pods/ns/web"
    assert storage_key(nodes, "", "n1") == "registry/core/nodes/n1"
    assert storage_prefix(pods, "ns") == "registry/core/pods/ns/"
    assert storage_prefix(pods, "") == "registry/core/pods/"
    # A namespace named like the start of another never shares a prefix with it.
    assert not storage_key(pods, "ns-2", "web").startswith(storage_prefix(pods, "ns"))


def test_invalid_is_worded_like_kubernetes() -> None:
    one = invalid("Deployment", "apps", "web", [("spec.replicas", "Invalid value: -1: bad")])
    assert one.code == 422
    assert one.message == 'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: bad'
    two = invalid("Pod", "", "p", [("a", "Required value"), ("b", "Forbidden: no")])
    assert two.message == 'Pod "p" is invalid: [a: Required value; b: Forbidden: no]'
    assert two.details is not None
    assert [c["reason"] for c in two.details["causes"]] == [
        "FieldValueRequired",
        "FieldValueForbidden",
    ]


def test_warning_headers_are_safe_ascii() -> None:
    assert _quote('unknown field "a"') == 'unknown field \\"a\\"'
    assert _quote("naïve\nline\u2028") == "na\\xefve\\nline\\u2028"
    assert _quote("x" * 2000).endswith("...")
    assert len(_quote("x" * 2000)) == 512
    response = _json({}, warnings=[f"w{i} ünïcode" for i in range(30)])
    values = response.headers.getlist("warning")
    assert len(values) == 20
    assert values[-1] == '299 - "and 11 more warnings"'
    assert all(v.isascii() for v in values)


async def test_key_locks_serialize_one_key_and_clean_up() -> None:
    locks = KeyLocks()
    order: list[str] = []

    async def hold(key: str, label: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{label} in")
            await asyncio.sleep(pause)
            order.append(f"{label} out")

    await asyncio.gather(hold("a", "first", 0.05), hold("a", "second", 0), hold("b", "other", 0))
    assert order.index("first out") < order.index("second in")
    assert order.index("other in") < order.index("first out")  # other keys do not wait
    assert len(locks) == 0
