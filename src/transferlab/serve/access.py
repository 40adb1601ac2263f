"""Who may use a server on a network: the API key (:func:`require_api_key`, a route dependency), the
per-client rate limit on ``POST /predict`` (:class:`RateLimiter`, applied by :class:`RateLimitMiddleware`
before the upload is read) and the CORS origins (:func:`check_cors_origins`). Each setting is checked once, by
:func:`check_api_key`, :func:`check_rate_limit` and :func:`check_cors_origins` (a ConfigError for a bad value).

>>> limiter = RateLimiter(per_minute=60)     # a bucket of 60 requests per client, refilled at 1 per second
>>> limiter.acquire("10.0.0.1")              # 0.0: allowed; else the seconds until the next is allowed
0.0
"""
from __future__ import annotations

import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..errors import ConfigError
from .state import ServingDep

_KEY_CHARS = re.compile(r"[!-~]+")                     # printable ASCII, no spaces: a header carries it as is
_ORIGIN = re.compile(r"https?://[^/\s:]+(:\d{1,5})?")  # what a browser sends as Origin (no path, no slash)


def check_api_key(key: str | None) -> str | None:
    """``key`` when it can be sent in a header (printable ASCII, no spaces); None for no key."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise ConfigError("the API key is empty: give a key, or none to serve without one")
    if not _KEY_CHARS.fullmatch(key):
        raise ConfigError("the API key must be printable ASCII without spaces (it is sent in an HTTP header)")
    return key


def check_rate_limit(per_minute: int | None) -> int | None:
    """Requests per minute per client, a positive whole number; None for no limit."""
    if per_minute is None:
        return None
    if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
        raise ConfigError(f"--rate-limit must be a whole number of requests per minute >= 1, got {per_minute!r} "
                          "(leave it out for no limit)")
    return per_minute


def check_cors_origins(origins: str | Sequence[str] | None) -> list[str]:
    """The allowed origins from ``"A,B"`` or a list: each ``*`` or ``scheme://host[:port]`` (the form a
    browser sends; a path or a trailing slash would never match)."""
    if origins is None:
        return []
    items = origins.split(",") if isinstance(origins, str) else list(origins)
    out = [str(o).strip() for o in items if str(o).strip()]
    bad = [o for o in out if o != "*" and not _ORIGIN.fullmatch(o)]
    if bad:
        raise ConfigError(f"--cors-origins: {', '.join(map(repr, bad))} is not an origin: write "
                          "scheme://host[:port] (e.g. https://example.org, no path or trailing slash) or *")
    return out


class RateLimiter:
    """A token bucket per client: ``per_minute`` requests at once, refilled at ``per_minute / 60`` per
    second. Safe to share between threads and event loops (one lock; :meth:`acquire` never waits).
    Buckets that have refilled are dropped when more than ``max_clients`` are held (memory stays bounded)."""

    def __init__(self, per_minute: int, *, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.per_minute = check_rate_limit(per_minute) or 0
        self.capacity = float(self.per_minute)
        self.rate = self.per_minute / 60.0            # tokens per second
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, when)
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """Take one request for ``client``: 0.0 when allowed, else the seconds until one would be."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_clients:
                    self._prune(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget the clients whose bucket is full again (the same as never seen)."""
        full = [c for c, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.capacity]
        for c in full:
            del self._buckets[c]

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimitMiddleware:
    """Refuse a client's ``POST /predict`` over its rate with 429, a ``Retry-After`` header (whole
    seconds) and a JSON ``{"detail": ...}``, before the upload is read or waits for a slot. The client
    is the connection's address (uvicorn puts a trusted proxy's X-Forwarded-For there)."""

    def __init__(self, app, limiter: RateLimiter, path: str = "/predict"):
        self.app = app
        self.limiter = limiter
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.limiter.acquire(client)
        if not wait:
            return await self.app(scope, receive, send)
        retry = max(1, math.ceil(wait))
        body = json.dumps({"detail": f"rate limit exceeded: at most {self.limiter.per_minute} requests per minute "
                                     f"per client; retry in {retry} s"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(retry).encode())]})
        await send({"type": "http.response.body", "body": body})


# the two ways to send the key; declared as security schemes, so /docs has an "Authorize" button
_header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's --api-key")
_bearer_key = HTTPBearer(auto_error=False, description="the server's --api-key as a bearer token")


def require_api_key(serving: ServingDep,
                    header: Annotated[str | None, Depends(_header_key)],
                    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_key)]) -> None:
    """A route dependency: nothing when the server has no key or the request carries it
    (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``), else 401 ``{"detail": ...}``."""
    if serving.api_key is None:
        return
    expected = serving.api_key.encode()
    sent = [s for s in (header, bearer.credentials if bearer else None) if s]
    # compare_digest takes the same time wherever the strings differ
    if not any(hmac.compare_digest(s.encode("latin-1", "replace"), expected) for s in sent):
        detail = "API key wrong" if sent else ("API key required: send header 'X-API-Key: KEY' "
                                               "or 'Authorization: Bearer KEY'")
        raise HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


ApiKeyDep = Depends(require_api_key)
