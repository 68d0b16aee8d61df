"""Lease-based leader election (coordination.k8s.io/v1 Lease), as client-go does it.

What callers may rely on:
- at most one holder acts at a time, provided clocks tick at a similar rate: a candidate takes
  the Lease only after it has seen the same holder and renewTime unchanged for
  ``lease_duration`` of its own time (it never compares clocks across machines);
- every write is a compare-and-swap on resourceVersion, so two candidates never both win;
- the leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it stops
  leading (``run`` cancels the leading work) and goes back to candidacy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from kumo.client import ApiException, AsyncClient
from kumo.model.coordination import Lease
from kumo.model.meta import now_micro
from kumo.model.registry import for_model

log = logging.getLogger(__name__)


def default_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class LeaderElector:
    def __init__(
        self,
        client: AsyncClient,
        *,
        name: str = "kumo-scheduler",
        namespace: str = "kube-system",
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.info = for_model(Lease)
        self.is_leader = False
        self.transitions_seen = 0
        # (holder, renewTime) last seen, and when we first saw it (our clock)
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = now_micro()
        spec = dict((previous or {}).get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if previous is not None else 0
            )
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = round(self.lease_duration)
        spec["renewTime"] = now
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the Lease afterwards."""
        try:
            current = await self.client.get_raw(self.info, self.name, self.namespace)
        except ApiException as exc:
            if not exc.not_found:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                await self.client.create_raw(lease, self.namespace)
            except ApiException as create_exc:
                if create_exc.already_exists:
                    return False
                raise
            return True
        spec = current.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        seen = (holder, str(spec.get("renewTime") or ""))
        if seen != self._observed:
            self._observed = seen
            self._observed_at = self.clock()
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if self.clock() - self._observed_at < duration:
                return False
        updated = dict(current)
        updated["spec"] = self._spec(current)
        try:
            stored = await self.client.replace_raw(updated, self.namespace)
        except ApiException as exc:
            if exc.code == 409:
                return False
            raise
        stored_spec = stored.get("spec") or {}
        self._observed = (self.identity, str(stored_spec.get("renewTime") or ""))
        self._observed_at = self.clock()
        return True

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except (ApiException, httpx.HTTPError, OSError) as exc:
            log.warning("leader election %s/%s: %s", self.namespace, self.name, exc)
            return False

    async def run(
        self, stop: asyncio.Event, lead: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    ) -> None:
        """Until ``stop``: wait to be leader, run ``lead(stop_leading)`` while leading."""
        while not stop.is_set():
            if not await self._attempt():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_period)
                continue
            log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)
            self.is_leader = True
            self.transitions_seen += 1
            stop_leading = asyncio.Event()
            leading: asyncio.Task[None] = asyncio.get_running_loop().create_task(lead(stop_leading))
            try:
                await self._renew_until_lost(stop, leading)
            finally:
                self.is_leader = False
                stop_leading.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await leading
            if not stop.is_set():
                log.warning("%s lost the lease %s/%s", self.identity, self.namespace, self.name)

    async def _renew_until_lost(self, stop: asyncio.Event, leading: asyncio.Task[None]) -> None:
        last_renew = self.clock()
        while not stop.is_set() and not leading.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_period)
            if stop.is_set():
                await self.release()
                return
            if await self._attempt():
                last_renew = self.clock()
            elif self.clock() - last_renew >= self.renew_deadline:
                return

    async def release(self) -> None:
        """Give the Lease up at shutdown so the next candidate need not wait it out."""
        with contextlib.suppress(ApiException, httpx.HTTPError, OSError):
            current = await self.client.get_raw(self.info, self.name, self.namespace)
            spec = current.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            released = dict(current)
            released["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self.client.replace_raw(released, self.namespace)
