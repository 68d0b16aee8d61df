"""Pure helpers of the Podman runtime: time parsing, states, references, error mapping, frames.

The error bodies are the ones Podman 4.3 returns (captured from a real service)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kumo.node.runtime import (
    Conflict,
    ContainerRuntimeError,
    ContainerState,
    ImageNotFound,
    InvalidConfig,
    LogStream,
    NotFound,
)
from kumo.node.runtime.podman import (
    PodmanRuntime,
    _ApiReply,
    _container_state,
    _error_for,
    _FrameReader,
    _log_line,
    _parse_time,
    _split_reference,
    default_containers_conf,
)


def test_parse_time() -> None:
    assert _parse_time("2026-11-28T04:30:32.148199151Z") == datetime(
        2026, 11, 28, 4, 30, 32, 148199, UTC
    )
    assert _parse_time("2026-11-28T05:30:32+01:00") == datetime(2026, 11, 28, 4, 30, 32, tzinfo=UTC)
    assert _parse_time("0001-01-01T00:00:00Z") is None
    assert _parse_time(-62135596800) is None
    assert _parse_time(1795840232) == datetime.fromtimestamp(1795840232, UTC)
    assert _parse_time("") is None
    assert _parse_time("yesterday") is None


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("configured", ContainerState.CREATED),
        ("created", ContainerState.CREATED),
        ("running", ContainerState.RUNNING),
        ("stopping", ContainerState.RUNNING),
        ("paused", ContainerState.PAUSED),
        ("exited", ContainerState.EXITED),
        ("stopped", ContainerState.EXITED),
        ("weird", ContainerState.UNKNOWN),
    ],
)
def test_container_state(raw: str, state: ContainerState) -> None:
    assert _container_state(raw) == state


def test_split_reference() -> None:
    assert _split_reference("localhost/kumo/busybox:latest") == ("localhost/kumo/busybox", "latest")
    assert _split_reference("docker.io/library/python:3.11-slim") == (
        "docker.io/library/python",
        "3.11-slim",
    )
    assert _split_reference("registry:5000/app") == ("registry:5000/app", "latest")
    assert _split_reference("registry:5000/app:v1") == ("registry:5000/app", "v1")
    with pytest.raises(InvalidConfig):
        _split_reference("app@sha256:abc")


def _reply(status: int, cause: str, message: str) -> _ApiReply:
    return _ApiReply(
        status, json.dumps({"cause": cause, "message": message, "response": status}).encode()
    )


def test_error_mapping_matches_podman_replies() -> None:
    name_taken = _reply(
        500,
        "that name is already in use",
        'creating container storage: the container name "x" is already in use by f196. You have to remove that container',
    )
    assert type(_error_for(name_taken, "x")) is Conflict
    image = _error_for(
        _reply(500, "image not known", "nosuchimage:1: image not known"), "nosuchimage:1"
    )
    assert isinstance(image, ImageNotFound) and image.image == "nosuchimage:1"
    no_pod = _reply(500, "no such pod", "no pod with name or ID nosuchpod found: no such pod")
    assert type(_error_for(no_pod, "sandbox nosuchpod")) is NotFound
    running = _reply(
        500, "container state improper", "cannot remove container f196 as it is running"
    )
    assert type(_error_for(running, "container f196")) is Conflict
    missing = _reply(
        404, "no such container", 'no container with name or ID "nosuch" found: no such container'
    )
    assert type(_error_for(missing, "container nosuch")) is NotFound
    assert type(_error_for(_reply(400, "bad", "bad parameter"), "x")) is InvalidConfig
    other = _error_for(_ApiReply(500, b"plain text failure"), "x")
    assert type(other) is ContainerRuntimeError
    assert "plain text failure" in other.reason


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_frame_reader_reassembles_frames_split_across_chunks() -> None:
    data = _frame(1, b"2026-11-28T04:30:37Z out1\n") + _frame(2, b"2026-11-28T04:30:37Z err1\n")
    reader = _FrameReader()
    frames = []
    for i in range(0, len(data), 5):
        frames += reader.feed(data[i : i + 5])
    assert frames == [(1, b"2026-11-28T04:30:37Z out1\n"), (2, b"2026-11-28T04:30:37Z err1\n")]


def test_log_line_parsing() -> None:
    line = _log_line(2, b"2026-11-28T04:30:37Z hello world\n")
    assert line.stream == LogStream.STDERR
    assert line.text == "hello world"
    assert line.timestamp == datetime(2026, 11, 28, 4, 30, 37, tzinfo=UTC)
    partial = _log_line(1, b"2026-11-28T04:30:39Z partial")
    assert partial.text == "partial" and partial.stream == LogStream.STDOUT
    empty = _log_line(1, b"2026-11-28T04:30:39Z \n")
    assert empty.text == ""


def test_shipped_containers_conf() -> None:
    text = default_containers_conf().read_text()
    assert 'runtime = "runc"' in text
    assert '"nofile=10000:10000"' in text
    assert 'cgroup_manager = "cgroupfs"' in text
    assert 'lock_type = "shm"' in text
    assert "exit_command_delay = 2" in text


def test_own_storage_implies_own_run_root_and_tmpdir(tmp_path: Path) -> None:
    runtime = PodmanRuntime("n1", storage_root=tmp_path / "storage")
    command = runtime.podman_command()
    assert command[command.index("--root") + 1] == str(tmp_path / "storage")
    run_root = command[command.index("--runroot") + 1]
    tmp_dir = command[command.index("--tmpdir") + 1]
    assert run_root.startswith("/run/kumo-podman/") and len(run_root) <= 50
    assert tmp_dir.startswith("/run/kumo-podman/") and tmp_dir != run_root
    other = PodmanRuntime("n1", storage_root=tmp_path / "other").podman_command()
    assert other[other.index("--runroot") + 1] != run_root  # one run root per storage root
    with pytest.raises(InvalidConfig, match="longer"):
        PodmanRuntime("n1", storage_root=tmp_path, run_root=tmp_path / ("x" * 60))
    with pytest.raises(InvalidConfig):
        PodmanRuntime("n1", socket_url="unix:///x.sock", storage_root=tmp_path)
    with pytest.raises(InvalidConfig):
        PodmanRuntime("bad=name")
