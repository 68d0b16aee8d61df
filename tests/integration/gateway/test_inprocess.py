"""The gateway in the test's own event loop (real sockets on 127.0.0.1, routes written into its
table directly), for behaviour that needs particular settings or backends that misbehave on
purpose: timeouts, connect failures and ejection, early and unframed responses, 100-continue,
bad requests, several listen addresses, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from kumo.platform.gateway import Gateway, GatewayOptions
from tests.conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """A raw TCP server on 127.0.0.1 running ``handler`` per connection; yields its port."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def ok_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1]
        if path.startswith(b"/sleep"):
            await asyncio.sleep(float(path.split(b"=")[1]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
        await writer.drain()


@contextlib.asynccontextmanager
async def running_gateway(**options: Any) -> AsyncIterator[Gateway]:
    options.setdefault("port", 0)
    options.setdefault("metrics_port", None)
    gateway = Gateway(None, GatewayOptions(**options))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop(drain_timeout=1)


def route(
    gateway: Gateway, name: str, ports: list[int], annotations: dict[str, str] | None = None
) -> str:
    """Service default/<name> with endpoints 127.0.0.1:<port> for each port; returns its URL."""
    service = {
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }
    endpoints = {
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}
            for port in ports
        ]
    }
    gateway.table.update("default", name, service, endpoints)
    return f"http://127.0.0.1:{gateway.port}/s/default/{name}"


async def test_connect_failures_eject_and_retry_within_bounds() -> None:
    dead = [free_port() for _ in range(3)]
    async with running_gateway(max_retries=2, ejection_base=0.3, ejection_max=0.6) as gateway:
        url = route(gateway, "dead", dead)
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{url}/")
            assert response.status_code == 502
            assert response.headers["kumo-gateway-error"] == "upstream-failed"
            assert response.text.startswith("could not connect to 127.0.0.1:")
            assert "for service default/dead: connection refused" in response.text
            stats = gateway.metrics.services[("default", "dead")]
            # three attempts: the first and two retries, each on another endpoint
            assert stats.retries == 2 and stats.ejections == 3
            assert gateway.metrics.upstream_connect_failures == 3
            assert all(not u.available(time.monotonic()) for u in gateway.table.upstreams)

            # One endpoint comes to life. Even while every endpoint is ejected, the gateway
            # still tries the one whose ejection ends first rather than give up.
            async with serve(ok_handler) as live:
                url = route(gateway, "dead", [dead[0], live])
                await asyncio.sleep(0.35)
                answers = [await http.get(f"{url}/x") for _ in range(6)]
                assert [a.status_code for a in answers] == [200] * 6
                # a second failure of dead[0] doubles its ejection: it is skipped for a while
                upstream = next(u for u in gateway.table.upstreams if u.port == dead[0])
                assert upstream.ejections == 2
                assert upstream.ejected_until - time.monotonic() > 0.3


async def test_stream_idle_timeout_cuts_off_a_stalled_response() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(10)

    async with (
        serve(stalls) as port,
        running_gateway(stream_idle_timeout=0.4, tick=0.05) as gateway,
    ):
        url = route(gateway, "stall", [port])
        started = time.monotonic()
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{url}/")
        assert 0.4 <= time.monotonic() - started < 2.0


async def test_idle_and_slow_clients_are_disconnected() -> None:
    async with running_gateway(client_idle_timeout=0.3, tick=0.05) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.3 <= time.monotonic() - started < 2.0
        writer.close()

        # headers that never end
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 ")
        writer.close()


async def test_bad_requests_get_400_and_huge_headers_431() -> None:
    async with running_gateway(max_header_bytes=4096) as gateway:
        for request, status in (
            (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n", b"431"),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
            writer.close()


async def test_unframed_and_early_responses() -> None:
    async def unframed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/early" in head:
            # answers without reading the upload, then (as servers do) closes its side and
            # drops what still comes
            writer.write(
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close"
                b"\r\n\r\nbig!"
            )
            await writer.drain()
            writer.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while await reader.read(65536):
                        pass
            return
        # no Content-Length, no chunking: the body ends when the connection does
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()

    async with serve(unframed) as port, running_gateway() as gateway:
        url = route(gateway, "odd", [port])
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{url}/")
            assert response.status_code == 200
            assert response.text == "until the end"
            assert response.headers["transfer-encoding"] == "chunked"
            # the client connection survived
            assert (await http.get(f"{url}/")).text == "until the end"

            early = await http.post(f"{url}/early", content=b"x" * (4 * 1024 * 1024))
            assert early.status_code == 413 and early.text == "big!"


async def test_expect_100_continue_is_relayed() -> None:
    async def continues(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"expect: 100-continue" in head.lower()
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        body = await reader.readexactly(5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body.upper())
        await writer.drain()

    async with serve(continues) as port, running_gateway() as gateway:
        route(gateway, "cont", [port])
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"POST /s/default/cont/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert final.startswith(b"HTTP/1.1 200 OK")
        assert await reader.readexactly(5) == b"HELLO"
        writer.close()


async def test_listens_on_every_address_given() -> None:
    addresses = ["127.0.0.1"]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        addresses.append("::1")
    async with running_gateway(addresses=tuple(addresses)) as gateway:
        bound = {sock.getsockname()[0] for server in gateway._servers for sock in server.sockets}
        assert bound == set(addresses)
        ports = {sock.getsockname()[1] for server in gateway._servers for sock in server.sockets}
        assert ports == {gateway.port}


async def test_stop_lets_running_requests_finish() -> None:
    async with serve(ok_handler) as port:
        gateway = Gateway(None, GatewayOptions(port=0, metrics_port=None))
        await gateway.start()
        url = route(gateway, "web", [port])
        async with httpx.AsyncClient() as http:
            running = asyncio.create_task(http.get(f"{url}/sleep=0.5"))
            await asyncio.sleep(0.2)
            await gateway.stop(drain_timeout=5)
            response = await running
            assert response.status_code == 200 and response.text == "/sleep=0.5"
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{url}/")


async def test_an_upload_to_nowhere_gets_its_404() -> None:
    async with running_gateway() as gateway, httpx.AsyncClient() as http:
        # the gateway answers at once and reads (and drops) the body so the answer arrives
        response = await http.post(
            f"http://127.0.0.1:{gateway.port}/s/default/missing/upload",
            content=b"x" * (8 * 1024 * 1024),
        )
        assert response.status_code == 404
        assert response.text == "service default/missing not found\n"
        assert response.headers["connection"] == "close"
