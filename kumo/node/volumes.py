"""Pod volumes on the node.

Every pod gets a directory ``<data dir>/pods/<pod uid>/volumes/<kind>/<volume>``:

- ``emptyDir``: an empty directory (mode 0777) shared by the pod's containers and
  removed with the pod; ``medium: Memory`` mounts a tmpfs there (``sizeLimit`` caps it);
- ``configMap`` / ``secret``: the object's keys as files, written the way the kubelet
  does it (a timestamped directory, a ``..data`` symlink switched atomically, one
  symlink per visible name), with ``defaultMode`` / ``items[].mode`` (Secrets 0400,
  ConfigMaps 0644 by default), ``items`` choosing keys and paths, ``optional``
  tolerating a missing object or key; ``refresh`` rewrites them when the object
  changed. They are mounted read-only;
- ``hostPath``: the host path itself, after the ``type`` check (``DirectoryOrCreate``,
  ``Directory``, ``FileOrCreate``, ``File``, ``Socket``, ``CharDevice``, ``BlockDevice``);
- ``persistentVolumeClaim``: the runtime's named volume ``kumo-pvc-<namespace>-<claim>``,
  created on first use and never removed by the agent (it outlives the pod).

Problems raise ``VolumeError`` whose message is the kubelet's FailedMount text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ctypes
import ctypes.util
import datetime
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from kumo.model.core import (
    ConfigMapVolumeSource,
    Container,
    KeyToPath,
    Pod,
    SecretVolumeSource,
    Volume,
)
from kumo.model.validation import QuantityError, memory_bytes
from kumo.node.api import NodeApi
from kumo.node.runtime import (
    BindMount,
    ContainerRuntime,
    ContainerRuntimeError,
    Mount,
    VolumeMount,
)

__all__ = [
    "PVC_LABEL_NAME",
    "PVC_LABEL_NAMESPACE",
    "PreparedVolume",
    "VolumeError",
    "VolumeManager",
    "pvc_volume_name",
    "write_atomic",
]

PVC_LABEL_NAMESPACE = "kumo.dev/pvc-namespace"
PVC_LABEL_NAME = "kumo.dev/pvc-name"

_DATA_LINK = "..data"
_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2


class VolumeError(Exception):
    """A volume cannot be set up; ``str()`` is the FailedMount message."""


def pvc_volume_name(namespace: str, claim: str) -> str:
    return f"kumo-pvc-{namespace}-{claim}"


@dataclass(frozen=True, slots=True)
class PreparedVolume:
    """A volume ready to mount: a host directory/file, or a runtime named volume."""

    name: str
    host_path: str | None = None
    runtime_volume: str | None = None
    runtime_volume_path: str | None = None  # the named volume's directory on the host
    read_only: bool = False


# ---- atomic writer ------------------------------------------------------------------------


def _clean_relative(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or path.startswith("/") or ".." in parts or parts[0].startswith(".."):
        raise VolumeError(f"invalid path {path!r}: must be relative and must not contain '..'")
    return "/".join(parts)


def _current_payload(target: Path) -> dict[str, tuple[bytes, int]] | None:
    data = target / _DATA_LINK
    if not data.is_symlink():
        return None
    root = data.resolve()
    payload: dict[str, tuple[bytes, int]] = {}
    for directory, _, files in os.walk(root):
        for file in files:
            full = Path(directory) / file
            info = full.lstat()
            payload[str(full.relative_to(root))] = (full.read_bytes(), stat.S_IMODE(info.st_mode))
    return payload


def write_atomic(
    target: Path, payload: dict[str, tuple[bytes, int]], *, group: int | None = None
) -> bool:
    """Make ``target`` show exactly ``payload`` (relative path → (content, mode)), switching
    from the previous content in one rename. Returns False when nothing changed."""
    payload = {_clean_relative(path): value for path, value in payload.items()}
    if group is not None:
        payload = {path: (data, mode | 0o040) for path, (data, mode) in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o755)
    if _current_payload(target) == payload:
        return False
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    fresh = target / stamp
    fresh.mkdir(mode=0o755)
    for relative, (data, mode) in payload.items():
        path = fresh / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(path, "wb") as out:
            out.write(data)
        os.chmod(path, mode)
        if group is not None:
            os.chown(path, 0, group)
    old = (target / _DATA_LINK).resolve() if (target / _DATA_LINK).is_symlink() else None
    temporary = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(stamp)
    os.rename(temporary, target / _DATA_LINK)
    visible = {relative.split("/", 1)[0] for relative in payload}
    for name in visible:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{_DATA_LINK}/{name}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in visible and entry.is_symlink():
            entry.unlink()
    if old is not None and old != fresh.resolve():
        shutil.rmtree(old, ignore_errors=True)
    return True


# ---- tmpfs ----------------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _mount_tmpfs(path: Path, size_bytes: int | None) -> None:
    options = "mode=0777" + (f",size={size_bytes}" if size_bytes else "")
    result = _c().mount(
        b"tmpfs", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()
    )
    if result != 0:
        err = ctypes.get_errno()
        raise VolumeError(f"mounting a tmpfs at {path} failed: {os.strerror(err)}")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            points = [line.split()[4] for line in mountinfo]
    except OSError:
        return []
    return sorted((p for p in points if p.startswith(prefix)), reverse=True)


def _unmount_all(root: Path) -> None:
    for point in _mounts_under(root):
        _c().umount2(point.encode(), _MNT_DETACH)


# ---- host path ----------------------------------------------------------------------------


def check_host_path(path: str, kind: str) -> None:
    """Kubernetes' hostPath type check (creating what ``*OrCreate`` asks for)."""
    target = Path(path)
    try:
        if kind == "DirectoryOrCreate":
            if not target.exists():
                target.mkdir(parents=True, mode=0o755)
            elif not target.is_dir():
                raise VolumeError(f"hostPath type check failed: {path} is not a directory")
        elif kind == "Directory":
            if not target.is_dir():
                raise VolumeError(f"hostPath type check failed: {path} is not a directory")
        elif kind == "FileOrCreate":
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                fd = os.open(target, os.O_CREAT | os.O_WRONLY, 0o644)
                os.close(fd)
            elif not target.is_file():
                raise VolumeError(f"hostPath type check failed: {path} is not a file")
        elif kind == "File":
            if not target.is_file():
                raise VolumeError(f"hostPath type check failed: {path} is not a file")
        elif kind == "Socket":
            if not target.is_socket():
                raise VolumeError(f"hostPath type check failed: {path} is not a socket file")
        elif kind == "CharDevice":
            if not target.is_char_device():
                raise VolumeError(f"hostPath type check failed: {path} is not a character device")
        elif kind == "BlockDevice":
            if not target.is_block_device():
                raise VolumeError(f"hostPath type check failed: {path} is not a block device")
        elif kind not in ("", None):
            raise VolumeError(f"hostPath type {kind!r} is not supported")
        elif not target.exists():
            # Type "" skips the checks, but the runtime can only bind what exists.
            raise VolumeError(f"hostPath {path} does not exist")
    except OSError as err:
        raise VolumeError(f"hostPath {path}: {err.strerror or err}") from err


# ---- the manager ------------------------------------------------------------------------


def _decode_b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise VolumeError(f"invalid base64 data: {err}") from err


def _project(
    data: dict[str, bytes],
    items: list[KeyToPath] | None,
    default_mode: int,
    optional: bool,
    what: str,
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    payload: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item.key not in data:
            if optional:
                continue
            raise VolumeError(f"{what} references non-existent config key: {item.key}")
        payload[item.path] = (data[item.key], item.mode if item.mode is not None else default_mode)
    return payload


class VolumeManager:
    def __init__(self, pods_dir: Path, runtime: ContainerRuntime, api: NodeApi) -> None:
        self.pods_dir = pods_dir
        self.runtime = runtime
        self.api = api

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def _volume_dir(self, uid: str, kind: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / kind / name

    async def prepare(self, pod: Pod) -> dict[str, PreparedVolume]:
        """Set up every volume of the pod (idempotent: a second call only fills in
        what is missing and refreshes ConfigMaps and Secrets)."""
        prepared: dict[str, PreparedVolume] = {}
        for volume in pod.spec.volumes or []:
            try:
                prepared[volume.name] = await self._prepare_one(pod, volume)
            except VolumeError as err:
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{volume.name}" : {err}'
                ) from err
        return prepared

    async def refresh(self, pod: Pod) -> None:
        """Rewrite ConfigMap and Secret volumes whose objects changed. Objects that are
        gone (or errors) leave the files as they are."""
        for volume in pod.spec.volumes or []:
            if volume.config_map is None and volume.secret is None:
                continue
            with contextlib.suppress(VolumeError):
                await self._prepare_one(pod, volume)

    async def _prepare_one(self, pod: Pod, volume: Volume) -> PreparedVolume:
        uid = pod.metadata.uid or ""
        namespace = pod.metadata.namespace or "default"
        if volume.empty_dir is not None:
            path = self._volume_dir(uid, "empty-dir", volume.name)
            fresh = not path.exists()
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
            if fresh:
                os.chmod(path, 0o777)
            memory = (volume.empty_dir.medium or "") == "Memory"
            if memory and not await asyncio.to_thread(os.path.ismount, path):
                size = None
                if volume.empty_dir.size_limit:
                    try:
                        size = memory_bytes(volume.empty_dir.size_limit)
                    except QuantityError as err:
                        raise VolumeError(f"invalid sizeLimit: {err}") from err
                await asyncio.to_thread(_mount_tmpfs, path, size)
            return PreparedVolume(volume.name, host_path=str(path))
        if volume.host_path is not None:
            source = volume.host_path
            await asyncio.to_thread(check_host_path, source.path, source.type or "")
            return PreparedVolume(volume.name, host_path=source.path)
        if volume.config_map is not None:
            payload = await self._config_map_payload(namespace, volume.config_map)
            path = self._volume_dir(uid, "configmap", volume.name)
            await asyncio.to_thread(write_atomic, path, payload, group=self._fs_group(pod))
            return PreparedVolume(volume.name, host_path=str(path), read_only=True)
        if volume.secret is not None:
            payload = await self._secret_payload(namespace, volume.secret)
            path = self._volume_dir(uid, "secret", volume.name)
            await asyncio.to_thread(write_atomic, path, payload, group=self._fs_group(pod))
            return PreparedVolume(volume.name, host_path=str(path), read_only=True)
        if volume.persistent_volume_claim is not None:
            claim = volume.persistent_volume_claim
            name = pvc_volume_name(namespace, claim.claim_name)
            try:
                info = await self.runtime.create_volume(
                    name, {PVC_LABEL_NAMESPACE: namespace, PVC_LABEL_NAME: claim.claim_name}
                )
            except ContainerRuntimeError as err:
                raise VolumeError(f"persistent volume {name}: {err.reason}") from err
            return PreparedVolume(
                volume.name,
                runtime_volume=name,
                runtime_volume_path=info.mountpoint or None,
                read_only=bool(claim.read_only),
            )
        raise VolumeError("the volume type is not supported by kumo")

    @staticmethod
    def _fs_group(pod: Pod) -> int | None:
        context = pod.spec.security_context
        return context.fs_group if context is not None else None

    async def _config_map_payload(
        self, namespace: str, source: ConfigMapVolumeSource
    ) -> dict[str, tuple[bytes, int]]:
        name = source.name or ""
        config_map = await self.api.get_config_map(namespace, name)
        mode = source.default_mode if source.default_mode is not None else 0o644
        if config_map is None:
            if source.optional:
                return {}
            raise VolumeError(f'configmap "{name}" not found')
        data = {k: v.encode() for k, v in (config_map.data or {}).items()}
        data.update({k: _decode_b64(v) for k, v in (config_map.binary_data or {}).items()})
        return _project(data, source.items, mode, bool(source.optional), f"configmap {name}")

    async def _secret_payload(
        self, namespace: str, source: SecretVolumeSource
    ) -> dict[str, tuple[bytes, int]]:
        name = source.secret_name or ""
        secret = await self.api.get_secret(namespace, name)
        mode = source.default_mode if source.default_mode is not None else 0o400
        if secret is None:
            if source.optional:
                return {}
            raise VolumeError(f'secret "{name}" not found')
        try:
            data = secret.decoded()
        except (binascii.Error, ValueError) as err:
            raise VolumeError(f"secret {name} holds invalid base64 data") from err
        return _project(data, source.items, mode, bool(source.optional), f"secret {name}")

    # ---- mounts -------------------------------------------------------------------------

    @staticmethod
    def mounts_for(container: Container, prepared: dict[str, PreparedVolume]) -> tuple[Mount, ...]:
        """The runtime mounts of one container (``volumeMounts`` with ``subPath``)."""
        mounts: list[Mount] = []
        for mount in container.volume_mounts or []:
            volume = prepared.get(mount.name)
            if volume is None:
                raise VolumeError(f'volume "{mount.name}" is not prepared')
            read_only = bool(mount.read_only) or volume.read_only
            sub_path = mount.sub_path or ""
            if volume.runtime_volume is not None and not sub_path:
                mounts.append(VolumeMount(volume.runtime_volume, mount.mount_path, read_only))
                continue
            base = volume.host_path or volume.runtime_volume_path
            if base is None:
                raise VolumeError(f'volume "{mount.name}" has no host path for a subPath')
            source = base
            if sub_path:
                source = os.path.join(base, _clean_relative(sub_path))
                if not os.path.exists(source):
                    os.makedirs(source, mode=0o777, exist_ok=True)
            mounts.append(BindMount(source, mount.mount_path, read_only))
        return tuple(mounts)

    # ---- cleanup ------------------------------------------------------------------------

    async def cleanup(self, uid: str) -> None:
        """Remove the pod's directory (unmounting any tmpfs first). Named volumes stay."""
        root = self.pod_dir(uid)
        if not root.exists():
            return
        await asyncio.to_thread(_unmount_all, root)
        await asyncio.to_thread(shutil.rmtree, root, True)

    def known_pod_uids(self) -> list[str]:
        try:
            return [entry.name for entry in self.pods_dir.iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return []
