"""Running the API server: store, PKI, bootstrap objects, uvicorn with TLS."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from kumo.auth import pki
from kumo.auth.authorizer import Authorizer
from kumo.auth.user import MASTERS
from kumo.model.core import Namespace
from kumo.model.registry import for_model
from kumo.platform.api import admission, keyadmin, nodeproxy, resourcemetrics
from kumo.platform.api.access import Access, AccessOptions
from kumo.platform.api.app import ApiState, build_app
from kumo.platform.api.authn import StoreTokens
from kumo.platform.api.gatewayrestriction import GatewayRestriction
from kumo.platform.api.noderestriction import NodeRestriction
from kumo.platform.api.resources import Settings, storage_key
from kumo.platform.api.serviceaccount_admission import ServiceAccountAdmission
from kumo.platform.api.serviceips import (
    ServiceIPs,
    advertised_address,
    ensure_kubernetes_service,
    keep_kubernetes_service,
    kubernetes_names,
)
from kumo.platform.api.tenancy import tenancy_plugins
from kumo.platform.store import AlreadyExists
from kumo.platform.store.encryption import KEY_FILE, KeyFile
from kumo.platform.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

GC_THRESHOLDS = (20_000, 20, 50)  # Python's defaults are (700, 10, 10)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds it owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True)
class ServerOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 7443
    advertise: list[str] = field(default_factory=list)
    compaction_interval: float = 300.0
    settings: Settings = field(default_factory=Settings)
    log_level: str = "warning"
    # Authentication (service-account issuer, OIDC), the audit log.
    access: AccessOptions = field(default_factory=AccessOptions)


class ApiServer:
    """An API server bound to a data directory. ``async with ApiServer(options) as s:``."""

    def __init__(self, options: ServerOptions, authorizer: Authorizer | None = None) -> None:
        self.options = options
        # None: system:masters plus RBAC over the stored roles and bindings.
        self.authorizer: Authorizer | None = authorizer
        self.access: Access | None = None
        self.store: SQLiteStore | None = None
        self.tokens: StoreTokens | None = None
        self.state: ApiState | None = None
        self.pki_dir = options.data_dir / "pki"
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        host = self.options.host if self.options.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"https://{host}:{self.options.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    async def start(self) -> None:
        options = self.options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        # Secrets are encrypted at rest with the keys in <data-dir>/encryption-keys.yaml.
        keys = await asyncio.to_thread(KeyFile.load_or_create, options.data_dir / KEY_FILE)
        self.store = await SQLiteStore.open(
            options.data_dir / "store.db", transformer=keys.transformer()
        )
        self.access = await Access.start(
            self.store,
            options.access,
            pki_dir=self.pki_dir,
            data_dir=options.data_dir,
            authorizer=self.authorizer,
        )
        self.tokens = self.access.user_tokens
        await self._bootstrap_namespaces()
        # The kubernetes Service (default/kubernetes -> this server) and its names.
        address = advertised_address(options.host, options.advertise)
        allocator = ServiceIPs(options.settings.service_cidr, self.store)
        service_ip = await ensure_kubernetes_service(allocator, address, options.port)
        hosts = sorted(
            {"127.0.0.1", "localhost", socket.gethostname(), *options.advertise}
            | ({options.host} if options.host not in ("0.0.0.0", "::") else set())
            | {*kubernetes_names(), *([service_ip] if service_ip else [])}
        )
        files = await asyncio.to_thread(pki.ensure_serving, self.pki_dir, hosts)
        app = build_app(
            self.store,
            self.access.authenticators,
            self.access.authorizer,
            options.settings,
            plugins=[
                NodeRestriction(),
                GatewayRestriction(),
                ServiceAccountAdmission(self.store, self.ca_file),
                *tenancy_plugins(self.store),
            ],
        )
        nodeproxy.install(app, self.pki_dir)
        resourcemetrics.install(app)
        keyadmin.install(app, self.store, keys)
        self.access.install(app)  # reviews, token endpoints, escalation checks, audit log
        self.state = app.state.kumo
        # What is loaded now (modules, schemas, the store's objects) lives as long as the
        # server: keep it out of the full garbage collections, which stall every request for
        # as long as they walk the heap. Requests make little cyclic garbage, so collecting
        # less often costs little memory and keeps those pauses rare.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            ssl_certfile=str(files.cert),
            ssl_keyfile=str(files.key),
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
            log_level=options.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            server_header=False,
            http="httptools",
            loop="asyncio",
        )
        self._server = _QuietServer(config)
        self._tasks.append(asyncio.create_task(self._server.serve(), name="apiserver"))
        self._tasks.append(
            asyncio.create_task(
                self.store.run_compaction(options.compaction_interval), name="compaction"
            )
        )
        self._tasks.append(
            asyncio.create_task(
                keep_kubernetes_service(self.state.resources.service_ips, address, options.port),
                name="kubernetes-service",
            )
        )
        while not self._server.started:
            if self._tasks[0].done():
                self._tasks[0].result()
                raise RuntimeError("the API server stopped while starting")
            await asyncio.sleep(0.02)
        log.info("API server listening on %s", self.url)

    async def _bootstrap_namespaces(self) -> None:
        assert self.store is not None
        info = for_model(Namespace)
        for name in self.options.settings.default_namespaces:
            key = storage_key(info, "", name)
            if self.store.get_entry(key) is not None:
                continue
            model = Namespace.model_validate({"metadata": {"name": name}})
            admission.prepare_create(info, model, "")
            obj = admission.admit_new(info, model)
            obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            with contextlib.suppress(AlreadyExists):
                await self.store.create(key, obj)

    async def issue_admin_token(self) -> str:
        assert self.tokens is not None
        return await self.tokens.issue("admin", [MASTERS], description="kumo up admin")

    async def issue_token(self, user: str, groups: list[str], description: str = "") -> str:
        assert self.tokens is not None
        return await self.tokens.issue(user, groups, description=description)

    async def authenticates(self, token: str) -> bool:
        assert self.tokens is not None
        return await self.tokens.authenticate(token) is not None

    async def wait(self) -> None:
        """Until the server stops (or one of its tasks fails)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def stop(self) -> None:
        if self.state is not None:
            self.state.ready = False
            self.state.resources.stop_watches()
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.access is not None:
            self.access.close()
        if self.store is not None:
            await self.store.close()

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def running(options: ServerOptions) -> AsyncIterator[ApiServer]:
    server = ApiServer(options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
