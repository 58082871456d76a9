"""Exceptions of the ingest package; each carries the source (and request) it concerns."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every ingest failure."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
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
