"""Projected and downwardAPI volumes on the node: the kube-api-access volume's files, tokens
from the TokenRequest API renewed at 80% of their lifetime, failures as FailedMount."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from kumo.client import ApiException
from kumo.node.runtime import BindMount
from kumo.node.runtime.fake import FakeRuntime
from kumo.node.volumes import VolumeError, VolumeManager, _Token
from tests.unit.node.agent.conftest import FakeApi, make_pod

Obj = dict[str, Any]
MOUNT = "/var/run/secrets/kumo.dev/serviceaccount"


def kube_api_access(name: str = "kube-api-access-x2b4c") -> Obj:
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


def visible(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".."))


def account_pod(**spec: Any) -> Any:
    return make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "volumeMounts": [
                    {"name": "kube-api-access-x2b4c", "mountPath": MOUNT, "readOnly": True}
                ],
            }
        ],
        name="lister-pod",
        serviceAccountName="lister",
        volumes=[kube_api_access()],
        **spec,
    )


async def test_kube_api_access_volume_files(tmp_path: Path) -> None:
    api = FakeApi()
    api.add_config_map("kube-root-ca.crt", {"ca.crt": "PEM"})
    pod = account_pod()
    manager = VolumeManager(tmp_path / "pods", FakeRuntime(), api)
    try:
        prepared = await manager.prepare(pod)
        volume = prepared["kube-api-access-x2b4c"]
        root = Path(volume.host_path or "")
        assert root.parent.name == "projected"
        assert visible(root) == ["ca.crt", "namespace", "token"]
        assert (root / "token").read_text() == "token-lister-1"
        assert (root / "ca.crt").read_text() == "PEM"
        assert (root / "namespace").read_text() == "ns"
        for name in ("token", "ca.crt", "namespace"):
            assert stat.S_IMODE((root / name).stat().st_mode) == 0o644
        assert volume.read_only
        if os.geteuid() == 0:  # the kubelet keeps tokens in memory
            assert mounted(root)
        # The token is bound to the pod, for its service account, with the default audience.
        assert api.token_requests == [("ns", "lister", "lister-pod", pod.metadata.uid, None, 3607)]
        mounts = manager.mounts_for(pod.spec.containers[0], prepared)
        assert mounts == (BindMount(str(root), MOUNT, True),)
    finally:
        await manager.cleanup(pod.metadata.uid or "")
    assert not (tmp_path / "pods" / (pod.metadata.uid or "")).exists()


async def test_token_is_renewed_after_80_percent_of_its_lifetime(tmp_path: Path) -> None:
    api = FakeApi()
    api.add_config_map("kube-root-ca.crt", {"ca.crt": "PEM"})
    api.token_lifetime = 1000
    clock = [time.time()]  # the fake API stamps expiry from the real clock
    pod = account_pod()
    manager = VolumeManager(tmp_path / "pods", FakeRuntime(), api)
    manager.clock = lambda: clock[0]
    try:
        prepared = await manager.prepare(pod)
        token_file = Path(prepared["kube-api-access-x2b4c"].host_path or "") / "token"
        assert token_file.read_text() == "token-lister-1"
        clock[0] += 700  # 70%: not yet
        await manager.refresh(pod)
        assert len(api.token_requests) == 1
        clock[0] += 150  # 85%: renewed, swapped in place
        await manager.refresh(pod)
        assert len(api.token_requests) == 2
        assert token_file.read_text() == "token-lister-2"
        # Renewal failing while the token is still valid keeps the current one.
        clock[0] += 850
        api.token_error = ApiException(503, {"reason": "ServiceUnavailable", "message": "down"})
        await manager.refresh(pod)
        assert token_file.read_text() == "token-lister-2"
    finally:
        await manager.cleanup(pod.metadata.uid or "")


def test_token_refresh_rule() -> None:
    token = _Token("t", issued_at=0.0, expires_at=3600.0)
    assert not token.needs_refresh(2879.0)
    assert token.needs_refresh(2880.0)
    year = _Token("t", issued_at=0.0, expires_at=365 * 86400.0)
    assert not year.needs_refresh(86399.0)
    assert year.needs_refresh(86400.0)  # at most a day old


async def test_token_failure_is_a_failed_mount(tmp_path: Path) -> None:
    api = FakeApi()
    api.add_config_map("kube-root-ca.crt", {"ca.crt": "PEM"})
    api.token_error = ApiException(
        404, {"reason": "NotFound", "message": 'serviceaccounts "lister" not found'}
    )
    manager = VolumeManager(tmp_path / "pods", FakeRuntime(), api)
    pod = account_pod()
    try:
        with pytest.raises(VolumeError) as caught:
            await manager.prepare(pod)
    finally:
        await manager.cleanup(pod.metadata.uid or "")
    assert str(caught.value) == (
        'MountVolume.SetUp failed for volume "kube-api-access-x2b4c" : failed to fetch token'
        " for service account 'lister': serviceaccounts \"lister\" not found"
    )


async def test_projected_secret_config_map_and_downward_api(tmp_path: Path) -> None:
    api = FakeApi()
    api.add_config_map("cfg", {"a": "1", "b": "2"})
    api.add_secret("sec", {"password": "hunter2"})
    pod = make_pod(
        [{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "64Mi"}}}],
        volumes=[
            {
                "name": "all",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [
                        {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "cfg/a"}]}},
                        {"secret": {"name": "sec"}},
                        {"secret": {"name": "absent", "optional": True}},
                        {
                            "serviceAccountToken": {
                                "audience": "vault",
                                "expirationSeconds": 600,
                                "path": "vault-token",
                            }
                        },
                    ],
                },
            },
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                        {
                            "path": "mem",
                            "mode": 0o600,
                            "resourceFieldRef": {
                                "containerName": "c",
                                "resource": "limits.memory",
                                "divisor": "1Mi",
                            },
                        },
                    ]
                },
            },
        ],
    )
    manager = VolumeManager(tmp_path / "pods", FakeRuntime(), api)
    try:
        prepared = await manager.prepare(pod)
        root = Path(prepared["all"].host_path or "")
        assert visible(root) == ["cfg", "password", "vault-token"]
        assert (root / "cfg" / "a").read_text() == "1"
        assert (root / "password").read_text() == "hunter2"
        assert stat.S_IMODE((root / "password").stat().st_mode) == 0o440
        assert api.token_requests[0][4:] == (["vault"], 600)
        info = Path(prepared["info"].host_path or "")
        assert (info / "name").read_text() == "p"
        assert (info / "mem").read_text() == "64"
        assert stat.S_IMODE((info / "mem").stat().st_mode) == 0o600
        assert stat.S_IMODE((info / "name").stat().st_mode) == 0o644
    finally:
        await manager.cleanup(pod.metadata.uid or "")
