"""API server benchmark: latency and throughput of create, get, list and update.

Starts its own ``kumo apiserver`` on a temporary data directory, loads 10,000 ConfigMaps
spread over four namespaces, then runs each phase with 50 concurrent clients (one keep-alive
``httpx.AsyncClient`` each). Every phase is bounded in requests and in seconds.

Two kinds of phases:
- saturation: every client sends its next request as soon as the last one answered; this
  gives the most requests per second, and latencies that are mostly queueing;
- paced: the 50 clients together offer a fixed rate (default 250 writes/s); latency is
  measured from when each request was due, so a server (or client) that falls behind
  cannot hide it. The 25 ms write target is checked against these.

GET /healthz (no auth, no store) is the baseline that the p50 ratios are taken against. The
table also shows the CPU each request cost the server and the benchmark's own client.

    .venv/bin/python bench/api.py [--objects 10000] [--clients 50] [--seconds 15] [--rate 250]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
NAMESPACES = ("bench-a", "bench-b", "bench-c", "bench-d")
WRITE_P99_TARGET_MS = 25.0


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    # The server's own histogram of this phase's requests: bucket upper bound (s) -> count.
    server_buckets: dict[float, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    def server_percentile_bound(self, p: float) -> float:
        """The smallest histogram bucket (ms) that holds ``p`` % of the requests as the
        server timed them (from reading the body to the response), NaN without data."""
        total = self.server_buckets.get(float("inf"), 0.0)
        if not total:
            return float("nan")
        for bound in sorted(self.server_buckets):
            if self.server_buckets[bound] >= total * p / 100:
                return bound * 1000
        return float("inf")

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.requests if self.requests else float("nan")


class Server:
    """``kumo apiserver`` as a child process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.token_file = data_dir.parent / "token"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        kumo = REPO / ".venv" / "bin" / "kumo"
        command = (
            [str(kumo)]
            if kumo.exists()
            else [sys.executable, "-c", "from kumo.cli.main import main; main()"]
        )
        env = dict(os.environ, KUMO_HOME=str(self.data_dir.parent / "home"))
        with (self.data_dir.parent / "server.log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *command,
                    "apiserver",
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--token-file",
                    str(self.token_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the API server exited with {self.process.returncode}")
            if self.token_file.exists() and (self.data_dir / "pki" / "ca.crt").exists():
                try:
                    if httpx.get(f"{self.url}/healthz", verify=self.ssl()).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise SystemExit("the API server did not become healthy in 30 s")

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


_BUCKET = re.compile(
    r'^apiserver_request_duration_seconds_bucket\{le="([^"]+)",resource="([^"]+)",verb="([^"]+)"\} (\S+)$',
    re.MULTILINE,
)


async def server_histogram(client: httpx.AsyncClient, verb: str) -> dict[float, float]:
    """Cumulative request-duration buckets the server recorded for ConfigMap ``verb``."""
    text = (await client.get("/metrics")).text
    return {
        float(le): float(count)
        for le, resource_name, found_verb, count in _BUCKET.findall(text)
        if resource_name == "configmaps" and found_verb == verb
    }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def config_map(namespace: str, number: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{number:05d}",
            "namespace": namespace,
            "labels": {"app": "bench", "shard": str(number % 100), "tier": "web"},
        },
        "data": {"index": str(number), "payload": "x" * 200},
    }


def collection(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def placed(number: int) -> tuple[str, str]:
    """Where object ``number`` lives: (namespace, name)."""
    return NAMESPACES[number % len(NAMESPACES)], f"cm-{number:05d}"


# A request gets the client to use and its number within the phase (0, 1, 2, ...).
Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class Bench:
    server: Server
    clients: list[httpx.AsyncClient]
    seconds: float

    async def phase(
        self,
        name: str,
        request: Request,
        *,
        count: int,
        expect: int = 200,
        rate: float | None = None,
        seconds: float | None = None,
        verb: str = "",
    ) -> Phase:
        """``count`` requests or ``seconds``, whichever ends first. Without ``rate`` each
        client sends back to back; with it, request k is due at start + k / rate and its
        latency counts from then."""
        phase = Phase(name)
        limit = seconds if seconds is not None else self.seconds
        before = await server_histogram(self.clients[0], verb) if verb else {}
        numbers = iter(range(count))
        server_cpu, client_cpu = self.server.cpu_seconds(), own_cpu_seconds()
        # The benchmark's own garbage collector must not show up as server latency.
        gc.disable()
        started = time.perf_counter()
        deadline = started + limit

        async def worker(client: httpx.AsyncClient) -> None:
            for number in numbers:
                due = started + number / rate if rate else time.perf_counter()
                if due > deadline:
                    return
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    response = await request(client, number)
                except httpx.HTTPError:
                    phase.errors += 1
                    continue
                if response.status_code == expect:
                    phase.latencies.append(time.perf_counter() - due)
                else:
                    phase.errors += 1

        try:
            await asyncio.gather(*(worker(c) for c in self.clients))
        finally:
            phase.elapsed = time.perf_counter() - started
            gc.enable()
        phase.server_cpu = self.server.cpu_seconds() - server_cpu
        phase.client_cpu = own_cpu_seconds() - client_cpu
        if verb:
            after = await server_histogram(self.clients[0], verb)
            phase.server_buckets = {b: n - before.get(b, 0.0) for b, n in after.items()}
        return phase


async def benchmark(
    server: Server, objects: int, concurrency: int, seconds: float, rate: float
) -> list[Phase]:
    token = server.token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    context = server.ssl()
    clients = [
        httpx.AsyncClient(
            base_url=server.url,
            headers=headers,
            verify=context,
            timeout=60,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        for _ in range(concurrency)
    ]
    bench = Bench(server, clients, seconds)
    phases: list[Phase] = []
    try:
        for namespace in NAMESPACES:
            body = orjson.dumps({"metadata": {"name": namespace}})
            (await clients[0].post("/api/v1/namespaces", content=body)).raise_for_status()

        async def create(client: httpx.AsyncClient, number: int) -> httpx.Response:
            namespace, _ = placed(number)
            body = orjson.dumps(config_map(namespace, number))
            return await client.post(collection(namespace), content=body)

        load = await bench.phase(
            f"load {objects:,} objects", create, count=objects, expect=201, seconds=900
        )
        if load.errors or len(load.latencies) != objects:
            raise SystemExit(f"loading failed: {load.errors} errors")
        phases.append(load)

        async def healthz(client: httpx.AsyncClient, number: int) -> httpx.Response:
            return await client.get("/healthz")

        phases.append(await bench.phase("baseline: GET /healthz", healthz, count=5000))

        fresh = itertools.count(objects)

        async def create_new(client: httpx.AsyncClient, number: int) -> httpx.Response:
            return await create(client, next(fresh))

        phases.append(
            await bench.phase("create", create_new, count=3000, expect=201, verb="create")
        )

        async def get(client: httpx.AsyncClient, number: int) -> httpx.Response:
            namespace, name = placed((number * 7919) % objects)
            return await client.get(f"{collection(namespace)}/{name}")

        phases.append(await bench.phase("get", get, count=10_000))

        async def list_selected(client: httpx.AsyncClient, number: int) -> httpx.Response:
            namespace = NAMESPACES[number % len(NAMESPACES)]
            selector = f"app=bench,shard={number % 100}"
            return await client.get(collection(namespace), params={"labelSelector": selector})

        phases.append(
            await bench.phase("list labelSelector (25 of 2,500)", list_selected, count=2000)
        )

        tokens: dict[int, tuple[str, str]] = {}  # client -> (namespace, continue token)

        async def list_page(client: httpx.AsyncClient, number: int) -> httpx.Response:
            namespace, token = tokens.pop(id(client), (NAMESPACES[number % 4], ""))
            params = {"limit": "500", **({"continue": token} if token else {})}
            response = await client.get(collection(namespace), params=params)
            following = response.json()["metadata"].get("continue")
            if following:
                tokens[id(client)] = (namespace, following)
            return response

        phases.append(await bench.phase("list limit=500, one page each", list_page, count=600))

        # Updates need each object's current resourceVersion: read them all once, then each
        # client keeps the version its last PUT returned.
        live: dict[str, dict[str, Any]] = {}
        for namespace in NAMESPACES:
            continue_token = ""
            while True:
                params = {
                    "limit": "1000",
                    **({"continue": continue_token} if continue_token else {}),
                }
                page = (await clients[0].get(collection(namespace), params=params)).json()
                for item in page["items"]:
                    live[f"{namespace}/{item['metadata']['name']}"] = item
                continue_token = page["metadata"].get("continue", "")
                if not continue_token:
                    break
        keys = sorted(live)
        gc.collect()
        gc.freeze()  # the copies of every object the update phases keep

        async def update(client: httpx.AsyncClient, number: int) -> httpx.Response:
            key = keys[number % len(keys)]
            obj = live[key]
            obj["data"]["index"] = str(int(obj["data"]["index"]) + 1)
            namespace, name = key.split("/")
            response = await client.put(
                f"{collection(namespace)}/{name}", content=orjson.dumps(obj)
            )
            if response.status_code == 200:
                live[key] = response.json()
            return response

        phases.append(
            await bench.phase(
                "update (PUT with resourceVersion)", update, count=3000, verb="update"
            )
        )

        paced = max(1, int(rate * seconds))
        phases.append(
            await bench.phase(
                f"paced create, {rate:.0f}/s offered",
                create_new,
                count=paced,
                expect=201,
                rate=rate,
                verb="create",
            )
        )
        offset = len(keys) // 2  # other objects than the update phase touched last

        async def update_other(client: httpx.AsyncClient, number: int) -> httpx.Response:
            return await update(client, number + offset)

        phases.append(
            await bench.phase(
                f"paced update, {rate:.0f}/s offered",
                update_other,
                count=paced,
                rate=rate,
                verb="update",
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return phases


def report(phases: list[Phase], concurrency: int) -> None:
    baseline = next(p for p in phases if p.name.startswith("baseline"))
    base_p50 = baseline.percentile(50)
    header = (
        f"{'phase':36} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'p50/base':>8} {'server CPU':>10} {'client CPU':>10}"
    )
    print(f"\n{concurrency} concurrent clients, HTTPS keep-alive; CPU is ms per request\n")
    print(header)
    print("-" * len(header))
    for phase in phases:
        print(
            f"{phase.name:36} {phase.requests:>8} {phase.errors:>6} {phase.rate:>7.0f}"
            f" {phase.percentile(50):>8.2f} {phase.percentile(99):>8.2f}"
            f" {phase.percentile(50) / base_p50:>7.1f}x"
            f" {phase.cpu_ms(phase.server_cpu):>10.2f} {phase.cpu_ms(phase.client_cpu):>10.2f}"
        )
    by_name = {p.name.split(",")[0]: p for p in phases}
    paced = [by_name["paced create"], by_name["paced update"]]
    worst = max(p.percentile(99) for p in paced)
    verdict = "meets" if worst < WRITE_P99_TARGET_MS else "MISSES"
    print(
        f"\nsingle-object write p99 under paced load: {worst:.2f} ms"
        f" ({verdict} the {WRITE_P99_TARGET_MS:.0f} ms target;"
        f" create {paced[0].percentile(99):.2f} ms, update {paced[1].percentile(99):.2f} ms)"
    )
    print(
        "  as the server timed them (its request-duration histogram): p99 within "
        + ", ".join(
            f"{p.name.split(',')[0].removeprefix('paced ')} {p.server_percentile_bound(99):g} ms"
            for p in paced
        )
        + " (bucket bounds)"
    )
    saturated = [by_name["create"], by_name["update (PUT with resourceVersion)"]]
    print(
        "single-object write p99 at saturation: "
        f"create {saturated[0].percentile(99):.2f} ms, update {saturated[1].percentile(99):.2f} ms"
        f" ({concurrency} requests always in flight; mostly queueing - compare the server's"
        f" {saturated[1].cpu_ms(saturated[1].server_cpu):.2f} ms CPU per update with the"
        f" client's {saturated[1].cpu_ms(saturated[1].client_cpu):.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="kumo API server benchmark")
    parser.add_argument("--objects", type=int, default=10_000, help="objects loaded first")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="time bound of each phase")
    parser.add_argument("--rate", type=float, default=250.0, help="writes/s of the paced phases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kumo-bench-") as temp:
        server = Server(Path(temp) / "data")
        server.start()
        try:
            phases = asyncio.run(
                benchmark(server, args.objects, args.clients, args.seconds, args.rate)
            )
        finally:
            server.stop()
    report(phases, args.clients)


if __name__ == "__main__":
    main()
