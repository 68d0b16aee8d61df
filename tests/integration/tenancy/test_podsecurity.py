"""Pod Security admission against the real API server: namespace labels choose the level;
enforce refuses, warn and audit warn, workload templates get warnings."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from kumo.client import ApiException, Client
from tests.conftest import ApiServerProcess

from .conftest import NAMESPACE, POD, pod

ENFORCE = "pod-security.kubernetes.io/enforce"
BACKSLASH = chr(92)


def compliant(name: str) -> dict[str, Any]:
    body = pod(name)
    body["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    body["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return body


def privileged(name: str) -> dict[str, Any]:
    body = pod(name)
    body["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    return body


def label(client: Client, namespace: str, labels: dict[str, str | None]) -> httpx.Response:
    return client.request(
        "PATCH",
        NAMESPACE.path(None, namespace),
        body={"metadata": {"labels": labels}},
        content_type="application/merge-patch+json",
    )


def warnings_of(response: httpx.Response) -> list[str]:
    """The ``Warning`` headers as text (``299 - "..."`` unquoted)."""
    out = []
    for header in response.headers.get_list("warning"):
        assert header.startswith('299 - "') and header.endswith('"'), header
        out.append(header[7:-1].replace(BACKSLASH + '"', '"'))
    return out


def test_restricted_namespace_refuses_a_privileged_pod_and_accepts_a_compliant_one(
    client: Client, namespace: str
) -> None:
    label(client, namespace, {ENFORCE: "restricted"})
    with pytest.raises(ApiException) as caught:
        client.create_raw(privileged("priv"), namespace)
    error = caught.value
    assert error.code == 403
    assert error.message.startswith(
        'pods "priv" is forbidden: violates PodSecurity "restricted:latest": '
        "allowPrivilegeEscalation != false "
        '(container "main" must set securityContext.allowPrivilegeEscalation=false), '
    )
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in (
        error.message
    )
    assert "runAsNonRoot != true" in error.message
    created = client.create_raw(compliant("ok"), namespace)
    assert created["metadata"]["name"] == "ok"
    # A plain pod is refused at restricted, allowed at baseline.
    with pytest.raises(ApiException):
        client.create_raw(pod("plain"), namespace)
    label(client, namespace, {ENFORCE: "baseline"})
    client.create_raw(pod("plain"), namespace)
    with pytest.raises(ApiException) as caught:
        client.create_raw(privileged("priv"), namespace)
    assert caught.value.message == (
        'pods "priv" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "main" must not set securityContext.privileged=true)'
    )


def test_default_is_privileged(client: Client, namespace: str) -> None:
    created = client.create_raw(privileged("priv"), namespace)
    assert created["spec"]["containers"][0]["securityContext"]["privileged"] is True


def test_warn_and_audit_labels_warn_without_refusing(
    api_server: ApiServerProcess, client: Client, namespace: str
) -> None:
    label(
        client,
        namespace,
        {
            ENFORCE: "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        },
    )
    with api_server.http() as http:
        response = http.post(POD.path(namespace), content=json.dumps(pod("plain")))
        assert response.status_code == 201
        warnings = warnings_of(response)
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(
            'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
            ' (container "main" must set securityContext.allowPrivilegeEscalation=false)'
        )
        quiet = http.post(POD.path(namespace), content=json.dumps(compliant("fine")))
        assert quiet.status_code == 201
        assert warnings_of(quiet) == []


def test_workload_templates_get_warnings_not_refusals(
    api_server: ApiServerProcess, client: Client, namespace: str
) -> None:
    label(client, namespace, {ENFORCE: "restricted"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": privileged("x") | {"metadata": {"labels": {"app": "web"}}},
        },
    }
    deployment["spec"]["template"].pop("apiVersion")
    deployment["spec"]["template"].pop("kind")
    with api_server.http() as http:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        response = http.post(path, content=json.dumps(deployment))
        assert response.status_code == 201, response.text
        warnings = warnings_of(response)
        # Too long for a header with every detail: the reasons, as Kubernetes lists them.
        assert warnings == [
            'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false,'
            " unrestricted capabilities, privileged, runAsNonRoot != true, seccompProfile"
        ]


def test_bad_labels_are_invalid_and_tightening_warns_about_existing_pods(
    client: Client, namespace: str
) -> None:
    with pytest.raises(ApiException) as caught:
        label(client, namespace, {ENFORCE: "strict"})
    assert caught.value.code == 422
    assert (
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": '
        "must be one of privileged, baseline, restricted"
    ) in caught.value.message
    client.create_raw(privileged("priv-1"), namespace)
    client.create_raw(privileged("priv-2"), namespace)
    client.create_raw(compliant("fine"), namespace)
    seen: list[str] = []
    client.on_warning = seen.append
    label(client, namespace, {ENFORCE: "baseline"})
    assert seen == [
        f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level'
        ' "baseline:latest"',
        "priv-1 (and 1 other pods): privileged",
    ]
    # Existing pods stay; only new ones are held to the level.
    items, _ = client.list_all_raw(POD, namespace)
    assert len(items) == 3
