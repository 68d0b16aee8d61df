"""A small HTTP/1.1 backend for the gateway tests, run as its own process:

    python backend.py --name b1 [--port 0] [--drops]

It prints ``PORT <n>`` once it listens. Routes:
- ``GET /sleep?seconds=S``: answers after S seconds;
- ``GET /status/<code>``: answers with that status;
- ``GET /download?size=N[&chunked=1]``: N bytes (a repeating pattern), written in 64 KiB pieces
  as the client reads them;
- ``POST|PUT /upload[?delay=S]``: (after S seconds) reads the body as it comes and answers
  its size and SHA-256;
- ``* /drop``: with ``--drops``, closes the connection without answering (else answered
  like any other path);
- ``GET /ws`` with ``Upgrade: echo``: 101, then echoes every byte back;
- ``GET /__stats``: how many requests this backend has seen (not counting these), by path;
- anything else: a JSON description of the request (backend name, method, path, headers).
Every answer carries ``X-Backend: <name>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

PATTERN = bytes(range(256)) * 256  # 64 KiB


class Backend:
    def __init__(self, name: str, drops: bool) -> None:
        self.name = name
        self.drops = drops
        self.seen: Counter[str] = Counter()
        self.total = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers: list[tuple[str, str]] = []
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers.append((name.strip(), value.strip()))
                lowered = {name.lower(): value for name, value in headers}
                url = urlsplit(target)
                if url.path != "/__stats":
                    self.total += 1
                    self.seen[url.path] += 1
                keep_alive = await self.respond(
                    method, url.path, parse_qs(url.query), headers, lowered, reader, writer
                )
                if not keep_alive or version == "HTTP/1.0":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def body_chunks(
        self, lowered: dict[str, str], reader: asyncio.StreamReader
    ) -> AsyncIterator[bytes]:
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return
                remaining = size
                while remaining:
                    chunk = await reader.read(min(remaining, 65536))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(chunk)
                    yield chunk
                await reader.readexactly(2)
        else:
            remaining = int(lowered.get("content-length", "0") or 0)
            while remaining:
                chunk = await reader.read(min(remaining, 65536))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(chunk)
                yield chunk

    async def respond(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: list[tuple[str, str]],
        lowered: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if path == "/drop" and self.drops:
            writer.transport.abort()
            return False
        if path == "/upload":
            # a slow reader first: the body must wait somewhere (in a bounded buffer)
            await asyncio.sleep(float(query.get("delay", ["0"])[0]))
            digest = hashlib.sha256()
            size = 0
            async for chunk in self.body_chunks(lowered, reader):
                digest.update(chunk)
                size += len(chunk)
            await self.send_json(writer, 200, {"size": size, "sha256": digest.hexdigest()})
            return True
        async for _ in self.body_chunks(lowered, reader):
            pass
        if path == "/sleep":
            await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            await self.send_json(writer, code, {"backend": self.name, "status": code})
            return True
        if path == "/download":
            await self.download(writer, int(query["size"][0]), query.get("chunked") == ["1"])
            return True
        if path == "/ws" and lowered.get("upgrade", "").lower() == "echo":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n"
                b"X-Backend: " + self.name.encode() + b"\r\n\r\n"
            )
            await writer.drain()
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            return False
        if path == "/__stats":
            await self.send_json(writer, 200, {"total": self.total, "paths": dict(self.seen)})
            return True
        document = {
            "backend": self.name,
            "method": method,
            "path": path,
            "query": {k: v[0] for k, v in query.items()},
            "headers": headers,
        }
        await self.send_json(writer, 200, document, head_only=method == "HEAD")
        return True

    async def send_json(
        self, writer: asyncio.StreamWriter, code: int, document: object, *, head_only: bool = False
    ) -> None:
        body = json.dumps(document).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"X-Backend: %s\r\n\r\n" % (code, len(body), self.name.encode())
        )
        if not head_only:
            writer.write(body)
        await writer.drain()

    async def download(self, writer: asyncio.StreamWriter, size: int, chunked: bool) -> None:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n%s\r\n"
            b"X-Backend: %s\r\n\r\n" % (framing, self.name.encode())
        )
        remaining = size
        while remaining:
            piece = PATTERN[: min(remaining, len(PATTERN))]
            remaining -= len(piece)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--drops", action="store_true")
    args = parser.parse_args()
    backend = Backend(args.name, args.drops)
    server = await asyncio.start_server(backend.handle, "127.0.0.1", args.port, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
