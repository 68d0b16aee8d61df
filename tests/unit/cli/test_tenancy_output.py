"""How quota, limit ranges and secrets print (kubectl's tables and describe pages)."""

from __future__ import annotations

import base64
import json

from kumo.cli.describe import describe
from kumo.cli.printers import render, table
from kumo.model.registry import by_kind

QUOTA = by_kind("v1", "ResourceQuota")
LIMITS = by_kind("v1", "LimitRange")
SECRET = by_kind("v1", "Secret")
assert QUOTA and LIMITS and SECRET

TEAM_QUOTA = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {
        "name": "team-quota",
        "namespace": "a",
        "creationTimestamp": "2020-01-01T00:00:00Z",
    },
    "spec": {"hard": {"pods": "3", "requests.cpu": "2", "limits.memory": "2Gi"}},
    "status": {
        "hard": {"pods": "3", "requests.cpu": "2", "limits.memory": "2Gi"},
        "used": {"pods": "1", "requests.cpu": "250m", "limits.memory": "512Mi"},
    },
}


def test_quota_table_has_kubectl_columns() -> None:
    rows = table(QUOTA, [TEAM_QUOTA])
    assert rows[0] == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert rows[1][0] == "team-quota"
    assert rows[1][2] == "pods: 1/3, requests.cpu: 250m/2"
    assert rows[1][3] == "limits.memory: 512Mi/2Gi"


def test_quota_without_status_yet_shows_zero_used() -> None:
    fresh = {**TEAM_QUOTA, "status": {}}
    assert table(QUOTA, [fresh])[1][2] == "pods: 0/3, requests.cpu: 0/2"


def test_describe_quota_lists_resource_used_hard() -> None:
    page = describe(QUOTA, TEAM_QUOTA, [])
    lines = page.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Resource")))
    assert (
        lines[start : start + 5]
        == render(
            [
                ["Resource", "Used", "Hard"],
                ["--------", "----", "----"],
                ["limits.memory", "512Mi", "2Gi"],
                ["pods", "1", "3"],
                ["requests.cpu", "250m", "2"],
            ]
        ).splitlines()
    )


def test_describe_scoped_quota_explains_scopes() -> None:
    scoped = {**TEAM_QUOTA, "spec": {"hard": {"pods": "3"}, "scopes": ["BestEffort"]}}
    page = describe(QUOTA, scoped, [])
    assert "Scopes:" in page and "best effort quality of service" in page


def test_limit_range_table_and_describe() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {
            "name": "limits",
            "namespace": "a",
            "creationTimestamp": "2020-01-01T00:00:00Z",
        },
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "max": {"cpu": "1"},
                    "default": {"cpu": "500m", "memory": "256Mi"},
                    "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
                },
                {"type": "Pod", "max": {"memory": "1Gi"}},
            ]
        },
    }
    assert table(LIMITS, [obj]) == [["NAME", "CREATED AT"], ["limits", "2020-01-01T00:00:00Z"]]
    rows = [line.split() for line in describe(LIMITS, obj, []).splitlines()]
    assert ["Container", "cpu", "-", "1", "250m", "500m", "-"] in rows
    assert ["Container", "memory", "-", "-", "256Mi", "256Mi", "-"] in rows
    assert ["Pod", "memory", "-", "1Gi", "-", "-", "-"] in rows


def test_describe_secret_never_shows_values_not_even_in_last_applied() -> None:
    value = b"hunter2-hunter2"
    encoded = base64.b64encode(value).decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "a",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    {"apiVersion": "v1", "kind": "Secret", "data": {"password": encoded}}
                ),
                "team": "a",
            },
        },
        "type": "Opaque",
        "data": {"password": encoded},
    }
    page = describe(SECRET, secret, [])
    assert "password:  15 bytes" in page
    assert "team=a" in page
    assert encoded not in page and encoded[:10] not in page and "hunter2" not in page
    assert "last-applied-configuration" not in page
