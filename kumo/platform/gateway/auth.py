"""Who may read the gateway's management endpoints (``/metrics``).

The gateway asks the API server, as Kubernetes components do with delegated authn/authz:
a TokenReview says whose the bearer token is, a SubjectAccessReview whether that user may
``get`` the non-resource URL ``/metrics`` (the ``system:monitoring`` ClusterRole grants it,
and so does ``cluster-admin``). Answers are cached briefly per token (only a hash of it is
kept), so a scraper costs two API calls per ``ttl`` seconds, not two per scrape.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict

import httpx

from kumo.client import ApiException, AsyncClient

log = logging.getLogger(__name__)

UNAUTHORIZED, FORBIDDEN, ALLOWED, UNAVAILABLE = 401, 403, 200, 503


class ApiReviewer:
    """``await reviewer(token, path)`` -> 200 (allowed), 401, 403 or 503 (API unreachable)."""

    def __init__(self, client: AsyncClient, *, ttl: float = 10.0, max_entries: int = 1024) -> None:
        self.client = client
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    async def __call__(self, token: str | None, path: str = "/metrics") -> int:
        if not token:
            return UNAUTHORIZED
        key = (hashlib.sha256(token.encode()).hexdigest(), path)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            code = await self._review(token, path)
        except (ApiException, httpx.HTTPError, ValueError) as exc:
            log.warning("gateway: cannot check a token with the API server: %s", exc)
            return UNAVAILABLE
        self._cache[key] = (now + self.ttl, code)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return code

    async def _review(self, token: str, path: str) -> int:
        review = (
            await self.client.request(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                body={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token},
                },
            )
        ).json()
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return UNAUTHORIZED
        user = status.get("user") or {}
        spec = {
            "user": user.get("username", ""),
            "groups": user.get("groups") or [],
            "uid": user.get("uid", ""),
            "extra": user.get("extra") or {},
            "nonResourceAttributes": {"path": path, "verb": "get"},
        }
        access = (
            await self.client.request(
                "POST",
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                body={
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": spec,
                },
            )
        ).json()
        return ALLOWED if (access.get("status") or {}).get("allowed") else FORBIDDEN
