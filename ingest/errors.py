"""Exceptions of the ingest package; each carries the source (and request) it concerns."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every ingest failure.

    Args:
        message: what went wrong and, where possible, how to fix it. Never contains a secret.
        source: name of the source concerned.
        request: ``"METHOD url"`` of the HTTP request concerned (no query secrets, no headers).
        status_code: HTTP status of the vendor's answer, when there was one.
    """

    def __init__(self, message: str, *, source: str | None = None, request: str | None = None,
                 status_code: int | None = None) -> None:
        self.source = source
        self.request = request
        self.status_code = status_code
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(IngestError):
    """A source is configured wrongly (missing option, unknown kind, missing secret)."""


class AuthError(IngestError):
    """The vendor refused our credentials."""


class SourceUnavailable(IngestError):
    """The vendor kept failing (5xx, timeouts, rate limits) after every retry."""


class BadResponse(IngestError):
    """The vendor answered something that is not the documented format (HTML, truncated JSON...)."""


class InvalidRecord(IngestError):
    """A record that cannot be stored; it goes to rejected_record with this message."""
