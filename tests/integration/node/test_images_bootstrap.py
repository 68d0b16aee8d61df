"""The offline base images, built for real: busybox into a private Podman storage (fast),
the python image into the machine's storage (built once, then reused), and the
``kumo images`` commands as a user runs them."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from kumo.node.images import bootstrap
from kumo.node.runtime import ContainerConfig, ContainerState
from kumo.node.runtime.podman import PodmanRuntime
from tests.integration.node.conftest import (
    collect_logs,
    release_private_storage,
    require_podman,
    run_sandbox,
    start,
    wait_exited,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[3]


async def test_busybox_bootstrap_into_a_private_storage(tmp_path: Path) -> None:
    require_podman()
    runtime = PodmanRuntime(
        "images-test", state_dir=tmp_path / "state", storage_root=tmp_path / "storage"
    )
    async with runtime:
        try:
            stages: list[tuple[str, str, float]] = []
            [built] = await bootstrap(
                runtime,
                only=["busybox"],
                cache_dir=tmp_path / "cache",
                progress=lambda *a: stages.append(a),
            )
            assert built.built and built.source == "built"
            assert stages[-1] == ("busybox", "done", 1.0)
            info = await runtime.inspect_image("localhost/kumo/busybox:latest")
            assert {"docker.io/library/busybox:latest", "localhost/kumo/busybox:latest"} <= set(
                info.repo_tags
            )
            assert any(tag.startswith("docker.io/library/busybox:1.") for tag in info.repo_tags)
            assert info.size_bytes < 5_000_000

            [again] = await bootstrap(runtime, only=["busybox"], cache_dir=tmp_path / "cache")
            assert not again.built and again.image_id == built.image_id

            sandbox = await run_sandbox(runtime, "bb")
            container = await start(
                runtime,
                sandbox.id,
                ContainerConfig(
                    name="c",
                    image="busybox",
                    command=("sh", "-c", "ls /bin/busybox && which wget nc httpd && id -un nobody"),
                ),
            )
            assert await wait_exited(runtime, container) == 0
            assert [line.text for line in await collect_logs(runtime, container)] == [
                "/bin/busybox",
                "/usr/bin/wget",
                "/usr/bin/nc",
                "/usr/sbin/httpd",
                "nobody",
            ]
            default_cmd = await start(
                runtime, sandbox.id, ContainerConfig(name="default-cmd", image="busybox")
            )
            assert (
                await wait_exited(runtime, default_cmd) == 0
            )  # CMD ["sh"] with no stdin exits at once
            await runtime.remove_sandbox(sandbox.id)
        finally:
            for sandbox_summary in await runtime.list_sandboxes():
                await runtime.remove_sandbox(sandbox_summary.id)
    release_private_storage(runtime, tmp_path)


async def test_python_image_runs_under_its_docker_hub_names(tmp_path: Path) -> None:
    require_podman()
    async with PodmanRuntime("images-python-test", state_dir=tmp_path / "state") as runtime:
        # Builds with mmdebstrap when missing (about a minute once; `make test` builds it
        # before the tests), otherwise only checks the names.
        present = await runtime.image_exists("localhost/kumo/python:latest")
        if not present and shutil.which("mmdebstrap") is None:
            message = "mmdebstrap is not installed (apt-get install mmdebstrap) and the python image is missing"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        [result] = await bootstrap(runtime, only=["python"])
        slim = next(name for name in result.names if name.endswith("-slim"))
        short = slim.removeprefix("docker.io/library/")  # e.g. python:3.11-slim
        version = short.removeprefix("python:").removesuffix("-slim")
        sandbox = await run_sandbox(runtime, "py")
        try:
            container = await start(
                runtime,
                sandbox.id,
                ContainerConfig(
                    name="c",
                    image=short,
                    command=(
                        "python3",
                        "-c",
                        "import sys, ssl, json; print('%d.%d' % sys.version_info[:2]); print(json.dumps({'ok': True}))",
                    ),
                ),
            )
            assert await wait_exited(runtime, container) == 0
            assert [line.text for line in await collect_logs(runtime, container)] == [
                version,
                '{"ok": true}',
            ]
            status = await runtime.container_status(container)
            assert status.state == ContainerState.EXITED
            assert status.image_id == result.image_id
        finally:
            await runtime.remove_sandbox(sandbox.id)


async def _kumo_images(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kumo.cli.images_commands",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_images_commands_end_to_end(tmp_path: Path) -> None:
    require_podman()
    storage = ["--storage-root", str(tmp_path / "storage")]
    code, out, err = await _kumo_images(
        "bootstrap", "--only", "busybox", "--cache-dir", str(tmp_path / "c"), *storage
    )
    try:
        assert code == 0, err
        assert "busybox" in err and "100%" in err  # the progress display (on stderr)
        header, row = out.splitlines()[:2]
        assert header.split()[:4] == ["IMAGE", "REFERENCE", "ID", "RESULT"]
        assert (
            row.split()[:2] == ["busybox", "localhost/kumo/busybox:latest"]
            and row.split()[3] == "built"
        )

        code, out, err = await _kumo_images("list", *storage)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split() == ["IMAGE", "ID", "SIZE", "CREATED"]
        listed = {line.split()[0] for line in lines[1:]}
        assert {"localhost/kumo/busybox:latest", "docker.io/library/busybox:latest"} <= listed
        assert not any(
            name.startswith("localhost/kumo/python") for name in listed
        )  # only what was asked for
    finally:
        release_private_storage(
            PodmanRuntime("cleanup", storage_root=tmp_path / "storage"), tmp_path
        )
