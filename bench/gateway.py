"""Gateway throughput and latency against the same backend reached directly, in one run.

    .venv/bin/python bench/gateway.py [--duration 5] [--connections 32] [--rounds 3]
                                      [--backends json,static,http.server] [--no-container]
                                      [--reference nginx,haproxy]

What runs: a real ``kumo apiserver``; the backend in a real Podman container (the
``docker.io/library/python:3.11`` image that ``kumo images bootstrap`` builds), its port
published on 127.0.0.1 (a plain process if Podman or the image is missing, or with
``--no-container``); a Service and Endpoints for it written through the API; ``kumo gateway``
as its own process (uvloop) routing ``Host: app.bench.localhost`` to it.

Load: ``wrk`` when it is installed (Debian package ``wrk``), else a built-in asyncio load
generator; fixed concurrency (keep-alive connections) for a fixed duration. Direct and gateway
rounds alternate, so noise from other work on the machine falls on both; the medians are
compared.

Backends (one line each in the table):
- ``json``: a small JSON API (parses the request, answers a JSON document of ~150 bytes);
- ``static``: the same server answering a pre-built response, the least work a backend can
  do per request: the proxy's own cost dominates;
- ``function``: the same server doing a small function's worth of work per request (about
  0.1 ms: builds 60 records, sorts them, renders 20 as JSON), closer to what runs behind a
  serverless gateway;
- ``http.server``: Python's stock ``python3 -m http.server`` serving a small file (HTTP/1.0:
  one connection per request).

Reference proxies: when ``nginx`` and ``haproxy`` are installed (Debian ``nginx-light`` and
``haproxy``; ``make bench`` installs them) each runs as one single-threaded process routing
the same Host to the same backend, with pooled keep-alive upstream connections and
X-Forwarded-For, as the gateway does, and is measured in the same rounds. Their ratio is what
a compiled proxy reaches on this machine: the ceiling any proxy meets here, which tells the
machine's limit apart from the gateway's.

Besides the ratio, the table shows the CPU the gateway process and the backend spent per
request (from /proc): the gateway's own cost per request, independent of how the machine's
two cores happen to be shared. When the backend does almost nothing (``static``, ``json``),
load generator, gateway and backend together saturate the cores and the ratio is bounded by
the gateway's CPU per request against the backend's, not by waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import kumo
from kumo.client import ApiException, Client, ClientConfig, KubeConfig
from kumo.model.core import Endpoints
from kumo.model.registry import for_model

REPO = Path(__file__).resolve().parent.parent
IMAGE = "docker.io/library/python:3.11"
CONTAINERS_CONF = Path(kumo.__file__).parent / "node" / "runtime" / "containers.conf"
NAMESPACE = "bench"
TARGET_RATIO = 0.7

BACKEND_SOURCE = r"""
import asyncio, json, sys, time

STATIC = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\n"
          b"hello from kumo backend\n")


def function_response(path, served):
    # A small function's worth of work (~0.1 ms): build records, sort, render the top ones.
    items = [{"id": i, "name": f"item-{i}", "price": (i * 37 + served) % 101,
              "tags": ["a", "b", str(i % 7)]} for i in range(60)]
    items.sort(key=lambda item: (item["price"], item["id"]))
    body = json.dumps({"path": path, "items": items[:20], "total": len(items)}).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


class Handler(asyncio.Protocol):
    served = 0

    def __init__(self, mode):
        self.mode = mode
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4:]
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            buffer = buffer[int(headers.get("content-length") or 0):]
            if self.mode == "static":
                self.transport.write(STATIC)
                continue
            Handler.served += 1
            if self.mode == "function":
                self.transport.write(function_response(path, Handler.served))
                continue
            body = json.dumps({
                "method": method, "path": path, "host": headers.get("host"),
                "served": Handler.served, "time": time.time(),
                "client": headers.get("x-forwarded-for"),
            }).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))
        self.buffer = buffer


async def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Handler(mode), "0.0.0.0", port, backlog=1024)
    print("listening", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

BACKENDS = {
    # name: (command inside the container after "python3", request path)
    "json": (["/srv/app.py", "8080", "json"], "/api/items?limit=10"),
    "static": (["/srv/app.py", "8080", "static"], "/"),
    "function": (["/srv/app.py", "8080", "function"], "/api/items?sort=price"),
    "http.server": (["-m", "http.server", "8080", "--directory", "/srv"], "/app.py"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout:.0f}s")


# ---- the pieces -------------------------------------------------------------------------------


class ApiServer:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "apiserver"
        self.port = free_port()
        token_file = root / "token"
        self.log = (root / "apiserver.log").open("wb")
        kumo_bin = REPO / ".venv" / "bin" / "kumo"
        command = [str(kumo_bin)] if kumo_bin.exists() else [sys.executable, "-m", "kumo.cli.main"]
        env = {**os.environ, "KUMO_HOME": str(root / "home")}
        env.pop("KUMOCONFIG", None)
        self.process = subprocess.Popen(
            [*command, "apiserver", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--token-file", str(token_file)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        ca = self.data_dir / "pki" / "ca.crt"
        wait_until(
            lambda: (
                token_file.exists()
                and httpx.get(f"https://127.0.0.1:{self.port}/healthz", verify=str(ca)).status_code
                == 200
            ),
            "kumo apiserver",
        )
        self.token = token_file.read_text().strip()
        self.kubeconfig = root / "kubeconfig"
        config = KubeConfig.load(self.kubeconfig)
        config.set_cluster("bench", f"https://127.0.0.1:{self.port}", ca.read_bytes())
        config.set_user("bench-admin", self.token)
        config.set_context("bench", "bench", "bench-admin", "default")
        config.use_context("bench")
        config.save()
        self.config = ClientConfig(
            server=f"https://127.0.0.1:{self.port}",
            token=self.token,
            ca_data=ca.read_bytes(),
            namespace="default",
            context="bench",
            user="bench-admin",
        )

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


class Backend:
    """The backend, in a container when possible; ``port`` is where it answers on 127.0.0.1."""

    def __init__(self, kind: str, root: Path, use_container: bool) -> None:
        self.kind = kind
        self.port = free_port()
        arguments, self.path = BACKENDS[kind]
        source_dir = root / "srv"
        source_dir.mkdir(exist_ok=True)
        (source_dir / "app.py").write_text(BACKEND_SOURCE)
        self.container: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        if use_container:
            self.container = f"kumo-bench-{kind.replace('.', '-')}-{uuid.uuid4().hex[:6]}"
            subprocess.run(
                ["podman", "run", "-d", "--rm", "--name", self.container,
                 "-p", f"127.0.0.1:{self.port}:8080", "-v", f"{source_dir}:/srv:ro",
                 IMAGE, "python3", *arguments],
                check=True, capture_output=True, env=podman_env(),
            )  # fmt: skip
            self.where = f"container {IMAGE}"
            inspected = subprocess.run(
                ["podman", "inspect", "--format", "{{.State.Pid}}", self.container],
                check=True, capture_output=True, text=True, env=podman_env(),
            )  # fmt: skip
            self.pid = int(inspected.stdout.strip())
        else:
            local = [a.replace("/srv/", f"{source_dir}/") for a in arguments]
            local = [a if a != "/srv" else str(source_dir) for a in local]
            local[local.index("8080")] = str(self.port)
            self.process = subprocess.Popen(
                [sys.executable, *local], cwd=source_dir,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.where = "local process"
            self.pid = self.process.pid
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{self.port}{self.path}").status_code == 200,
            f"backend {kind}",
        )

    def stop(self) -> None:
        if self.container:
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", self.container],
                capture_output=True,
                check=False,
                env=podman_env(),
            )
        if self.process is not None:
            stop_process(self.process)


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx-{port}.pid;
error_log {root}/nginx-{port}.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/nginx-body;
  proxy_temp_path {root}/nginx-proxy;
  upstream app {{ server 127.0.0.1:{backend_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    server_name {host};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""

HAPROXY_CONF = """\
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
  option forwardfor
frontend bench
  bind 127.0.0.1:{port}
  use_backend app if {{ req.hdr(host) -i {host} }}
backend app
  server app 127.0.0.1:{backend_port}
"""

REFERENCES = {
    # name: (executable, configuration template, command after the executable)
    "nginx": ("nginx", NGINX_CONF, ["-e", "stderr", "-c"]),
    "haproxy": ("haproxy", HAPROXY_CONF, ["-db", "-f"]),
}


class ReferenceProxy:
    """nginx or haproxy as one single-threaded process in front of the backend."""

    def __init__(self, name: str, root: Path, backend: Backend, host: str) -> None:
        self.name = name
        self.port = free_port()
        executable, template, flags = REFERENCES[name]
        config = root / f"{name}-{self.port}.conf"
        config.write_text(
            template.format(root=root, port=self.port, backend_port=backend.port, host=host)
        )
        self.log = (root / f"{name}-{self.port}.out").open("wb")
        self.process = subprocess.Popen(
            [shutil.which(executable) or executable, *flags, str(config)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.pid = self.process.pid
        wait_until(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{self.port}{backend.path}", headers={"Host": host}
                ).status_code
                == 200
            ),
            name,
        )

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def references_available(requested: list[str]) -> tuple[list[str], list[str]]:
    """The requested reference proxies that are installed, and a note for each missing one."""
    found, missing = [], []
    for name in requested:
        if shutil.which(REFERENCES[name][0]):
            found.append(name)
        else:
            missing.append(f"{name} is not installed (Debian package {name}"
                           f"{'-light' if name == 'nginx' else ''})")  # fmt: skip
    return found, missing


class GatewayProcess:
    def __init__(self, api: ApiServer, root: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = (root / "gateway.log").open("wb")
        env = {**os.environ, "KUMOCONFIG": str(api.kubeconfig)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kumo.cli.gateway_commands", "--port", str(self.port),
             "--metrics-port", str(self.metrics_port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz").status_code == 200,
            "kumo gateway",
        )

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def container_available() -> tuple[bool, str]:
    if shutil.which("podman") is None:
        return False, "podman is not installed"
    found = subprocess.run(
        ["podman", "image", "exists", IMAGE], capture_output=True, check=False, env=podman_env()
    )
    if found.returncode != 0:
        return False, f"image {IMAGE} is missing (kumo images bootstrap builds it)"
    return True, ""


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def publish(client: Client, backend: Backend) -> None:
    """Service app in namespace bench, with Endpoints at the backend's published port."""
    with contextlib.suppress(ApiException):  # already there from the previous backend
        client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "app", "namespace": NAMESPACE},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
            NAMESPACE,
        )
    endpoints: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "app", "namespace": NAMESPACE},
        "subsets": [
            {
                "addresses": [{"ip": "127.0.0.1"}],
                "ports": [{"name": "http", "port": backend.port, "protocol": "TCP"}],
            }
        ],
    }
    try:
        current = client.get_raw(for_model(Endpoints), "app", NAMESPACE)
    except ApiException:
        client.create_raw(endpoints, NAMESPACE)
        return
    endpoints["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    client.replace_raw(endpoints, NAMESPACE)


# ---- load -----------------------------------------------------------------------------------


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    # CPU microseconds per request, filled in by measure()
    gateway_cpu_us: float = 0.0
    backend_cpu_us: float = 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, host: str | None, connections: int, duration: float) -> Result:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s"]
    if host:
        command += ["-H", f"Host: {host}"]
    output = subprocess.run(
        [*command, url], check=True, capture_output=True, text=True, timeout=duration + 30
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match is not None, output
        return float(match.group(1)) * _UNITS[match.group(2)]

    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?(\d+) timeout"):
        found = re.search(pattern, output)
        if found:
            errors += int(found.group(1))
    return Result(rps, percentile("50"), percentile("99"), errors)


async def _asyncio_load(
    port: int, path: str, host: str, connections: int, duration: float
) -> Result:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                else:  # HTTP/1.0 style: the body ends with the connection
                    await reader.read()
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if not head.startswith(b"HTTP/1.1 2") and not head.startswith(b"HTTP/1.0 2"):
                    errors += 1
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return Result(
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        errors,
    )


def run_asyncio(port: int, path: str, host: str, connections: int, duration: float) -> Result:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(_asyncio_load(port, path, host, connections, duration))


# ---- main -----------------------------------------------------------------------------------


@dataclass
class Side:
    """One way of reaching the backend: directly, through the gateway or a reference proxy."""

    name: str
    port: int
    host: str | None  # the Host header to send, None for the backend's own
    pid: int | None  # the proxy process whose CPU is counted


def measure(
    backend: Backend, sides: list[Side], args: argparse.Namespace, use_wrk: bool
) -> dict[str, Result]:
    """Median result per side; the sides take turns in every round, so noise falls on all."""
    results: dict[str, list[Result]] = {side.name: [] for side in sides}
    for _ in range(args.rounds):
        for side in sides:
            before = cpu_seconds(side.pid) if side.pid else 0.0, cpu_seconds(backend.pid)
            if use_wrk:
                result = run_wrk(
                    f"http://127.0.0.1:{side.port}{backend.path}",
                    side.host,
                    args.connections,
                    args.duration,
                )
            else:
                result = run_asyncio(
                    side.port, backend.path, side.host or "127.0.0.1", args.connections,
                    args.duration,
                )  # fmt: skip
            requests = max(result.requests_per_second * args.duration, 1.0)
            if side.pid:
                result.gateway_cpu_us = (cpu_seconds(side.pid) - before[0]) / requests * 1e6
            result.backend_cpu_us = (cpu_seconds(backend.pid) - before[1]) / requests * 1e6
            results[side.name].append(result)

    def median(results: list[Result]) -> Result:
        return Result(
            statistics.median(r.requests_per_second for r in results),
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            sum(r.errors for r in results),
            statistics.median(r.gateway_cpu_us for r in results),
            statistics.median(r.backend_cpu_us for r in results),
        )

    return {name: median(found) for name, found in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every side per backend")
    parser.add_argument("--backends", default="json,static,function,http.server")
    parser.add_argument("--no-container", action="store_true", help="run backends as processes")
    parser.add_argument(
        "--reference",
        default="nginx,haproxy",
        help="reference proxies measured alongside, when installed ('' for none)",
    )
    args = parser.parse_args()
    kinds = [k.strip() for k in args.backends.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    requested = [r.strip() for r in args.reference.split(",") if r.strip()]
    unknown = [r for r in requested if r not in REFERENCES]
    if unknown:
        parser.error(f"unknown reference proxy {unknown}; choose from {', '.join(REFERENCES)}")
    references, missing = references_available(requested)

    use_container, why_not = (
        (False, "--no-container") if args.no_container else container_available()
    )
    use_wrk = shutil.which("wrk") is not None
    print(
        f"load: {'wrk' if use_wrk else 'asyncio load generator (wrk not installed)'}, "
        f"{args.connections} keep-alive connections, {args.rounds} x {args.duration:g}s per side, "
        "sides taking turns; medians"
    )
    if not use_container:
        print(f"backend: a local process ({why_not})")
    for note in missing:
        print(f"reference: {note}")
    print(f"machine: {os.cpu_count()} CPUs shared by load generator, proxy and backend\n")

    host = f"app.{NAMESPACE}.localhost"
    rows: list[tuple[str, str, dict[str, Result]]] = []
    with tempfile.TemporaryDirectory(prefix="kumo-bench-gateway-") as tmp:
        root = Path(tmp)
        api = ApiServer(root)
        gateway: GatewayProcess | None = None
        try:
            with Client(api.config) as client:
                client.create_raw(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
                )
                gateway = GatewayProcess(api, root)
                for kind in kinds:
                    backend = Backend(kind, root, use_container)
                    proxies: list[ReferenceProxy] = []
                    try:
                        publish(client, backend)
                        url = f"http://127.0.0.1:{gateway.port}{backend.path}"
                        wait_until(
                            lambda u=url: httpx.get(u, headers={"Host": host}).status_code == 200,
                            "route through the gateway",
                        )
                        for name in references:
                            proxies.append(ReferenceProxy(name, root, backend, host))
                        sides = [
                            Side("direct", backend.port, None, None),
                            Side("gateway", gateway.port, host, gateway.process.pid),
                            *(Side(p.name, p.port, host, p.pid) for p in proxies),
                        ]
                        rows.append((kind, backend.where, measure(backend, sides, args, use_wrk)))
                    finally:
                        for proxy in proxies:
                            proxy.stop()
                        backend.stop()
        finally:
            if gateway is not None:
                gateway.stop()
            api.stop()

    print_report(rows, references)
    return 0


def print_report(rows: list[tuple[str, str, dict[str, Result]]], references: list[str]) -> None:
    wheres = sorted({where for _, where, _ in rows})
    print(f"backend runs as: {', '.join(wheres)}")
    header = (
        f"{'backend':<12} {'direct req/s':>12} {'p50 ms':>7} {'p99 ms':>7}   "
        f"{'gateway req/s':>13} {'p50 ms':>7} {'p99 ms':>7}   {'ratio':>5}   "
        f"{'CPU us/req: backend':>19} {'gateway':>8}"
        + "".join(f"   {name + ' ratio':>13} {'CPU':>5}" for name in references)
    )
    print(header)
    print("-" * len(header))
    for kind, _, results in rows:
        direct, proxied = results["direct"], results["gateway"]
        errors = sum(r.errors for r in results.values())
        line = (
            f"{kind:<12} {direct.requests_per_second:>12,.0f} {direct.p50_ms:>7.2f} "
            f"{direct.p99_ms:>7.2f}   {proxied.requests_per_second:>13,.0f} {proxied.p50_ms:>7.2f} "
            f"{proxied.p99_ms:>7.2f}   {ratio(proxied, direct):>5.2f}   "
            f"{direct.backend_cpu_us:>19.1f} {proxied.gateway_cpu_us:>8.1f}"
        )
        for name in references:
            line += f"   {ratio(results[name], direct):>13.2f} {results[name].gateway_cpu_us:>5.1f}"
        print(line + (f"   ({errors} errors)" if errors else ""))
    print()
    for kind, _, results in rows:
        direct, proxied = results["direct"], results["gateway"]
        gateway_ratio = ratio(proxied, direct)
        verdict = "meets" if gateway_ratio >= TARGET_RATIO else "misses"
        print(
            f"{kind}: gateway/direct = {gateway_ratio:.2f} ({verdict} the {TARGET_RATIO}x target); "
            f"the gateway spends {proxied.gateway_cpu_us:.0f} us CPU per request, "
            f"{proxied.gateway_cpu_us / max(direct.backend_cpu_us, 0.1):.1f}x the backend's own"
        )
        for name in references:
            reference = results[name]
            print(
                f"  {name}: {ratio(reference, direct):.2f} of direct, "
                f"{reference.gateway_cpu_us:.0f} us CPU per request; the gateway makes "
                f"{ratio(proxied, reference):.2f}x {name}'s throughput"
            )


def ratio(measured: Result, baseline: Result) -> float:
    return measured.requests_per_second / max(baseline.requests_per_second, 1e-9)


if __name__ == "__main__":
    sys.exit(main())
