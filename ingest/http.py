"""The HTTP client every vendor connector talks through: injected transport, auth, retries, clear errors.

Tests pass an ``httpx.MockTransport`` (or an ASGI app's transport) and a recording ``sleep``, so nothing
touches the network and nothing waits. Error messages name the source, the method and the URL path and
never carry a header, a token or a query string.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from ingest.errors import AuthError, BadResponse, ConfigError, IngestError, SourceUnavailable

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]

RETRY_STATUSES = frozenset({500, 502, 503, 504, 520, 521, 522, 524})


class HttpClient:
    """A small synchronous JSON client for one vendor source.

    Args:
        source: name of the source, put in front of every error.
        base_url: root of the vendor API; relative paths are joined to it.
        auth: an ``httpx.Auth`` (basic auth, ...), or None.
        headers: extra headers (bearer token, API version).
        secrets: values to scrub from any error message, in case a vendor echoes them back.
        transport: the httpx transport; tests inject a mock one.
        timeout_s: timeout of one request.
        max_retries: retries on 429, 5xx, timeouts and connection errors.
        backoff_s: first backoff; doubles on every retry (with jitter), capped at ``max_backoff_s``.
        max_backoff_s: longest wait between two tries, Retry-After included.
        sleep: how to wait; tests pass a recorder.
    """

    def __init__(self, *, source: str, base_url: str, auth: httpx.Auth | None = None,
                 headers: Mapping[str, str] | None = None, secrets: Iterable[str] = (),
                 transport: httpx.BaseTransport | None = None, timeout_s: float = 30.0,
                 max_retries: int = 5, backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 sleep: Sleep = time.sleep) -> None:
        self.source = source
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        # Its own generator: drawing jitter from the module's shared one would move the random state that
        # the rest of the process (and a seeded caller) relies on, from whatever thread a sync runs in.
        self._jitter = random.Random()
        self._secrets = [s for s in secrets if s]
        self._client = httpx.Client(
            base_url=base_url, auth=auth, headers=dict(headers or {}), transport=transport,
            timeout=timeout_s, follow_redirects=True,
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- requests ---------------------------------------------------------------------------
    def get_json(self, url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request_json("GET", url, params=params)

    def post_json(self, url: str, body: Any) -> Any:
        return self.request_json("POST", url, json=body)

    def request_json(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                     json: Any = None) -> Any:
        """Send a request with retries and return its decoded JSON body.

        Raises:
            AuthError: 401 or 403.
            SourceUnavailable: 429, 5xx, timeouts or connection errors on every try.
            BadResponse: another 4xx, or a body that is not JSON.
        """
        response = self.request(method, url, params=params, json=json)
        try:
            return response.json()
        except ValueError:
            raise BadResponse(
                f"{self._where(method, url)} answered HTTP {response.status_code} with a body that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}): {self._snippet(response)}",
                source=self.source, request=self._where(method, url), status_code=response.status_code,
            ) from None

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None) -> httpx.Response:
        where = self._where(method, url)
        last_problem = "no attempt"
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.request(method, url, params=params, json=json)
            except httpx.TimeoutException as exc:
                last_problem = f"timed out ({type(exc).__name__})"
                wait = self._backoff(attempt)
            except httpx.TransportError as exc:
                last_problem = f"connection failed ({type(exc).__name__}: {self._scrub(str(exc))})"
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status in (401, 403):
                    raise AuthError(
                        f"{where} was refused with HTTP {status}: check the credentials of this source "
                        f"(the token in settings and the account options). Vendor said: {self._snippet(response)}",
                        source=self.source, request=where, status_code=status,
                    )
                if status == 429:
                    last_problem = "rate limited (HTTP 429)"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    wait = min(retry_after, self.max_backoff_s) if retry_after is not None else self._backoff(attempt)
                elif status in RETRY_STATUSES:
                    last_problem = f"server error HTTP {status}"
                    wait = self._backoff(attempt)
                else:
                    raise BadResponse(
                        f"{where} failed with HTTP {status}: {self._snippet(response)}",
                        source=self.source, request=where, status_code=status,
                    )
            if attempt == self.max_retries:
                break
            log.warning("%s: %s %s; retry %d/%d in %.1fs", self.source, where, last_problem, attempt + 1,
                        self.max_retries, wait)
            self.sleep(wait)
        raise SourceUnavailable(
            f"{where} kept failing after {self.max_retries + 1} tries: {last_problem}",
            source=self.source, request=where,
        )

    # -- helpers ----------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_s * (2 ** attempt), self.max_backoff_s)
        return base * (0.5 + self._jitter.random() / 2)

    def _where(self, method: str, url: str) -> str:
        # The path only: query strings may carry filters with customer data, never needed to debug.
        full = self._client.base_url.join(url) if not url.startswith(("http://", "https://")) else httpx.URL(url)
        return self._scrub(f"{method} {full.copy_with(query=None, fragment=None)}")

    def _snippet(self, response: httpx.Response, limit: int = 300) -> str:
        try:
            text = response.text
        except (UnicodeDecodeError, httpx.ResponseNotRead):
            return "(unreadable body)"
        text = " ".join(text.split())
        return self._scrub(text[:limit] + ("..." if len(text) > limit else "")) or "(empty body)"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[SECRET]")
        return text


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(exc: BaseException) -> str:
    """A one-line description of an error for logs and the source's last_sync_error."""
    if isinstance(exc, IngestError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def token_client(*, source: str, token: str, missing: str, base_url: str, auth: httpx.Auth | None = None,
                 headers: Mapping[str, str] | None = None, transport: httpx.BaseTransport | None = None,
                 timeout_s: float = 30.0, max_retries: int = 5, sleep: Sleep | None = None) -> HttpClient:
    """The client of a vendor connector whose secret comes from settings.

    Args:
        missing: the message when ``token`` is empty, naming the setting to fill in.
    """
    if not token:
        raise ConfigError(missing, source=source)
    return HttpClient(source=source, base_url=base_url, auth=auth, headers=headers, secrets=[token],
                      transport=transport, timeout_s=timeout_s, max_retries=max_retries,
                      sleep=sleep if sleep is not None else time.sleep)
