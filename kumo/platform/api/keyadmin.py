"""Key rotation for Secrets encrypted at rest, online, for administrators only.

- ``GET  /kumo/admin/encryption``: the key names (the first is the write key) and how many
  stored Secret values (objects and change log) each key encrypts;
- ``POST /kumo/admin/rotate-key[?dropOld=true]``: a new key becomes the write key (saved to
  the key file first), every stored Secret value is re-encrypted with it, and with
  ``dropOld`` the old keys are then removed from the key file;
- ``POST /kumo/admin/drop-old-keys``: the second step on its own: re-encrypt anything still
  on an old key, then keep only the write key.

Requests are authenticated like any other and authorized as non-resource requests (``get``
or ``create`` on the path), which only ``system:masters`` may do by default. Rotations take
turns. Responses never include key material.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kumo.auth.authorizer import Attributes
from kumo.platform.api.errors import ApiError
from kumo.platform.store.encryption import SECRETS_PREFIX, AesGcmTransformer, KeyFile
from kumo.platform.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

BASE = "/kumo/admin"


class KeyAdmin:
    def __init__(self, store: SQLiteStore, keys: KeyFile) -> None:
        self.store = store
        self.keys = keys
        self._lock = asyncio.Lock()

    async def status(self) -> dict[str, Any]:
        transformer = self.store.transformer
        counts: dict[str, int] = {name: 0 for name in self.keys.names}
        plaintext = 0
        for _, _, blob in await self.store.stored_bytes(SECRETS_PREFIX):
            name = (
                transformer.key_name(blob) if isinstance(transformer, AesGcmTransformer) else None
            )
            if name is None:
                plaintext += 1
            else:
                counts[name] = counts.get(name, 0) + 1
        return {
            "writeKey": self.keys.write_key,
            "keys": [
                {"name": name, "storedValues": counts.get(name, 0)} for name in self.keys.names
            ],
            "unencryptedValues": plaintext,
        }

    async def rotate(self, drop_old: bool) -> dict[str, Any]:
        async with self._lock:
            name = await asyncio.to_thread(self.keys.add_key)
            self.store.set_transformer(self.keys.transformer())
            rewritten = await self.store.retransform(SECRETS_PREFIX)
            log.info("encryption key %s is the write key; %d values re-encrypted", name, rewritten)
            dropped: list[str] = []
            if drop_old:
                more, dropped = await self._drop_old()
                rewritten += more
        return {**await self.status(), "reencrypted": rewritten, "dropped": dropped}

    async def drop_old(self) -> dict[str, Any]:
        async with self._lock:
            rewritten, dropped = await self._drop_old()
        return {**await self.status(), "reencrypted": rewritten, "dropped": dropped}

    async def _drop_old(self) -> tuple[int, list[str]]:
        # Anything still on an old key is rewritten first (the store writes with the write
        # key, which stays); only then may the old keys go.
        rewritten = await self.store.retransform(SECRETS_PREFIX)
        dropped = await asyncio.to_thread(self.keys.drop_old_keys)
        self.store.set_transformer(self.keys.transformer())
        if dropped:
            log.info("encryption keys dropped: %s", ", ".join(dropped))
        return rewritten, dropped


def _admin(request: Request) -> KeyAdmin:
    admin = getattr(request.app.state, "key_admin", None)
    if not isinstance(admin, KeyAdmin):
        raise ApiError(
            503, "ServiceUnavailable", "this API server does not encrypt Secrets at rest"
        )
    return admin


async def _authorized(request: Request, verb: str) -> None:
    state = request.app.state.kumo
    user = await state.authenticate(request)
    await state.authorize(Attributes(user=user, verb=verb, path=request.url.path))


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def encryption_status(request: Request) -> Response:
    await _authorized(request, "get")
    return _json(await _admin(request).status())


async def rotate_key(request: Request) -> Response:
    await _authorized(request, "create")
    flag = request.query_params.get("dropOld", "").lower()
    if flag not in ("", "true", "false", "1", "0"):
        raise ApiError(400, "BadRequest", f"dropOld: must be true or false, not {flag[:20]!r}")
    return _json(await _admin(request).rotate(drop_old=flag in ("true", "1")))


async def drop_old_keys(request: Request) -> Response:
    await _authorized(request, "create")
    return _json(await _admin(request).drop_old())


def install(app: Starlette, store: SQLiteStore, keys: KeyFile) -> KeyAdmin:
    """Serve the key administration routes on ``app`` (called by ``ApiServer``)."""
    admin = KeyAdmin(store, keys)
    app.state.key_admin = admin
    app.router.routes.extend(
        [
            Route(f"{BASE}/encryption", encryption_status, methods=["GET"]),
            Route(f"{BASE}/rotate-key", rotate_key, methods=["POST"]),
            Route(f"{BASE}/drop-old-keys", drop_old_keys, methods=["POST"]),
        ]
    )
    return admin
