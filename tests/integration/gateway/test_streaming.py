"""Bodies stream through the gateway both ways without being held whole (its memory stays
bounded while 50 MB pass, even when the receiving side is slow), and timeouts give 504."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from kumo.client import AsyncClient
from kumo.platform.gateway import REQUEST_TIMEOUT_ANNOTATION
from tests.integration.gateway.backend import PATTERN
from tests.integration.gateway.conftest import (
    BackendProcess,
    GatewayProcess,
    eventually,
    publish,
)

SIZE = 50 * 1024 * 1024
# What the gateway may hold at most while 50 MB pass: socket buffers and a few chunks, far
# from the body's size.
MEMORY_BUDGET_KIB = 16 * 1024


def _expected_digest(size: int) -> str:
    digest = hashlib.sha256()
    whole, rest = divmod(size, len(PATTERN))
    for _ in range(whole):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


def _reset_peak(gateway: GatewayProcess) -> None:
    """Start measuring the peak resident set from now (Linux: clear_refs 5)."""
    Path(f"/proc/{gateway.process.pid}/clear_refs").write_text("5")


async def _ready(http: httpx.AsyncClient, url: str) -> bool:
    return (await http.get(url)).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_large_download_streams_with_bounded_memory(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
    chunked: bool,
) -> None:
    web = backends("web")
    await publish(async_client, namespace, "files", [web])
    base = f"{gateway.url}/s/{namespace}/files"
    await eventually(lambda: _ready(http, f"{base}/"))
    _reset_peak(gateway)
    rss_before, _ = gateway.memory_kib()

    digest = hashlib.sha256()
    received = 0
    url = f"{base}/download?size={SIZE}" + ("&chunked=1" if chunked else "")
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        if chunked:
            assert response.headers["transfer-encoding"] == "chunked"
        else:
            assert int(response.headers["content-length"]) == SIZE
        async for piece in response.aiter_raw():
            if received == 0:
                # A slow client: the backend could send everything meanwhile; the gateway
                # must stop reading from it instead of buffering.
                await asyncio.sleep(1.0)
            digest.update(piece)
            received += len(piece)
    assert received == SIZE
    assert digest.hexdigest() == _expected_digest(SIZE)
    _, peak = gateway.memory_kib()
    assert peak - rss_before < MEMORY_BUDGET_KIB, (rss_before, peak)


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_large_upload_streams_with_bounded_memory(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
    chunked: bool,
) -> None:
    web = backends("web")
    await publish(async_client, namespace, "sink", [web])
    await eventually(lambda: _ready(http, f"{gateway.url}/s/{namespace}/sink/"))
    _reset_peak(gateway)
    rss_before, _ = gateway.memory_kib()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(SIZE // len(PATTERN)):
            yield PATTERN

    headers = {} if chunked else {"Content-Length": str(SIZE)}
    started = time.monotonic()
    # The backend waits a second before it reads: the upload must wait in bounded buffers.
    response = await http.post(
        f"{gateway.url}/s/{namespace}/sink/upload?delay=1", content=body(), headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"size": SIZE, "sha256": _expected_digest(SIZE)}
    assert time.monotonic() - started >= 1.0
    _, peak = gateway.memory_kib()
    assert peak - rss_before < MEMORY_BUDGET_KIB, (rss_before, peak)


async def test_slow_upstream_gets_504_after_the_service_timeout(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    slow = backends("slow")
    await publish(
        async_client, namespace, "slow", [slow], annotations={REQUEST_TIMEOUT_ANNOTATION: "500ms"}
    )
    base = f"{gateway.url}/s/{namespace}/slow"
    await eventually(lambda: _ready(http, f"{base}/"))

    started = time.monotonic()
    response = await http.get(f"{base}/sleep?seconds=5")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.headers["kumo-gateway-error"] == "timeout"
    assert response.text == (
        f"upstream 127.0.0.1:{slow.port} of service {namespace}/slow did not answer within 0.5s\n"
    )
    assert 0.5 <= elapsed < 2.0, elapsed
    # Within the limit is fine, and the gateway keeps serving.
    assert (await http.get(f"{base}/sleep?seconds=0.1")).status_code == 200
    labels = {"namespace": namespace, "service": "slow"}
    assert gateway.metric("kumo_gateway_requests_total", code="504", **labels) == 1
