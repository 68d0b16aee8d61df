"""Base images for nodes without a registry (``kumo images bootstrap``).

Two images are built from Debian packages the node can install, then imported
into Podman's storage through the runtime (``podman import`` over the API):

``busybox``
    A root filesystem holding Debian's ``busybox-static`` binary as
    ``/bin/busybox`` plus a symlink for each of its applets (sh, wget, nc,
    httpd, ...), a minimal /etc/passwd and /etc/group; ``CMD ["sh"]``. ~2 MB.
    Names: ``localhost/kumo/busybox:latest``, ``docker.io/library/busybox:latest``
    and ``docker.io/library/busybox:<busybox version>`` (e.g. ``1.35`` and ``1.35.0``).

``python``
    Debian (the host's release, e.g. bookworm) minbase + python3,
    ca-certificates and netbase, made by ``mmdebstrap`` from the host's own apt
    sources; ``CMD ["python3"]``. Names, for Debian's Python X.Y:
    ``localhost/kumo/python:X.Y``, ``localhost/kumo/python:latest``,
    ``docker.io/library/python:X.Y``, ``docker.io/library/python:X.Y-slim`` and
    ``docker.io/library/python:X.Y-slim-<release>``.

The ``docker.io/library/...`` names let ordinary manifests (``image: busybox``,
``image: python:3.11-slim``) run offline: Podman resolves those short names to
``docker.io/library`` and finds the local image, so nothing is pulled.

Bootstrapping is idempotent: an image whose ``localhost/kumo/...`` name exists is
kept (missing alias names are re-added) unless ``force`` is given. The mmdebstrap
tarball is cached (``cache_dir``), so a forced rebuild only re-imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kumo.node.runtime import ContainerRuntime, ImageInfo, ImagePullError

__all__ = [
    "IMAGE_KEYS",
    "BootstrapError",
    "BootstrapResult",
    "ImageRow",
    "Progress",
    "bootstrap",
    "busybox_rootfs",
    "default_cache_dir",
    "host_apt_sources",
    "host_debian_release",
    "list_images",
]

#: Callback ``(image key, stage, fraction of that image done in 0..1)``.
Progress = Callable[[str, str, float], None]

IMAGE_KEYS = ("busybox", "python")

PYTHON_PACKAGES = ("python3", "ca-certificates", "netbase")
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEBIAN_PYTHON = {"buster": "3.7", "bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


class BootstrapError(Exception):
    """A base image could not be built; the message says what to install or fix."""


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    key: str
    reference: str
    image_id: str
    names: tuple[str, ...]
    built: bool  # False: the image existed and was kept
    source: str  # "existing", "built" or "pulled"
    seconds: float


@dataclass(frozen=True, slots=True)
class ImageRow:
    """One line of ``kumo images list``: one row per name (``<none>`` if untagged)."""

    reference: str
    id: str
    size_bytes: int
    created_at: datetime | None


@dataclass(slots=True)
class _Plan:
    key: str
    reference: str
    aliases: tuple[str, ...] = field(default_factory=tuple)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kumo" / "images"


def _noop(key: str, stage: str, fraction: float) -> None:
    return None


# --------------------------------------------------------------------------- host facts


def host_debian_release() -> str:
    """The host's Debian codename (``bookworm``); the python image follows it."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    values = dict(
        (key, value.strip().strip('"'))
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if key
    )
    if values.get("ID") != "debian" and "debian" not in values.get("ID_LIKE", ""):
        raise BootstrapError("building the python base image needs a Debian host (mmdebstrap)")
    return values.get("VERSION_CODENAME") or "bookworm"


def _parse_deb822(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, last = {}, ""
            continue
        if raw[0] in " \t" and last:
            current[last] += "\n" + raw.strip()
            continue
        key, _, value = raw.partition(":")
        last = key.strip().lower()
        current[last] = value.strip()
    return stanzas


def host_apt_sources(release: str, root: Path = Path("/")) -> str:
    """The host's apt sources for ``release`` (and its -updates / -security
    suites) as deb822 stanzas, so mmdebstrap uses the same mirror the host uses.
    Sources for other suites (third-party repositories) are left out. Returns ""
    when the host has none (mmdebstrap then uses deb.debian.org)."""
    wanted = {release, f"{release}-updates", f"{release}-security", f"{release}/updates"}
    stanzas: list[str] = []
    apt = root / "etc" / "apt"
    one_line_files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line_files:
        with contextlib.suppress(OSError):
            for raw in path.read_text().splitlines():
                line = raw.split("#", 1)[0].strip()
                match = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
                if not match or match.group(3) not in wanted:
                    continue
                options, uri, suite, components = match.groups()
                stanza = f"Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: {components or 'main'}\n"
                signed = re.search(r"signed-by=(\S+)", options or "")
                if signed:
                    stanza += f"Signed-By: {signed.group(1).rstrip(']')}\n"
                stanzas.append(stanza)
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for entry in _parse_deb822(path.read_text()):
                if entry.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in entry.get("types", "").split():
                    continue
                suites = [s for s in entry.get("suites", "").split() if s in wanted]
                if not suites or not entry.get("uris"):
                    continue
                stanza = (
                    f"Types: deb\nURIs: {entry['uris']}\nSuites: {' '.join(suites)}\n"
                    f"Components: {entry.get('components') or 'main'}\n"
                )
                if entry.get("signed-by"):
                    stanza += f"Signed-By: {entry['signed-by']}\n"
                stanzas.append(stanza)
    return "\n".join(stanzas)


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BootstrapError(
            f"{' '.join(command)} failed ({process.returncode}): {err.decode(errors='replace').strip()}"
        )
    return out.decode(errors="replace")


# --------------------------------------------------------------------------- busybox


async def _busybox_binary(cache_dir: Path) -> tuple[Path, str]:
    """Debian's busybox-static: the installed package, else the .deb fetched with
    ``apt-get download`` into the cache. Returns (binary, package version)."""
    if shutil.which("dpkg-query"):
        with contextlib.suppress(BootstrapError):
            version = (await _run("dpkg-query", "-W", "-f=${Version}", "busybox-static")).strip()
            files = (await _run("dpkg", "-L", "busybox-static")).split()
            binary = next((Path(f) for f in files if f.endswith("/bin/busybox")), None)
            if version and binary is not None and binary.is_file():
                return binary, version
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise BootstrapError("busybox-static is not installed (apt-get install busybox-static)")
    download = cache_dir / "busybox-static"
    download.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        "apt-get",
        "download",
        "busybox-static",
        cwd=download,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    debs = sorted(download.glob("busybox-static_*.deb"))
    if process.returncode != 0 or not debs:
        raise BootstrapError(
            "busybox-static is not installed and could not be downloaded "
            f"(apt-get install busybox-static): {err.decode(errors='replace').strip()}"
        )
    extracted = download / "root"
    shutil.rmtree(extracted, ignore_errors=True)
    await _run("dpkg-deb", "-x", str(debs[-1]), str(extracted))
    version = (await _run("dpkg-deb", "-f", str(debs[-1]), "Version")).strip()
    binary = extracted / "bin" / "busybox"
    if not binary.is_file():
        raise BootstrapError(f"{debs[-1]} has no bin/busybox")
    return binary, version


def busybox_rootfs(binary: Path, applets: Sequence[str], target: Path) -> None:
    """Write a busybox root filesystem tarball to ``target``: ``/bin/busybox``, one
    symlink per applet path (``usr/bin/wget`` → ``/bin/busybox``), the usual
    directories and a minimal passwd/group. The archive is byte-for-byte
    reproducible (fixed owners and times)."""
    mtime = 0

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, mtime
        tar.addfile(info, io.BytesIO(data))

    directories = {
        "bin": 0o755,
        "sbin": 0o755,
        "usr": 0o755,
        "usr/bin": 0o755,
        "usr/sbin": 0o755,
        "etc": 0o755,
        "root": 0o700,
        "home": 0o755,
        "tmp": 0o1777,
        "var": 0o755,
        "var/tmp": 0o1777,
        "var/log": 0o755,
        "run": 0o755,
        "proc": 0o555,
        "sys": 0o555,
        "dev": 0o755,
    }
    links = sorted(
        {
            a.strip().lstrip("/")
            for a in applets
            if a.strip() and a.strip() not in ("linuxrc", "bin/busybox")
        }
    )
    for link in links:
        parent = str(Path(link).parent)
        if parent != ".":
            directories.setdefault(parent, 0o755)
    tmp = target.with_name(target.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(directories):
            add_dir(tar, name, directories[name])
        add_file(tar, "bin/busybox", binary.read_bytes(), 0o755)
        for link in links:
            info = tarfile.TarInfo(link)
            info.type, info.linkname, info.mode, info.mtime = (
                tarfile.SYMTYPE,
                "/bin/busybox",
                0o777,
                mtime,
            )
            tar.addfile(info)
        add_file(
            tar,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
            b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        add_file(tar, "etc/group", b"root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n")
        add_file(tar, "etc/shadow", b"root:*::0:::::\ndaemon:*::0:::::\nnobody:*::0:::::\n", 0o640)
    tmp.replace(target)


async def _build_busybox(
    runtime: ContainerRuntime, plan: _Plan, cache_dir: Path, progress: Progress
) -> tuple[ImageInfo, tuple[str, ...]]:
    progress(plan.key, "finding busybox-static", 0.05)
    binary, package_version = await _busybox_binary(cache_dir)
    listing = await _run(str(binary), "--list-full")
    upstream = package_version.split(":", 1)[-1].split("-", 1)[0]  # 1:1.35.0-4+deb12u1 → 1.35.0
    progress(plan.key, "writing root filesystem", 0.3)
    tarball = cache_dir / f"busybox-rootfs-{package_version.replace(':', '_')}.tar"
    await asyncio.to_thread(busybox_rootfs, binary, listing.split(), tarball)
    progress(plan.key, "importing into podman", 0.6)
    changes = [
        'CMD ["sh"]',
        f"ENV {_PATH}",
        "LABEL dev.kumo.base-image=busybox",
        f"LABEL dev.kumo.source=debian-busybox-static-{package_version}",
    ]
    info = await runtime.import_image(
        tarball, plan.reference, changes=changes, message=f"kumo busybox {package_version}"
    )
    aliases = list(plan.aliases)
    if re.match(r"^\d+\.\d+\.\d+$", upstream):
        minor = upstream.rsplit(".", 1)[0]
        aliases += [f"docker.io/library/busybox:{upstream}", f"docker.io/library/busybox:{minor}"]
    return info, tuple(aliases)


# --------------------------------------------------------------------------- python


_MMDEBSTRAP_STAGES = (
    ("running apt-get update", "updating package lists", 0.10),
    ("downloading packages", "downloading packages", 0.20),
    ("extracting archives", "extracting packages", 0.35),
    ("installing essential packages", "installing essential packages", 0.45),
    ("installing remaining packages", "installing python3", 0.55),
    ("cleaning package lists", "cleaning up", 0.65),
    ("creating tarball", "writing root filesystem", 0.70),
)


async def _debian_rootfs(
    release: str, cache_dir: Path, progress: Progress, key: str, *, use_cache: bool
) -> Path:
    arch = (await _run("dpkg", "--print-architecture")).strip() if shutil.which("dpkg") else "amd64"
    tarball = cache_dir / f"debian-{release}-{arch}-{'-'.join(PYTHON_PACKAGES)}.tar"
    if use_cache and tarball.is_file() and tarball.stat().st_size > 0:
        progress(key, "using cached root filesystem", 0.70)
        return tarball
    if shutil.which("mmdebstrap") is None:
        raise BootstrapError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(PYTHON_PACKAGES)}",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    ]
    if shutil.which("apt-config"):
        with contextlib.suppress(BootstrapError):
            if "'false'" in await _run("apt-config", "shell", "X", "Acquire::Check-Valid-Until"):
                # The host's mirror is a dated snapshot; its Release files look expired.
                command.append('--aptopt=Acquire::Check-Valid-Until "false"')
    part = tarball.with_name(tarball.name + ".part.tar")
    command += [release, str(part)]
    with tempfile.TemporaryDirectory(prefix="kumo-apt-") as scratch:
        sources = host_apt_sources(release)
        if sources:
            source_file = Path(scratch) / "host.sources"
            source_file.write_text(sources)
            command.append(str(source_file))
        progress(key, "starting mmdebstrap", 0.05)
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        assert process.stderr is not None
        lines: list[str] = []
        while True:
            raw = await process.stderr.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            for marker, stage, fraction in _MMDEBSTRAP_STAGES:
                if marker in line:
                    progress(key, stage, fraction)
        await process.wait()
    if process.returncode != 0:
        part.unlink(missing_ok=True)
        tail = "\n".join(lines[-15:])
        raise BootstrapError(f"mmdebstrap failed ({process.returncode}):\n{tail}")
    part.replace(tarball)
    return tarball


def _python_version_in(tarball: Path) -> str:
    versions = set()
    with tarfile.open(tarball) as tar:
        for member in tar:
            match = re.match(r"^\.?/?usr/bin/python(3\.\d+)$", member.name)
            if match:
                versions.add(match.group(1))
    if not versions:
        raise BootstrapError(f"{tarball} has no /usr/bin/python3.X")
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def _python_names(version: str, release: str) -> tuple[str, tuple[str, ...]]:
    reference = f"localhost/kumo/python:{version}"
    aliases = (
        "localhost/kumo/python:latest",
        f"docker.io/library/python:{version}",
        f"docker.io/library/python:{version}-slim",
        f"docker.io/library/python:{version}-slim-{release}",
    )
    return reference, aliases


async def _build_python(
    runtime: ContainerRuntime,
    plan: _Plan,
    cache_dir: Path,
    progress: Progress,
    release: str,
    *,
    use_cache: bool,
) -> tuple[ImageInfo, tuple[str, ...]]:
    tarball = await _debian_rootfs(release, cache_dir, progress, plan.key, use_cache=use_cache)
    version = await asyncio.to_thread(_python_version_in, tarball)
    reference, aliases = _python_names(version, release)
    plan.reference = reference
    progress(plan.key, "importing into podman", 0.80)
    changes = [
        'CMD ["python3"]',
        f"ENV {_PATH}",
        "ENV LANG=C.UTF-8",
        "LABEL dev.kumo.base-image=python",
        f"LABEL dev.kumo.source=debian-{release}-mmdebstrap",
    ]
    info = await runtime.import_image(
        tarball, reference, changes=changes, message=f"kumo python {version} on Debian {release}"
    )
    return info, aliases


# --------------------------------------------------------------------------- bootstrap


async def _ensure_names(runtime: ContainerRuntime, image_id: str, names: Sequence[str]) -> None:
    for name in names:
        current = None
        with contextlib.suppress(Exception):
            current = await runtime.inspect_image(name)
        if current is None or current.id != image_id:
            await runtime.tag_image(image_id, name)


async def _drop_if_untagged(runtime: ContainerRuntime, image_id: str) -> None:
    """Remove the image a forced rebuild replaced, once none of its names is left
    (an image a container still uses stays)."""
    with contextlib.suppress(Exception):
        if not (await runtime.inspect_image(image_id)).repo_tags:
            await runtime.remove_image(image_id)


async def bootstrap(
    runtime: ContainerRuntime,
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
    pull: bool = False,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> list[BootstrapResult]:
    """Make sure the base images exist in ``runtime``'s storage; build what is missing.

    ``only`` limits the work to some of ``IMAGE_KEYS``; ``force`` rebuilds images
    that exist; ``pull`` first tries the registry (``docker.io/library/...``) and
    builds only if that fails; ``use_cache`` False re-runs mmdebstrap even when a
    cached tarball exists. ``progress`` gets (image, stage, fraction) updates."""
    report = progress or _noop
    keys = list(only) if only else list(IMAGE_KEYS)
    for key in keys:
        if key not in IMAGE_KEYS:
            raise BootstrapError(
                f"unknown base image {key!r} (choose from {', '.join(IMAGE_KEYS)})"
            )
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    release = host_debian_release() if "python" in keys else ""
    results: list[BootstrapResult] = []
    for key in keys:
        started = time.monotonic()
        if key == "busybox":
            plan = _Plan(
                key, "localhost/kumo/busybox:latest", ("docker.io/library/busybox:latest",)
            )
            upstream_name = "docker.io/library/busybox:latest"
        else:
            version = _DEBIAN_PYTHON.get(release, "")
            reference, aliases = (
                _python_names(version, release) if version else ("localhost/kumo/python:latest", ())
            )
            plan = _Plan(key, reference, aliases)
            upstream_name = f"docker.io/library/python:{version or '3'}-slim"
        report(key, "checking", 0.0)
        existing = None
        if not force:
            with contextlib.suppress(Exception):
                existing = await runtime.inspect_image(plan.reference)
        if existing is not None:
            await _ensure_names(
                runtime, existing.id, [n for n in plan.aliases if n != plan.reference]
            )
            current = await runtime.inspect_image(existing.id)
            names = (plan.reference, *sorted(n for n in current.repo_tags if n != plan.reference))
            report(key, "already present", 1.0)
            results.append(
                BootstrapResult(
                    key,
                    plan.reference,
                    existing.id,
                    names,
                    False,
                    "existing",
                    time.monotonic() - started,
                )
            )
            continue
        previous = None
        with contextlib.suppress(Exception):
            previous = await runtime.inspect_image(plan.reference)
        info: ImageInfo | None = None
        source = "built"
        names = plan.aliases
        if pull:
            report(key, f"pulling {upstream_name}", 0.05)
            try:
                info = await runtime.pull_image(upstream_name)
                source = "pulled"
                await runtime.tag_image(info.id, plan.reference)
            except ImagePullError:
                info = None
        if info is None:
            if key == "busybox":
                info, names = await _build_busybox(runtime, plan, cache, report)
            else:
                info, names = await _build_python(
                    runtime, plan, cache, report, release, use_cache=use_cache
                )
        report(key, "tagging", 0.95)
        names = tuple(n for n in names if n != plan.reference)
        await _ensure_names(runtime, info.id, names)
        if previous is not None and previous.id != info.id:
            await _drop_if_untagged(runtime, previous.id)
        report(key, "done", 1.0)
        results.append(
            BootstrapResult(
                key,
                plan.reference,
                info.id,
                (plan.reference, *names),
                True,
                source,
                time.monotonic() - started,
            )
        )
    return results


async def list_images(runtime: ContainerRuntime) -> list[ImageRow]:
    """Every local image, one row per name, sorted by name (untagged last)."""
    rows: list[ImageRow] = []
    for image in await runtime.list_images():
        names = image.repo_tags or ("<none>",)
        rows.extend(ImageRow(name, image.id, image.size_bytes, image.created_at) for name in names)
    rows.sort(key=lambda row: (row.reference == "<none>", row.reference))
    return rows


def describe(results: Sequence[BootstrapResult]) -> str:
    """A JSON summary of a bootstrap run (for scripts and CI logs)."""
    return json.dumps(
        [
            {
                "image": r.key,
                "reference": r.reference,
                "id": r.image_id[:12],
                "names": list(r.names),
                "source": r.source,
                "seconds": round(r.seconds, 2),
            }
            for r in results
        ],
        indent=2,
    )
