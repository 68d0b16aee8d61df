"""A ``kumo apiserver`` with a service CIDR of the test's choosing (the command has no flag
for it): ``python -m tests.integration.services.serve_api DATA_DIR PORT TOKEN_FILE CIDR``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from kumo.platform.api.resources import Settings
from kumo.platform.api.server import ApiServer, ServerOptions


async def main(data_dir: Path, port: int, token_file: Path, cidr: str) -> None:
    options = ServerOptions(data_dir=data_dir, port=port, settings=Settings(service_cidr=cidr))
    server = ApiServer(options)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        token = await server.issue_admin_token()
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        waiter = asyncio.ensure_future(server.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))
