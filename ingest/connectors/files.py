"""CSV and JSONL exports: a file or a folder, a column mapping, and an optional accounts file.

Options:
    path: a .csv / .tsv / .jsonl / .ndjson file, or a folder of them (read recursively, in name order). A
        CSV whose header has no comma but semicolons, tabs or pipes is read with that delimiter (a
        spreadsheet saved under a European locale writes semicolons); a UTF-8 byte-order mark is ignored.
    accounts: a CSV or JSONL file with the columns ``name,domain,segment,arr,lifecycle,open_pipeline``.
    map.FIELD=COLUMN: where a field is read from; defaults are the field names themselves
        (``external_id,text,occurred_at,account_name,account_domain,author_email,kind,title``).
        A dotted column (``map.account_name=company.name``) reads a nested JSON key.
    kind: kind of the items when no ``kind`` column says it (default ``ticket``).
    page_size: rows stored per transaction (default 1000).

The cursor keeps, per file, its sha256, size and mtime and how many rows were stored: a file is read
again only when it changed, and a sync stopped in the middle of a file resumes after the last stored row.
Each bad row becomes a rejection keyed ``file:line`` with its raw text and the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ingest.accounts import normalize_domain
from ingest.base import Connector, Page, Stream, parse_timestamp
from ingest.errors import ConfigError
from ingest.records import AccountRecord, AccountRef, FeedbackRecord, Rejection, has_surrogates

FIELDS = ("external_id", "text", "occurred_at", "account_name", "account_domain", "author_email", "kind",
          "title")
ACCOUNT_FIELDS = ("name", "domain", "segment", "arr", "lifecycle", "open_pipeline")
SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Big enough for a 100 KB text plus its row; the per-text limit is checked on the value itself.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(slots=True)
class RawRow:
    """One row of a file: its first line number, raw text, and its values (None: unparseable)."""

    line: int
    raw: str
    values: dict[str, Any] | None
    problem: str | None = None


class FileConnector(Connector):
    """Reads feedback (and accounts) from CSV and JSONL exports on disk."""

    kind: ClassVar[str] = "file"
    system: ClassVar[str | None] = None

    def __init__(self, *, source: str, options: dict[str, Any], max_text_bytes: int = 100_000) -> None:
        super().__init__(source=source, options=options)
        self.path = Path(self.option("path")).expanduser()
        if not self.path.exists():
            raise ConfigError(f"path {str(self.path)!r} does not exist (option path)", source=source)
        accounts = self.optional("accounts")
        self.accounts_path = Path(accounts).expanduser() if accounts else None
        if self.accounts_path is not None and not self.accounts_path.is_file():
            raise ConfigError(f"accounts file {str(self.accounts_path)!r} does not exist (option accounts)",
                              source=source)
        self.mapping = {name: self.options.get(f"map.{name}", name) for name in FIELDS}
        unknown = [k for k in self.options if k.startswith("map.") and k[4:] not in FIELDS]
        if unknown:
            raise ConfigError(f"unknown mapping {', '.join(sorted(unknown))}; map one of {', '.join(FIELDS)}",
                              source=source)
        self.default_kind = self.option("kind", "ticket")
        self.page_size = self.int_option("page_size", 1000, maximum=100_000)
        self.max_text_bytes = max_text_bytes

    def streams(self) -> list[Stream]:
        streams: list[Stream] = []
        if self.accounts_path is not None:
            streams.append(AccountsFileStream(self, self.accounts_path))
        streams.append(FeedbackFileStream(self))
        return streams

    def data_files(self) -> list[Path]:
        if self.path.is_file():
            if self.path.suffix.lower() not in SUFFIXES:
                raise ConfigError(f"{self.path.name}: unsupported file type; use .csv, .tsv, .jsonl or .ndjson",
                                  source=self.source)
            return [self.path]
        return sorted(
            p for p in self.path.rglob("*")
            if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
            and (self.accounts_path is None or p.resolve() != self.accounts_path.resolve())
        )

    def label(self, path: Path) -> str:
        """How a file is named in rejection keys: relative to the folder, or its name."""
        if self.path.is_dir():
            return path.relative_to(self.path).as_posix()
        return path.name


class _FileStream:
    """Shared change detection and resumable, paged reading of files."""

    name = "files"
    primary_key = "external_id"
    cursor_field = "sha256"

    def __init__(self, connector: FileConnector) -> None:
        self.connector = connector

    def files(self) -> list[Path]:
        raise NotImplementedError

    def convert(self, path: Path, row: RawRow) -> FeedbackRecord | AccountRecord | Rejection:
        raise NotImplementedError

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (cursor.get("files") or {}).items()}
        for path in self.files():
            key = str(path.resolve())
            stat = path.stat()
            prev = state.get(key)
            if prev and prev.get("done") and (prev.get("size"), prev.get("mtime_ns")) == (stat.st_size,
                                                                                          stat.st_mtime_ns):
                continue
            digest = sha256_file(path)
            entry: dict[str, Any] = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                     "rows": 0, "done": False}
            if prev and prev.get("sha256") == digest:
                if prev.get("done"):  # touched, not changed: remember the new mtime and move on
                    state[key] = {**entry, "rows": prev.get("rows", 0), "done": True}
                    yield Page(cursor={"files": _copy(state)})
                    continue
                entry["rows"] = int(prev.get("rows", 0))  # resume a file a crash cut short
            skip = int(entry["rows"])
            records: list[FeedbackRecord | Rejection] = []
            accounts: list[AccountRecord] = []
            count = 0
            for count, row in enumerate(read_rows(path), start=1):  # noqa: B007
                if count <= skip:
                    continue
                item = self.convert(path, row)
                if isinstance(item, AccountRecord):
                    accounts.append(item)
                else:
                    records.append(item)
                if len(records) + len(accounts) >= self.connector.page_size:
                    state[key] = {**entry, "rows": count}
                    yield Page(records=records, accounts=accounts, cursor={"files": _copy(state)})
                    records, accounts = [], []
            state[key] = {**entry, "rows": max(count, skip), "done": True}
            yield Page(records=records, accounts=accounts, cursor={"files": _copy(state)})


class FeedbackFileStream(_FileStream):
    name = "files"

    def files(self) -> list[Path]:
        return self.connector.data_files()

    def convert(self, path: Path, row: RawRow) -> FeedbackRecord | Rejection:
        c = self.connector
        key = f"{c.label(path)}:{row.line}"
        if row.values is None:
            return Rejection(key, row.raw, row.problem or "unreadable row")
        values = row.values
        if any(isinstance(v, str) and has_surrogates(v) for v in values.values()):
            return Rejection(key, row.raw, "undecodable bytes: the row is not valid UTF-8")
        text = _text(_get(values, c.mapping["text"]))
        if not text or not text.strip():
            return Rejection(key, row.raw, "no text")
        size = len(text.encode("utf-8"))
        if size > c.max_text_bytes:
            return Rejection(key, row.raw[:2000], f"text over limit: {size} bytes, the limit is {c.max_text_bytes}")
        raw_date = _get(values, c.mapping["occurred_at"])
        if raw_date is None or (isinstance(raw_date, str) and not raw_date.strip()):
            column = c.mapping["occurred_at"]
            present = "is empty" if column in values else "is missing"
            return Rejection(key, row.raw, f"bad date: the column {column!r} {present}; every item needs the time "
                             f"it was written (map.occurred_at=COLUMN reads it from another column)")
        try:
            occurred = parse_timestamp(raw_date)
        except ValueError as exc:
            return Rejection(key, row.raw, f"bad date in {c.mapping['occurred_at']!r}: {exc}")
        external_id = _text(_get(values, c.mapping["external_id"])) or key
        kind = (_text(_get(values, c.mapping["kind"])) or c.default_kind).strip().lower().replace(" ", "_")
        name = _text(_get(values, c.mapping["account_name"]))
        domain = _text(_get(values, c.mapping["account_domain"])) or _text(_get(values, c.mapping["author_email"]))
        account = AccountRef(name=name or None, domain=domain or None) if (name or normalize_domain(domain)) else None
        return FeedbackRecord(
            external_id=external_id.strip(), text=text, occurred_at=occurred, kind=kind,
            title=_text(_get(values, c.mapping["title"])) or None, account=account, author_role="customer",
        )


class AccountsFileStream(_FileStream):
    name = "accounts"
    primary_key = "name"

    def __init__(self, connector: FileConnector, path: Path) -> None:
        super().__init__(connector)
        self.path = path

    def files(self) -> list[Path]:
        return [self.path]

    def convert(self, path: Path, row: RawRow) -> AccountRecord | Rejection:
        key = f"{path.name}:{row.line}"
        if row.values is None:
            return Rejection(key, row.raw, row.problem or "unreadable row")
        values = {k: _text(v).strip() if v is not None else "" for k, v in row.values.items() if k is not None}
        if any(has_surrogates(v) for v in values.values()):
            return Rejection(key, row.raw, "undecodable bytes: the row is not valid UTF-8")
        name, domain = values.get("name", ""), values.get("domain", "")
        if not name and not normalize_domain(domain):
            return Rejection(key, row.raw, "account without name or domain")
        numbers: dict[str, float | None] = {}
        for column in ("arr", "open_pipeline"):
            raw = values.get(column, "").replace(",", "").replace("$", "").strip()
            try:
                numbers[column] = float(raw) if raw else None
            except ValueError:
                return Rejection(key, row.raw, f"bad number in {column!r}: {values.get(column)!r}")
        return AccountRecord(
            name=name or domain, domain=domain or None, segment=values.get("segment") or None,
            arr=numbers["arr"], lifecycle=values.get("lifecycle") or None, open_pipeline=numbers["open_pipeline"],
        )


# -- reading files --------------------------------------------------------------------------
def read_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a CSV (header first) or JSONL file, with their line numbers; never raises on a bad row."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt == "csv":
        yield from _csv_rows(path)
    elif fmt == "jsonl":
        yield from _jsonl_rows(path)
    else:
        raise ConfigError(f"{path.name}: unsupported file type; use .csv, .tsv, .jsonl or .ndjson")


def _csv_rows(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as fh:
        consumed: list[str] = []
        line_no = 0

        def lines() -> Iterator[str]:
            nonlocal line_no
            for raw in fh:
                line_no += 1
                # surrogateescape keeps bad bytes visible, so only the row holding them is rejected.
                text = raw.decode("utf-8", errors="surrogateescape")
                if line_no == 1:
                    text = text.removeprefix("\ufeff")
                consumed.append(text)
                yield text

        read = lines()
        try:
            first = next(read)
        except StopIteration:
            return
        delimiter = "\t" if path.suffix.lower() == ".tsv" else csv_delimiter(first)
        reader = csv.reader(itertools.chain([first], read), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ConfigError(f"{path.name}: unreadable CSV header: {exc}") from None
        header = [h.strip() for h in header]
        consumed.clear()
        while True:
            start = line_no + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raw = _raw(consumed)
                consumed.clear()
                yield RawRow(start, raw, None, f"malformed CSV: {exc}")
                continue
            raw = _raw(consumed)
            consumed.clear()
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                yield RawRow(start, raw, None,
                             f"malformed CSV row: {len(fields)} fields where the header has {len(header)}")
                continue
            yield RawRow(start, raw, dict(zip(header, fields, strict=True)))


def csv_delimiter(header: str) -> str:
    """``,`` unless the header line has no comma but semicolons, tabs or pipes (a spreadsheet exported with
    a European locale writes semicolons), then the most frequent of those."""
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in ";\t|"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _jsonl_rows(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRow(line_no, raw.decode("utf-8", errors="backslashreplace"), None,
                             f"undecodable bytes: not UTF-8 at byte {exc.start}")
                continue
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRow(line_no, text, None, f"invalid JSON line: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(value, dict):
                yield RawRow(line_no, text, None,
                             f"invalid JSON line: an object is expected, got {type(value).__name__}")
                continue
            yield RawRow(line_no, text.rstrip("\r\n"), value)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _raw(lines: list[str]) -> str:
    text = "".join(lines).rstrip("\r\n")
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")


def _get(values: dict[str, Any], column: str) -> Any:
    if column in values:
        return values[column]
    current: Any = values
    for part in column.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)



def _copy(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in state.items()}
