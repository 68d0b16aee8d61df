"""Pod volumes on disk: ConfigMap/Secret files, emptyDir, hostPath checks, PVCs, mounts."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from kumo.node.runtime import BindMount, VolumeMount
from kumo.node.runtime.fake import FakeRuntime
from kumo.node.volumes import (
    VolumeError,
    VolumeManager,
    check_host_path,
    pvc_volume_name,
    write_atomic,
)
from tests.unit.node.agent.conftest import FakeApi, make_pod


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def visible(directory: str | None) -> list[str]:
    """The names a container sees (the writer's ``..`` bookkeeping left out)."""
    return sorted(p.name for p in Path(directory or "").iterdir() if not p.name.startswith(".."))


def test_atomic_writer_switches_content_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})
    assert (target / "a").read_bytes() == b"1"
    assert (target / "dir" / "b").read_bytes() == b"2"
    assert (target / "a").is_symlink() and os.readlink(target / "a") == "..data/a"
    assert mode(target / "dir" / "b") == 0o400
    first = (target / "..data").resolve()
    assert not write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})  # unchanged
    assert write_atomic(target, {"a": (b"new", 0o644)})
    assert (target / "a").read_bytes() == b"new"
    assert not (target / "dir").exists()  # a key that went away is gone
    assert not first.exists()  # the old generation is removed
    with pytest.raises(VolumeError, match="must be relative"):
        write_atomic(target, {"../escape": (b"x", 0o644)})


async def test_config_map_and_secret_volumes(tmp_path: Path) -> None:
    api = FakeApi()
    api.add_config_map("cfg", {"app.conf": "x=1", "other": "y"})
    api.add_secret("sec", {"password": "hunter2", "token": "t"})
    pod = make_pod(
        [{"name": "c", "image": "busybox"}],
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {
                "name": "picked",
                "configMap": {
                    "name": "cfg",
                    "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o600}],
                    "defaultMode": 0o440,
                },
            },
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "sec-mode", "secret": {"secretName": "sec", "defaultMode": 0o644}},
            {"name": "maybe", "secret": {"secretName": "absent", "optional": True}},
        ],
    )
    manager = VolumeManager(tmp_path / "pods", FakeRuntime(), api)
    prepared = await manager.prepare(pod)
    root = Path(prepared["cfg"].host_path or "")
    assert visible(prepared["cfg"].host_path) == ["app.conf", "other"]
    assert (root / "app.conf").read_text() == "x=1" and mode(root / "app.conf") == 0o644
    picked = Path(prepared["picked"].host_path or "")
    assert (picked / "conf" / "app.conf").read_text() == "x=1"
    assert mode(picked / "conf" / "app.conf") == 0o600
    assert not (picked / "other").exists()
    secret = Path(prepared["sec"].host_path or "")
    assert (secret / "password").read_text() == "hunter2"
    assert mode(secret / "password") == 0o400  # secrets are 0400 by default
    assert mode(Path(prepared["sec-mode"].host_path or "") / "token") == 0o644
    assert visible(prepared["maybe"].host_path) == []
    assert prepared["cfg"].read_only and prepared["sec"].read_only

    # The objects change: refresh rewrites the files.
    api.add_config_map("cfg", {"app.conf": "x=2"})
    await manager.refresh(pod)
    assert (root / "app.conf").read_text() == "x=2"
    assert not (root / "other").exists()


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"configMap": {"name": "absent"}}, 'configmap "absent" not found'),
        ({"secret": {"secretName": "absent"}}, 'secret "absent" not found'),
        (
            {"configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
            "configmap cfg references non-existent config key: nope",
        ),
    ],
)
async def test_volume_errors_read_like_failed_mount(
    tmp_path: Path, volume: dict[str, object], message: str
) -> None:
    api = FakeApi()
    api.add_config_map("cfg", {"a": "1"})
    pod = make_pod([{"name": "c", "image": "busybox"}], volumes=[{"name": "v", **volume}])
    with pytest.raises(VolumeError) as caught:
        await VolumeManager(tmp_path, FakeRuntime(), api).prepare(pod)
    assert str(caught.value) == f'MountVolume.SetUp failed for volume "v" : {message}'


async def test_empty_dir_pvc_and_mounts(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "scratch", "mountPath": "/sub", "subPath": "a/b"},
                    {"name": "data", "mountPath": "/data"},
                    {"name": "ro-data", "mountPath": "/ro", "readOnly": True},
                ],
            }
        ],
        volumes=[
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "store"}},
            {"name": "ro-data", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}},
        ],
    )
    manager = VolumeManager(tmp_path / "pods", runtime, FakeApi())
    prepared = await manager.prepare(pod)
    scratch = Path(prepared["scratch"].host_path or "")
    uid = pod.metadata.uid or ""
    assert scratch == tmp_path / "pods" / uid / "volumes" / "empty-dir" / "scratch"
    assert mode(scratch) == 0o777
    assert pvc_volume_name("ns", "store") == "kumo-pvc-ns-store"
    assert [v.name for v in await runtime.list_volumes()] == ["kumo-pvc-ns-store"]
    mounts = manager.mounts_for(pod.spec.containers[0], prepared)
    assert mounts == (
        BindMount(str(scratch), "/scratch", False),
        BindMount(str(scratch / "a" / "b"), "/sub", False),
        VolumeMount("kumo-pvc-ns-store", "/data", False),
        VolumeMount("kumo-pvc-ns-store", "/ro", True),
    )
    assert (scratch / "a" / "b").is_dir()
    assert manager.known_pod_uids() == [pod.metadata.uid]
    await manager.cleanup(pod.metadata.uid or "")
    assert not (tmp_path / "pods" / (pod.metadata.uid or "")).exists()
    assert [v.name for v in await runtime.list_volumes()] == ["kumo-pvc-ns-store"]  # kept


def test_host_path_type_checks(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    file = tmp_path / "f"
    file.write_text("x")
    check_host_path(str(directory), "Directory")
    check_host_path(str(file), "File")
    check_host_path(str(file), "")
    check_host_path(str(tmp_path / "new" / "dir"), "DirectoryOrCreate")
    assert (tmp_path / "new" / "dir").is_dir()
    check_host_path(str(tmp_path / "new" / "file"), "FileOrCreate")
    assert (tmp_path / "new" / "file").is_file()
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock_path))
        check_host_path(str(sock_path), "Socket")
    check_host_path("/dev/null", "CharDevice")
    failures = {
        (str(file), "Directory"): "is not a directory",
        (str(directory), "File"): "is not a file",
        (str(file), "Socket"): "is not a socket file",
        (str(file), "BlockDevice"): "is not a block device",
        (str(tmp_path / "missing"), ""): "does not exist",
        (str(file), "Weird"): "not supported",
    }
    for (path, kind), message in failures.items():
        with pytest.raises(VolumeError, match=message):
            check_host_path(path, kind)
