"""API keys, CSRF tokens and in-process rate limiting.

Keys are 32 random bytes (URL-safe base64, prefixed ``gs_``); only their SHA-256 is stored. A salted slow
hash buys nothing for a high-entropy secret, and a plain digest lets the lookup use the unique index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

KEY_PREFIX = "gs_"
ROLES = ("admin", "pm", "sales", "ingest")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``secret`` is shown once, ``prefix`` and ``key_hash`` are stored."""

    secret: str
    prefix: str
    key_hash: str


def hash_key(secret: str) -> str:
    """Hex SHA-256 of a key as sent by a client."""
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


def generate_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, prefix=secret[:10], key_hash=hash_key(secret))


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class RateLimiter:
    """A token bucket per key (client address, API key id...), kept in process memory.

    Args:
        rate: tokens added per second.
        burst: bucket capacity, i.e. requests allowed at once.
        max_keys: buckets kept; the stalest are dropped beyond it so memory stays bounded.
    """

    def __init__(self, *, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, *, now: float | None = None) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), t))
            tokens = min(float(self.burst), tokens + (t - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, t)
            if len(self._buckets) > self.max_keys:
                stalest = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[: len(self._buckets) // 10]
                for k, _ in stalest:
                    del self._buckets[k]
            return allowed

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` has a token again (at least 1)."""
        with self._lock:
            tokens, _ = self._buckets.get(key, (float(self.burst), 0.0))
        return max(1, int((1.0 - tokens) / self.rate + 0.999))
