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
  created on first use and never removed by the agent (it outlives the pod);
- ``downwardAPI``: the pod's own fields (name, namespace, uid, labels, annotations, a
  container's resources) as files, written like a ConfigMap and refreshed the same way;
- ``projected``: Secrets, ConfigMaps, downward API files and service-account tokens in one
  directory on a tmpfs (the ``kube-api-access-*`` volume every pod gets holds ``token``,
  ``ca.crt`` and ``namespace``). A token comes from the TokenRequest API, bound to the pod;
  ``refresh`` requests a new one once 80% of its lifetime has passed (or after 24 hours)
  and swaps the files atomically, as for ConfigMaps.

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
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kumo.client import ApiException
from kumo.model.core import (
    Container,
    DownwardAPIVolumeFile,
    KeyToPath,
    Pod,
    ProjectedVolumeSource,
    ServiceAccountTokenProjection,
    Volume,
)
from kumo.model.validation import QuantityError, memory_bytes
from kumo.node.api import NodeApi
from kumo.node.containers import ConfigError, EnvContext, field_value, resource_value
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

log = logging.getLogger(__name__)

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


# The kubelet's token manager: a token is renewed once 80% of its lifetime has passed, or
# once it is a day old, whichever comes first.
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class _Token:
    token: str
    issued_at: float  # epoch seconds
    expires_at: float

    def needs_refresh(self, now: float) -> bool:
        lifetime = max(self.expires_at - self.issued_at, 0.0)
        due = self.issued_at + min(lifetime * TOKEN_REFRESH_FRACTION, TOKEN_MAX_AGE_SECONDS)
        return now >= due


def downward_payload(
    pod: Pod, items: list[DownwardAPIVolumeFile], default_mode: int, ctx: EnvContext
) -> dict[str, tuple[bytes, int]]:
    """The files of a downwardAPI volume (or projection)."""
    payload: dict[str, tuple[bytes, int]] = {}
    for item in items:
        mode = item.mode if item.mode is not None else default_mode
        try:
            if item.field_ref is not None:
                value = field_value(pod, item.field_ref.field_path, ctx)
            elif item.resource_field_ref is not None:
                ref = item.resource_field_ref
                container = next(
                    (
                        c
                        for c in [*pod.spec.containers, *(pod.spec.init_containers or [])]
                        if c.name == ref.container_name
                    ),
                    None,
                )
                if container is None:
                    raise VolumeError(f"resourceFieldRef: no container {ref.container_name!r}")
                value = resource_value(
                    pod,
                    container=container,
                    name=ref.container_name,
                    resource=ref.resource,
                    divisor=ref.divisor,
                    ctx=ctx,
                )
            else:
                raise VolumeError(f"downwardAPI item {item.path!r} names no field")
        except ConfigError as err:
            raise VolumeError(str(err)) from err
        payload[item.path] = (value.encode(), mode)
    return payload


class VolumeManager:
    def __init__(self, pods_dir: Path, runtime: ContainerRuntime, api: NodeApi) -> None:
        self.pods_dir = pods_dir
        self.runtime = runtime
        self.api = api
        # What resourceFieldRef limits default to (the node's allocatable).
        self.node_cpu_millis = 0
        self.node_memory_bytes = 0
        # (pod uid, volume, path) -> the token written there.
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self.clock: Callable[[], float] = time.time  # epoch seconds

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
        """Rewrite ConfigMap, Secret, downwardAPI and projected volumes whose content
        changed, renewing service-account tokens that are due. Objects that are gone (or
        errors) leave the files as they are."""
        for volume in pod.spec.volumes or []:
            if (
                volume.config_map is None
                and volume.secret is None
                and volume.projected is None
                and volume.downward_api is None
            ):
                continue
            try:
                await self._prepare_one(pod, volume)
            except VolumeError as err:
                log.debug(
                    "pod %s: volume %s not refreshed: %s", pod.metadata.name, volume.name, err
                )

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
            cm = volume.config_map
            payload = await self._config_map_payload(
                namespace, cm.name, cm.items, cm.default_mode, cm.optional
            )
            return await self._write_volume(pod, "configmap", volume.name, payload)
        if volume.secret is not None:
            secret = volume.secret
            payload = await self._secret_payload(
                namespace, secret.secret_name, secret.items, secret.default_mode, secret.optional
            )
            return await self._write_volume(pod, "secret", volume.name, payload)
        if volume.downward_api is not None:
            downward = volume.downward_api
            mode = downward.default_mode if downward.default_mode is not None else 0o644
            payload = downward_payload(pod, downward.items or [], mode, self._env_context())
            return await self._write_volume(pod, "downward-api", volume.name, payload)
        if volume.projected is not None:
            payload = await self._projected_payload(pod, volume.name, volume.projected)
            return await self._write_volume(pod, "projected", volume.name, payload, tmpfs=True)
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

    def _env_context(self) -> EnvContext:
        return EnvContext(
            node_cpu_millis=self.node_cpu_millis, node_memory_bytes=self.node_memory_bytes
        )

    @staticmethod
    def _ensure_tmpfs(path: Path) -> None:
        """Projected volumes (tokens, secrets) live in memory, as the kubelet keeps them;
        where a tmpfs cannot be mounted (no privilege) they fall back to the disk."""
        if path.exists() and os.path.ismount(path):
            return
        path.mkdir(parents=True, exist_ok=True)
        try:
            _mount_tmpfs(path, None)
        except VolumeError as err:
            log.warning("%s; keeping the projected volume on disk", err)
            return
        os.chmod(path, 0o755)

    async def _projected_payload(
        self, pod: Pod, volume: str, source: ProjectedVolumeSource
    ) -> dict[str, tuple[bytes, int]]:
        namespace = pod.metadata.namespace or "default"
        mode = source.default_mode if source.default_mode is not None else 0o644
        payload: dict[str, tuple[bytes, int]] = {}
        for projection in source.sources or []:
            if projection.secret is not None:
                ref = projection.secret
                payload.update(
                    await self._secret_payload(namespace, ref.name, ref.items, mode, ref.optional)
                )
            elif projection.config_map is not None:
                cref = projection.config_map
                payload.update(
                    await self._config_map_payload(
                        namespace, cref.name, cref.items, mode, cref.optional
                    )
                )
            elif projection.downward_api is not None:
                payload.update(
                    downward_payload(
                        pod, projection.downward_api.items or [], mode, self._env_context()
                    )
                )
            elif projection.service_account_token is not None:
                token = await self._token(pod, volume, projection.service_account_token)
                payload[projection.service_account_token.path] = (token.encode(), mode)
        return payload

    async def _token(self, pod: Pod, volume: str, source: ServiceAccountTokenProjection) -> str:
        """The token for this projection: the one written before until it is due for
        renewal, else a new one from the TokenRequest API."""
        key = (pod.metadata.uid or "", volume, source.path)
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and not cached.needs_refresh(now):
            return cached.token
        seconds = source.expiration_seconds or 3600
        audiences = [source.audience] if source.audience else None
        try:
            token, expires = await self.api.request_token(pod, audiences, seconds)
        except ApiException as err:
            if cached is not None and cached.expires_at > now:
                log.warning(
                    "pod %s: renewing the token of volume %s failed (%s); keeping the current one",
                    pod.metadata.name,
                    volume,
                    err.message,
                )
                return cached.token
            account = pod.spec.service_account_name or "default"
            raise VolumeError(
                f"failed to fetch token for service account {account!r}: {err.message}"
            ) from err
        expires_at = expires.timestamp()
        if expires_at <= now:
            expires_at = now + seconds
        self._tokens[key] = _Token(token, now, expires_at)
        return token

    def token_expiry(self, uid: str, volume: str, path: str) -> float | None:
        """When the token written at ``path`` of the pod's ``volume`` expires (epoch)."""
        cached = self._tokens.get((uid, volume, path))
        return cached.expires_at if cached is not None else None

    @staticmethod
    def _fs_group(pod: Pod) -> int | None:
        context = pod.spec.security_context
        return context.fs_group if context is not None else None

    async def _write_volume(
        self,
        pod: Pod,
        kind: str,
        name: str,
        payload: dict[str, tuple[bytes, int]],
        *,
        tmpfs: bool = False,
    ) -> PreparedVolume:
        """Write ``payload`` as the files of the pod's read-only volume ``name`` (on a tmpfs
        where asked and possible)."""
        path = self._volume_dir(pod.metadata.uid or "", kind, name)
        if tmpfs:
            await asyncio.to_thread(self._ensure_tmpfs, path)
        await asyncio.to_thread(write_atomic, path, payload, group=self._fs_group(pod))
        return PreparedVolume(name, host_path=str(path), read_only=True)

    async def _config_map_payload(
        self,
        namespace: str,
        name: str | None,
        items: list[KeyToPath] | None,
        default_mode: int | None,
        optional: bool | None,
    ) -> dict[str, tuple[bytes, int]]:
        """The files of a configMap volume or projection (``default_mode`` 0644 when None)."""
        name = name or ""
        config_map = await self.api.get_config_map(namespace, name)
        mode = default_mode if default_mode is not None else 0o644
        if config_map is None:
            if optional:
                return {}
            raise VolumeError(f'configmap "{name}" not found')
        data = {k: v.encode() for k, v in (config_map.data or {}).items()}
        data.update({k: _decode_b64(v) for k, v in (config_map.binary_data or {}).items()})
        return _project(data, items, mode, bool(optional), f"configmap {name}")

    async def _secret_payload(
        self,
        namespace: str,
        name: str | None,
        items: list[KeyToPath] | None,
        default_mode: int | None,
        optional: bool | None,
    ) -> dict[str, tuple[bytes, int]]:
        """The files of a secret volume or projection (``default_mode`` 0400 when None)."""
        name = name or ""
        secret = await self.api.get_secret(namespace, name)
        mode = default_mode if default_mode is not None else 0o400
        if secret is None:
            if optional:
                return {}
            raise VolumeError(f'secret "{name}" not found')
        try:
            data = secret.decoded()
        except (binascii.Error, ValueError) as err:
            raise VolumeError(f"secret {name} holds invalid base64 data") from err
        return _project(data, items, mode, bool(optional), f"secret {name}")

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
        self._tokens = {key: token for key, token in self._tokens.items() if key[0] != uid}
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
