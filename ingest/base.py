"""The connector shape: one connector per vendor, one stream per endpoint, lazy pages with a cursor.

A stream reads from the cursor saved after the last stored page and yields :class:`Page` objects; the
sync engine stores each page and its cursor in one transaction. Reads are at-least-once (a page may be
read again after a crash) and the upsert by (source, external id) makes the effect exactly-once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ingest.errors import ConfigError
from ingest.records import AccountRecord, FeedbackRecord, Rejection


@dataclass(slots=True)
class Page:
    """One unit of work: records and accounts read, and the cursor that is valid once they are stored."""

    records: list[FeedbackRecord | Rejection] = field(default_factory=list)
    accounts: list[AccountRecord] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Stream(Protocol):
    """One endpoint of a vendor.

    Attributes:
        name: stream name, the key of its cursor in ``sync_state``.
        primary_key: vendor field that identifies a record (becomes ``feedback.external_id``).
        cursor_field: vendor field the incremental read filters on.
    """

    name: str
    primary_key: str
    cursor_field: str

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        """Pages of records newer than ``cursor`` (empty dict: from the beginning)."""
        ...


class Connector:
    """Base of the vendor connectors: holds the source name and options; lists the streams.

    Subclasses set ``kind`` and ``system`` (the key account external ids are stored under) and
    implement :meth:`streams`. Accounts streams come first so items link to enriched accounts.
    """

    kind: ClassVar[str] = ""
    system: ClassVar[str | None] = None

    def __init__(self, *, source: str, options: Mapping[str, Any]) -> None:
        self.source = source
        self.options = dict(options)

    def streams(self) -> list[Stream]:
        raise NotImplementedError

    def close(self) -> None:
        """Release network clients."""

    # -- option helpers ---------------------------------------------------------------------
    def option(self, key: str, default: str | None = None) -> str:
        value = self.options.get(key)
        if value is None or str(value).strip() == "":
            if default is not None:
                return default
            raise ConfigError(
                f"{self.kind} source needs the option {key!r} (add it with --option {key}=...)",
                source=self.source,
            )
        return str(value).strip()

    def optional(self, key: str) -> str | None:
        value = self.options.get(key)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def int_option(self, key: str, default: int, *, minimum: int = 1, maximum: int = 10_000) -> int:
        raw = self.options.get(key)
        if raw is None or str(raw).strip() == "":
            return default
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"option {key!r} must be an integer, got {raw!r}", source=self.source) from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"option {key!r} must be between {minimum} and {maximum}, got {value}",
                              source=self.source)
        return value


def parse_timestamp(value: Any) -> dt.datetime:
    """A UTC datetime from an ISO 8601 string (``Z`` allowed), a date, or Unix seconds/milliseconds.

    Raises:
        ValueError: the value is not a date; the message quotes it.
    """
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a date: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value) / 1000 if abs(value) > 1e11 else float(value)
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    text = str(value).strip()
    if not text:
        raise ValueError("empty date")
    if text.lstrip("-").replace(".", "", 1).isdigit():
        return parse_timestamp(float(text))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Salesforce writes +0000 without a colon.
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and "T" in text:
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date: {str(value)[:60]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def obj(value: Any) -> dict[str, Any]:
    """``value`` when the vendor sent an object there, else an empty one (hostile or drifted payloads)."""
    return value if isinstance(value, dict) else {}


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list the vendor sent; anything else there is ignored."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def scalar_text(value: Any) -> str:
    """A scalar the vendor sent, as text; ``""`` for none, and for an object or list where a value belongs.

    NUL characters are dropped: PostgreSQL text cannot hold them, and no name, domain or id needs one.
    """
    return "" if value is None or isinstance(value, dict | list) else str(value).replace("\x00", "")
