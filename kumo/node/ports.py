"""Host ports for pods: ``hostPort`` when a container asks for one, otherwise a port
allocated from the agent's range (default 30000-32767).

The allocator remembers which pod holds which port. A port is only handed out when
no pod of this agent holds it and it can be bound on the node address right now
(another agent or program may use it; Podman's own port reservations show up here
too). A sandbox that still fails with "port in use" makes the agent release the
ports and try again with fresh ones.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterable

__all__ = ["HostPortAllocator", "PortsExhausted", "port_is_free"]


class PortsExhausted(Exception):
    """No free port is left in the range."""


def port_is_free(address: str, port: int, protocol: str = "tcp") -> bool:
    """Whether ``address:port`` can be bound now (``address`` "" means every address)."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class HostPortAllocator:
    def __init__(
        self,
        first: int,
        last: int,
        *,
        is_free: Callable[[str, int, str], bool] = port_is_free,
    ) -> None:
        if not 0 < first <= last < 65536:
            raise ValueError(f"invalid port range {first}-{last}")
        self.first = first
        self.last = last
        self._is_free = is_free
        # (port, protocol) -> owner (a pod uid)
        self._owners: dict[tuple[int, str], str] = {}

    def owner(self, port: int, protocol: str = "tcp") -> str | None:
        return self._owners.get((port, protocol))

    def reserve(self, owner: str, port: int, protocol: str = "tcp") -> bool:
        """Record that ``owner`` holds ``port`` (a hostPort, or one found on an adopted
        sandbox). False if another owner holds it."""
        current = self._owners.get((port, protocol))
        if current is not None and current != owner:
            return False
        self._owners[(port, protocol)] = owner
        return True

    def allocate(self, owner: str, address: str, protocol: str = "tcp") -> int:
        """A free port from the range, now held by ``owner``."""
        size = self.last - self.first + 1
        start = random.randrange(size)
        for offset in range(size):
            port = self.first + (start + offset) % size
            if (port, protocol) in self._owners:
                continue
            if not self._is_free(address, port, protocol):
                continue
            self._owners[(port, protocol)] = owner
            return port
        raise PortsExhausted(f"no free {protocol} port left in {self.first}-{self.last}")

    def held_by(self, owner: str) -> list[tuple[int, str]]:
        return sorted(key for key, who in self._owners.items() if who == owner)

    def release(self, owner: str, ports: Iterable[tuple[int, str]] | None = None) -> None:
        """Give back ``ports`` (default: every port) of ``owner``."""
        keys = list(ports) if ports is not None else self.held_by(owner)
        for key in keys:
            if self._owners.get(key) == owner:
                del self._owners[key]
