"""JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and the
three-way patch ``kumo apply`` sends."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumo.client.client import LAST_APPLIED, apply_plan
from kumo.model.patch import (
    PatchError,
    create_merge_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
    three_way_merge_patch,
)

# RFC 7386, appendix A.
RFC7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386_EXAMPLES)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    original = copy.deepcopy(target)
    assert merge_patch(target, patch) == result
    assert target == original  # the input is not modified


def test_create_merge_patch_is_the_inverse_of_merge_patch() -> None:
    original = {"a": 1, "b": {"c": 1, "d": 2}, "l": [1, 2], "gone": True}
    modified = {"a": 1, "b": {"c": 2}, "l": [2], "e": 3}
    patch = create_merge_patch(original, modified)
    assert patch == {"b": {"c": 2, "d": None}, "l": [2], "e": 3, "gone": None}
    assert merge_patch(original, patch) == modified
    assert create_merge_patch(modified, modified) == {}


DOC = {"a": [1, 2], "m": {"x": 1}}


@pytest.mark.parametrize(
    ("operations", "result"),
    [
        ([{"op": "add", "path": "/a/-", "value": 3}], {"a": [1, 2, 3], "m": {"x": 1}}),
        ([{"op": "add", "path": "/a/0", "value": 0}], {"a": [0, 1, 2], "m": {"x": 1}}),
        ([{"op": "add", "path": "/m/y", "value": 2}], {"a": [1, 2], "m": {"x": 1, "y": 2}}),
        ([{"op": "remove", "path": "/a/0"}], {"a": [2], "m": {"x": 1}}),
        ([{"op": "remove", "path": "/m"}], {"a": [1, 2]}),
        ([{"op": "replace", "path": "/m/x", "value": 5}], {"a": [1, 2], "m": {"x": 5}}),
        ([{"op": "move", "from": "/m/x", "path": "/z"}], {"a": [1, 2], "m": {}, "z": 1}),
        ([{"op": "copy", "from": "/a", "path": "/b"}], {"a": [1, 2], "b": [1, 2], "m": {"x": 1}}),
        (
            [{"op": "test", "path": "/a/1", "value": 2}, {"op": "remove", "path": "/a/1"}],
            {"a": [1], "m": {"x": 1}},
        ),
        ([{"op": "add", "path": "/m~1n", "value": 1}], {"a": [1, 2], "m": {"x": 1}, "m/n": 1}),
        ([{"op": "add", "path": "/t~0", "value": 1}], {"a": [1, 2], "m": {"x": 1}, "t~": 1}),
        ([{"op": "replace", "path": "", "value": {"new": True}}], {"new": True}),
    ],
)
def test_json_patch_operations(operations: list[dict[str, Any]], result: Any) -> None:
    original = copy.deepcopy(DOC)
    assert json_patch(DOC, operations) == result
    assert original == DOC


@pytest.mark.parametrize(
    ("operations", "problem"),
    [
        ({"op": "add"}, "must be a list of operations"),
        ([{"path": "/a"}], "needs 'op' and 'path'"),
        ([{"op": "bogus", "path": "/a"}], "unknown operation 'bogus'"),
        ([{"op": "bogus", "path": ""}], "unknown operation 'bogus'"),
        ([{"op": "add", "path": "a", "value": 1}], "must start with '/'"),
        ([{"op": "add", "path": "/a/01", "value": 1}], "invalid array index '01'"),
        ([{"op": "add", "path": "/a/9", "value": 1}], "out of bounds"),
        ([{"op": "add", "path": "/m"}], "'value' is required"),
        ([{"op": "replace", "path": "/nope", "value": 1}], "'nope' not found"),
        ([{"op": "remove", "path": "/a/5"}], "out of bounds"),
        ([{"op": "remove", "path": ""}], "cannot remove the whole document"),
        ([{"op": "test", "path": "/a", "value": [9]}], "test failed"),
        ([{"op": "move", "path": "/b"}], "'from' is required"),
        ([{"op": "add", "path": "/m/x/y", "value": 1}], "parent is not a container"),
        ([{"op": "add", "path": "/m/x/y/z", "value": 1}], "cannot descend into a scalar"),
        ([{"op": "add", "path": "/a", "value": 1}, {"op": "remove", "path": "/q"}], "operation 1"),
    ],
)
def test_json_patch_errors_name_the_operation(operations: Any, problem: str) -> None:
    with pytest.raises(PatchError) as caught:
        json_patch(DOC, operations)
    assert problem in str(caught.value)


POD_SPEC: dict[str, Any] = {
    "metadata": {"finalizers": ["a.example.com/f"], "labels": {"app": "web"}},
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}],
                "ports": [{"containerPort": 80, "name": "http"}],
            },
            {"name": "sidecar", "image": "envoy:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    },
}


def test_strategic_merge_patch_merges_lists_by_their_keys() -> None:
    patched = strategic_merge_patch(
        POD_SPEC,
        {
            "metadata": {"finalizers": ["b.example.com/f", "a.example.com/f"]},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:2",
                        "env": [{"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 443, "name": "https"}],
                    },
                    {"name": "logger", "image": "fluent:1"},
                ],
                "volumes": [{"name": "cache", "emptyDir": {}}],
            },
        },
    )
    web, sidecar, logger = patched["spec"]["containers"]
    assert web["image"] == "nginx:2"
    assert web["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert web["ports"] == [
        {"containerPort": 80, "name": "http"},
        {"containerPort": 443, "name": "https"},
    ]
    assert sidecar == {"name": "sidecar", "image": "envoy:1"}
    assert logger == {"name": "logger", "image": "fluent:1"}
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["data", "cache"]
    assert patched["metadata"]["finalizers"] == ["a.example.com/f", "b.example.com/f"]
    assert POD_SPEC["spec"]["containers"][0]["image"] == "nginx:1"  # input untouched


def test_strategic_merge_patch_directives() -> None:
    deleted = strategic_merge_patch(
        POD_SPEC, {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}
    )
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["web"]
    replaced = strategic_merge_patch(
        POD_SPEC, {"metadata": {"$patch": "replace", "labels": {"new": "1"}}}
    )
    assert replaced["metadata"] == {"labels": {"new": "1"}}
    removed = strategic_merge_patch(POD_SPEC, {"metadata": {"labels": None}})
    assert "labels" not in removed["metadata"]


def test_strategic_merge_patch_replaces_lists_without_a_merge_key() -> None:
    patched = strategic_merge_patch(
        {"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}},
        {"spec": {"containers": [{"name": "a", "args": ["z"]}]}},
    )
    assert patched["spec"]["containers"][0]["args"] == ["z"]


def test_three_way_patch_removes_what_the_user_dropped_and_keeps_what_others_set() -> None:
    last_applied = {"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}}
    modified = {"metadata": {"labels": {"a": "1"}}, "data": {"x": "9"}}
    live = {
        "metadata": {"labels": {"a": "1", "b": "2", "set-by-controller": "yes"}},
        "data": {"x": "1", "y": "2"},
        "status": {"ready": True},
    }
    patch = three_way_merge_patch(last_applied, modified, live)
    assert patch == {"metadata": {"labels": {"b": None}}, "data": {"x": "9", "y": None}}
    result = merge_patch(live, patch)
    assert result["metadata"]["labels"] == {"a": "1", "set-by-controller": "yes"}
    assert result["data"] == {"x": "9"}
    assert result["status"] == {"ready": True}


def test_three_way_patch_leaves_an_unchanged_list_alone_even_if_the_server_defaulted_it() -> None:
    manifest = {"spec": {"ports": [{"port": 80}]}}
    live = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}
    assert three_way_merge_patch(manifest, manifest, live) == {}
    changed = {"spec": {"ports": [{"port": 81}]}}
    assert three_way_merge_patch(manifest, changed, live) == changed


CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "default"},
    "data": {"a": "1", "b": "2"},
}


def test_apply_plan_creates_with_the_last_applied_annotation() -> None:
    plan = apply_plan(CONFIG_MAP, None)
    assert plan is not None
    assert plan["data"] == {"a": "1", "b": "2"}
    annotation = plan["metadata"]["annotations"][LAST_APPLIED]
    assert '"data":{"a":"1","b":"2"}' in annotation


def test_apply_plan_is_unchanged_for_the_same_manifest_and_patches_a_change() -> None:
    created = apply_plan(CONFIG_MAP, None)
    assert created is not None
    live = {**created, "metadata": {**created["metadata"], "uid": "u", "resourceVersion": "7"}}
    assert apply_plan(CONFIG_MAP, live) is None
    changed = {**CONFIG_MAP, "data": {"a": "1", "c": "3"}}
    patch = apply_plan(changed, live)
    assert patch is not None
    assert patch["data"] == {"b": None, "c": "3"}
    assert LAST_APPLIED in patch["metadata"]["annotations"]
    assert merge_patch(live, patch)["data"] == {"a": "1", "c": "3"}
