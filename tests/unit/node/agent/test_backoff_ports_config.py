"""Back-off, host port allocation and agent options."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumo.node.backoff import Backoff
from kumo.node.config import AgentOptions, OptionsError, parse_labels, parse_port_range
from kumo.node.ports import HostPortAllocator, PortsExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_first_retry_is_immediate_then_doubles_up_to_the_maximum() -> None:
    clock = Clock()
    backoff = Backoff(10, 300, clock=clock)
    key = ("uid", "c")
    assert not backoff.in_backoff(key, since=clock.now)  # first failure: restart at once
    delays = []
    for _ in range(7):
        delays.append(backoff.next(key))
        clock.now += 1
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.in_backoff(key, since=clock.now - 299)
    assert not backoff.in_backoff(key, since=clock.now - 300)
    assert backoff.retry_at(key, since=5.0) == 305.0


def test_backoff_reset_and_expiry() -> None:
    clock = Clock()
    backoff = Backoff(1, 4, clock=clock)
    backoff.next("a")
    backoff.next("a")
    assert backoff.delay("a") == 2
    backoff.reset("a")
    assert backoff.delay("a") == 0
    backoff.next("b")
    clock.now += 8.5  # untouched for more than 2 x maximum: forgotten
    assert backoff.delay("b") == 0
    backoff.next(("u1", "x"))
    backoff.next(("u2", "x"))
    backoff.forget(lambda key: isinstance(key, tuple) and key[0] == "u1")
    assert backoff.delay(("u1", "x")) == 0 and backoff.delay(("u2", "x")) == 1


def test_backoff_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 10)
    with pytest.raises(ValueError):
        Backoff(10, 5)


def test_port_allocator_skips_held_and_busy_ports() -> None:
    busy = {30001}
    allocator = HostPortAllocator(30000, 30003, is_free=lambda a, p, t: p not in busy)
    assert allocator.reserve("pod-a", 30000)
    assert not allocator.reserve("pod-b", 30000)  # someone else's
    assert allocator.reserve("pod-a", 30000)  # idempotent for the owner
    got = {allocator.allocate("pod-b", "127.0.0.1") for _ in range(2)}
    assert got == {30002, 30003}
    with pytest.raises(PortsExhausted):
        allocator.allocate("pod-c", "127.0.0.1")
    assert allocator.held_by("pod-b") == [(30002, "tcp"), (30003, "tcp")]
    allocator.release("pod-b", [(30002, "tcp")])
    assert allocator.allocate("pod-c", "127.0.0.1") == 30002
    allocator.release("pod-a")
    assert allocator.owner(30000) is None
    # udp and tcp are separate spaces
    assert allocator.reserve("pod-d", 30002, "udp")


def test_port_allocator_real_bind_check() -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        held.listen()
        allocator = HostPortAllocator(port, port)
        with pytest.raises(PortsExhausted):
            allocator.allocate("pod", "127.0.0.1")


def test_options_parse_strings_and_validate(tmp_path: Path) -> None:
    options = AgentOptions.build(
        node_name="n1",
        data_dir=str(tmp_path),
        node_labels="a=1, b = 2",
        port_range="31000-31010",
        reserved="cpu=250m,memory=1Gi",
        lease_renew_interval=2.5,
        podman_url=None,
    )
    assert options.node_labels == {"a": "1", "b": "2"}
    assert options.port_range == (31000, 31010)
    assert options.reserved_cpu_millis == 250
    assert options.reserved_memory_bytes == 1 << 30
    assert options.lease_renew_interval == 2.5
    assert options.data_dir == tmp_path
    assert options.pods_dir == tmp_path / "pods"
    assert options.podman_state_dir == tmp_path / "podman"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"node_name": "Bad_Name"}, "invalid node name"),
        ({"port_range": "9-1"}, "invalid port range"),
        ({"port_range": "abc"}, "invalid port range"),
        ({"reserved": "gpu=1"}, "cannot reserve 'gpu'"),
        ({"reserved": "cpu=lots"}, "invalid reservation"),
        ({"sync_period": 0}, "sync-period must be positive"),
        ({"node_labels": "novalue"}, "invalid label"),
        ({"bogus": 1}, "unknown agent option(s): bogus"),
        ({"podman_url": "unix:///x", "podman_root": "/r"}, "cannot be combined"),
    ],
)
def test_options_reject_bad_values(values: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AgentOptions.build(**{"node_name": "n1", **values})


def test_long_data_dirs_keep_the_podman_socket_short(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    options = AgentOptions.build(node_name="n1", data_dir=deep)
    state = options.podman_state_dir
    assert len(str(state / "podman.sock")) <= 107
    assert state.parent == Path("/run/kumo-agent")
    assert AgentOptions.build(node_name="n1", data_dir=deep).podman_state_dir == state


def test_label_and_range_parsers() -> None:
    assert parse_labels("") == {}
    assert parse_labels("k=") == {"k": ""}
    assert parse_port_range(" 1 - 2 ") == (1, 2)
