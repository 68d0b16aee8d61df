"""``kumo images`` commands, over the in-memory runtime (the real one is covered in
tests/integration/node)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from kumo.cli import images_commands
from kumo.cli.images_commands import format_table, human_age, human_size
from kumo.node import images
from kumo.node.runtime.fake import FakeHost, FakeRuntime


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(2_140_160) == "2.14 MB"
    assert human_size(173_893_120) == "174 MB"
    assert human_size(3_500_000_000) == "3.5 GB"


def test_human_age() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert human_age(now - timedelta(seconds=5), now) == "5s ago"
    assert human_age(now - timedelta(minutes=3), now) == "3m ago"
    assert human_age(now - timedelta(hours=5), now) == "5h ago"
    assert human_age(now - timedelta(days=2), now) == "2d ago"
    assert human_age(None, now) == "<unknown>"


def test_format_table_aligns_columns() -> None:
    text = format_table(["IMAGE", "ID"], [["busybox", "abc"], ["python:3.11-slim", "d"]])
    assert text.splitlines() == [
        "IMAGE              ID",
        "busybox            abc",
        "python:3.11-slim   d",
    ]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHost:
    """Point the commands at an in-memory runtime and a stand-in busybox."""
    shared = FakeHost(images=("docker.io/library/busybox:latest",))

    def runtime(*args: Any, **kwargs: Any) -> FakeRuntime:
        return FakeRuntime("kumo-images", host=shared)

    monkeypatch.setattr(images_commands, "PodmanRuntime", runtime)
    binary = tmp_path / "busybox"
    binary.write_text("#!/bin/sh\necho bin/sh\n")
    binary.chmod(0o755)

    async def locate(cache_dir: Path) -> tuple[Path, str]:
        return binary, "1:1.35.0-4"

    monkeypatch.setattr(images, "_busybox_binary", locate)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return shared


def cli() -> click.Group:
    group = click.Group("kumo")
    images_commands.register(group)
    return group


def test_images_list_table_and_json(host: FakeHost) -> None:
    result = CliRunner().invoke(cli(), ["images", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["IMAGE", "ID", "SIZE", "CREATED"]
    assert lines[1].startswith("docker.io/library/busybox:latest")
    assert "2 MB" in lines[1]
    result = CliRunner().invoke(cli(), ["images", "list", "-o", "json"])
    payload = json.loads(result.output)
    assert payload[0]["image"] == "docker.io/library/busybox:latest"
    assert payload[0]["size"] == 2_000_000


def test_images_bootstrap_only_busybox(host: FakeHost) -> None:
    result = CliRunner().invoke(
        cli(), ["images", "bootstrap", "--only", "busybox", "--force", "-q"]
    )
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert header.split()[:5] == ["IMAGE", "REFERENCE", "ID", "RESULT", "TIME"]
    assert row.split()[:2] == ["busybox", "localhost/kumo/busybox:latest"]
    assert row.split()[3] == "built"
    names = {name for image in host.images.values() for name in image.names}
    assert {"localhost/kumo/busybox:latest", "docker.io/library/busybox:1.35"} <= names


def test_images_bootstrap_rejects_unknown_choice(host: FakeHost) -> None:
    result = CliRunner().invoke(cli(), ["images", "bootstrap", "--only", "nginx"])
    assert result.exit_code == 2
    assert "nginx" in result.output


def test_podman_url_conflicts_with_storage_root(host: FakeHost, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli(), ["images", "list", "--podman-url", "unix:///x.sock", "--storage-root", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "cannot be combined" in result.output
