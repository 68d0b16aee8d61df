"""Real Kubernetes manifests apply as they are through the API: created without warnings,
re-applied unchanged, changed and configured."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumo.client import Client
from tests.conftest import ApiServerProcess, kind_info, unique_name

MANIFESTS = Path(__file__).resolve().parents[2] / "data" / "manifests"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def rename_cluster_scoped(docs: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """Cluster-scoped objects are shared by every test on the server: make their names unique."""
    out = copy.deepcopy(docs)
    for doc in out:
        info = kind_info(doc["apiVersion"], doc["kind"])
        if not info.namespaced:
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{suffix}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{suffix}"
    return out


@pytest.mark.parametrize("manifest", sorted(p.name for p in MANIFESTS.glob("*.yaml")))
def test_manifests_apply_as_they_are(
    api_server: ApiServerProcess, namespace: str, manifest: str
) -> None:
    warnings: list[str] = []
    docs = rename_cluster_scoped(load(manifest), namespace)
    with Client(api_server.client_config(namespace), on_warning=warnings.append) as client:
        created = [client.apply_raw(doc) for doc in docs]
        assert [r.action for r in created] == ["created"] * len(docs)
        assert warnings == []
        for doc, result in zip(docs, created, strict=True):
            assert result.object["kind"] == doc["kind"]
            assert result.object["metadata"]["name"] == doc["metadata"]["name"]

        again = [client.apply_raw(doc) for doc in docs]
        for doc, first, second in zip(docs, created, again, strict=True):
            if "stringData" in doc:
                # Write-only stringData is never in the live object, so kubectl (and kumo)
                # send it again; the server sees no change and writes nothing.
                assert second.action == "configured"
            else:
                assert second.action == "unchanged", doc["metadata"]["name"]
            assert (
                second.object["metadata"]["resourceVersion"]
                == (first.object["metadata"]["resourceVersion"])
            )

        changed = copy.deepcopy(docs[0])
        changed["metadata"].setdefault("labels", {})["applied-twice"] = "yes"
        result = client.apply_raw(changed)
        assert result.action == "configured"
        assert result.object["metadata"]["labels"]["applied-twice"] == "yes"
        assert warnings == []


def test_web_app_round_trip(client: Client, namespace: str) -> None:
    """The issue's demo: a Deployment, a Service and a ConfigMap, then a change of image."""
    docs = load("web-app.yaml")
    for doc in docs:
        client.apply_raw(doc)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    info = kind_info("apps/v1", "Deployment")
    live = client.get_raw(info, "web")
    assert live["spec"]["replicas"] == 3
    assert live["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert live["spec"]["template"]["spec"]["restartPolicy"] == "Always"

    updated = copy.deepcopy(deployment)
    updated["spec"]["template"]["spec"]["containers"][0]["image"] = "docker.io/library/nginx:1.28"
    del updated["spec"]["revisionHistoryLimit"]
    result = client.apply_raw(updated)
    assert result.action == "configured"
    assert result.object["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.28")
    assert result.object["metadata"]["generation"] == 2
    # A field the user stopped setting goes back to its default.
    assert result.object["spec"]["revisionHistoryLimit"] == 10
    service = kind_info("v1", "Service")
    assert client.get_raw(service, "web")["spec"]["ports"][0]["targetPort"] == "http"


def test_unique_name_helper_makes_dns_labels() -> None:
    name = unique_name("Some_Test")
    assert name.startswith("Some_Test-")
