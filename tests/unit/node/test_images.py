"""Base-image bootstrap logic: apt sources, the busybox root filesystem, naming, idempotence.

Image storage is the in-memory runtime; the busybox binary is a stand-in script, so these
tests need neither Podman nor busybox-static (tests/integration/node covers the real thing)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from kumo.node import images
from kumo.node.images import (
    BootstrapError,
    bootstrap,
    busybox_rootfs,
    host_apt_sources,
    list_images,
)
from kumo.node.runtime.fake import FakeHost, FakeRuntime

APPLETS = ["bin/sh", "usr/bin/wget", "sbin/ifconfig", "usr/sbin/httpd", "linuxrc", "bin/busybox"]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_host_apt_sources_keeps_only_the_release_suites(tmp_path: Path) -> None:
    apt = tmp_path / "etc" / "apt"
    write(
        apt / "sources.list.d" / "debian.sources",
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n",
    )
    write(
        apt / "sources.list.d" / "vendor.sources",
        "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n",
    )
    write(
        apt / "sources.list.d" / "disabled.sources",
        "Types: deb\nURIs: http://old.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n",
    )
    write(
        apt / "sources.list",
        "# comment\n"
        "deb [signed-by=/k.gpg] http://one-line.example/debian bookworm main contrib\n"
        "deb https://packages.example/apt cloud-sdk-bookworm main\n"
        "deb-src http://one-line.example/debian bookworm main\n",
    )
    text = host_apt_sources("bookworm", root=tmp_path)
    assert (
        "URIs: http://one-line.example/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /k.gpg"
        in text
    )
    assert "URIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n" in text
    assert "URIs: http://mirror.example/debian-security\nSuites: bookworm-security\n" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text
    for excluded in ("vendor.example", "old.example", "cloud-sdk", "packages.example"):
        assert excluded not in text
    assert host_apt_sources("trixie", root=tmp_path) == ""


def test_busybox_rootfs_layout_and_reproducibility(tmp_path: Path) -> None:
    binary = tmp_path / "busybox"
    binary.write_bytes(b"\x7fELF fake busybox")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    busybox_rootfs(binary, APPLETS, first)
    busybox_rootfs(binary, list(reversed(APPLETS)), second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = {m.name: m for m in tar.getmembers()}
        busybox = members["bin/busybox"]
        assert busybox.isfile() and busybox.mode == 0o755 and busybox.uid == 0
        extracted = tar.extractfile(busybox)
        assert extracted is not None and extracted.read() == b"\x7fELF fake busybox"
        for applet in ("bin/sh", "usr/bin/wget", "sbin/ifconfig", "usr/sbin/httpd"):
            assert members[applet].issym() and members[applet].linkname == "/bin/busybox"
        assert "linuxrc" not in members
        assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        assert b"root:x:0:0:" in passwd.read()


def test_python_version_is_read_from_the_rootfs(tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for name in ("./usr/bin/python3", "./usr/bin/python3.11", "./usr/bin/python3.11-config"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    assert images._python_version_in(tarball) == "3.11"
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(BootstrapError):
        images._python_version_in(empty)


def test_python_names() -> None:
    reference, aliases = images._python_names("3.11", "bookworm")
    assert reference == "localhost/kumo/python:3.11"
    assert "docker.io/library/python:3.11-slim" in aliases
    assert "docker.io/library/python:3.11-slim-bookworm" in aliases
    assert "docker.io/library/python:3.11" in aliases


@pytest.fixture
def fake_busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in busybox that lists applets like ``busybox --list-full``."""
    binary = tmp_path / "busybox"
    binary.write_text("#!/bin/sh\nprintf 'bin/sh\\nusr/bin/wget\\nlinuxrc\\n'\n")
    binary.chmod(0o755)

    async def locate(cache_dir: Path) -> tuple[Path, str]:
        return binary, "1:1.35.0-4+deb12u1"

    monkeypatch.setattr(images, "_busybox_binary", locate)
    return binary


async def test_bootstrap_builds_busybox_and_is_idempotent(
    tmp_path: Path, fake_busybox: Path
) -> None:
    runtime = FakeRuntime(host=FakeHost(images=()))
    stages: list[tuple[str, str, float]] = []
    results = await bootstrap(
        runtime,
        only=["busybox"],
        cache_dir=tmp_path / "cache",
        progress=lambda *a: stages.append(a),
    )
    [result] = results
    assert result.built and result.source == "built"
    assert result.reference == "localhost/kumo/busybox:latest"
    expected = {
        "localhost/kumo/busybox:latest",
        "docker.io/library/busybox:latest",
        "docker.io/library/busybox:1.35.0",
        "docker.io/library/busybox:1.35",
    }
    assert set(result.names) == expected
    image = await runtime.inspect_image("busybox")
    assert set(image.repo_tags) == expected
    assert image.labels["dev.kumo.base-image"] == "busybox"
    fractions = [fraction for key, _, fraction in stages if key == "busybox"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    await runtime.remove_image("docker.io/library/busybox:latest")  # a missing alias comes back
    again = await bootstrap(runtime, only=["busybox"], cache_dir=tmp_path / "cache")
    assert not again[0].built and again[0].source == "existing" and again[0].image_id == image.id
    assert "docker.io/library/busybox:latest" in (await runtime.inspect_image(image.id)).repo_tags

    forced = await bootstrap(runtime, only=["busybox"], force=True, cache_dir=tmp_path / "cache")
    assert forced[0].built and forced[0].image_id != image.id
    assert not await runtime.image_exists(image.id)  # the replaced image is gone, not left dangling
    assert (await runtime.inspect_image("busybox")).id == forced[0].image_id


async def test_bootstrap_pull_prefers_the_registry(tmp_path: Path, fake_busybox: Path) -> None:
    runtime = FakeRuntime(host=FakeHost(images=(), registry=("docker.io/library/busybox:latest",)))
    [result] = await bootstrap(runtime, only=["busybox"], pull=True, cache_dir=tmp_path)
    assert result.source == "pulled"
    assert (
        "localhost/kumo/busybox:latest" in (await runtime.inspect_image(result.image_id)).repo_tags
    )

    offline = FakeRuntime(host=FakeHost(images=()))
    [result] = await bootstrap(offline, only=["busybox"], pull=True, cache_dir=tmp_path)
    assert result.source == "built"


async def test_bootstrap_rejects_unknown_images(tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match="unknown base image"):
        await bootstrap(FakeRuntime(), only=["nginx"], cache_dir=tmp_path)


async def test_list_images_has_a_row_per_name() -> None:
    host = FakeHost(images=("docker.io/library/busybox:latest",))
    runtime = FakeRuntime(host=host)
    await runtime.tag_image("busybox", "localhost/kumo/busybox:latest")
    rows = await list_images(runtime)
    assert [row.reference for row in rows] == [
        "docker.io/library/busybox:latest",
        "localhost/kumo/busybox:latest",
    ]
    assert rows[0].id == rows[1].id
