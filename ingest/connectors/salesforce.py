"""Salesforce: notes (Note, Task, custom objects) and account facts through SOQL on the REST query endpoint.

API: ``GET /services/data/vXX.X/query?q=<SOQL>``; a result with ``done: false`` carries ``nextRecordsUrl``
to the next batch. Authentication: ``Authorization: Bearer <access token>``. Each note object is a
stream with a ``SystemModstamp`` cursor, compared with ``>=`` so records sharing the boundary timestamp
are read again (upserted unchanged) rather than lost.

Options:
    instance_url: e.g. ``https://acme.my.salesforce.com``.
    api_version: default ``60.0``.
    notes: comma-separated ``Object:TextField[:AccountField[:TitleField]]`` specs; default
        ``Note:Body:ParentId:Title,Task:Description:AccountId:Subject``; a custom field-note object is e.g.
        ``Field_Note__c:Note__c:Account__c:Name``.
    arr_field: Account field with the ARR; default: the sum of won opportunities' Amount.
    segment_field: Account field with the segment; default: derived from NumberOfEmployees.
Secret: ``salesforce_token``.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from ingest.base import Connector, Page, Stream, iso, parse_timestamp, scalar_text
from ingest.errors import BadResponse, ConfigError
from ingest.http import Sleep, token_client
from ingest.records import AccountRecord, AccountRef, FeedbackRecord, Rejection, payload_text

DEFAULT_NOTES = "Note:Body:ParentId:Title,Task:Description:AccountId:Subject"
EPOCH = "1970-01-01T00:00:00Z"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_VERSION = re.compile(r"^\d{2,3}\.\d$")


@dataclass(frozen=True, slots=True)
class NoteSpec:
    object: str
    text_field: str
    account_field: str | None
    title_field: str | None


class SalesforceConnector(Connector):
    kind: ClassVar[str] = "salesforce"
    system: ClassVar[str | None] = "salesforce"

    def __init__(self, *, source: str, options: dict[str, Any], token: str,
                 transport: httpx.BaseTransport | None = None, timeout_s: float = 30.0, max_retries: int = 5,
                 sleep: Sleep | None = None) -> None:
        super().__init__(source=source, options=options)
        version = self.option("api_version", "60.0").lstrip("v")
        if not _VERSION.match(version):
            raise ConfigError(f"option 'api_version' must look like 60.0, got {version!r}", source=source)
        self.query_path = f"/services/data/v{version}/query"
        self.notes = [self._spec(s) for s in self.option("notes", DEFAULT_NOTES).split(",") if s.strip()]
        self.arr_field = self._field_option("arr_field")
        self.segment_field = self._field_option("segment_field")
        self.http = token_client(
            source=source, token=token,
            missing="the Salesforce access token is missing: set GROUNDSWELL_SALESFORCE_TOKEN",
            base_url=self.option("instance_url"), headers={"Authorization": f"Bearer {token}"},
            transport=transport, timeout_s=timeout_s, max_retries=max_retries, sleep=sleep,
        )

    def _field_option(self, key: str) -> str | None:
        value = self.optional(key)
        if value is not None and not _NAME.match(value):
            raise ConfigError(f"option {key!r} is not a Salesforce field name: {value!r}", source=self.source)
        return value

    def _spec(self, text: str) -> NoteSpec:
        parts = [p.strip() for p in text.split(":")]
        if not 2 <= len(parts) <= 4 or not all(_NAME.match(p) for p in parts if p):
            raise ConfigError(
                f"option 'notes': {text.strip()!r} is not Object:TextField[:AccountField[:TitleField]]",
                source=self.source)
        parts += [""] * (4 - len(parts))
        return NoteSpec(parts[0], parts[1], parts[2] or None, parts[3] or None)

    def streams(self) -> list[Stream]:
        return [AccountStream(self), *(NoteObjectStream(self, spec) for spec in self.notes)]

    def close(self) -> None:
        self.http.close()

    def query(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Batches of records of a SOQL query, following ``nextRecordsUrl``."""
        data = self.http.get_json(self.query_path, params={"q": soql})
        while True:
            if not isinstance(data, dict) or not isinstance(data.get("records"), list):
                raise BadResponse("the query endpoint answered without a 'records' list", source=self.source)
            yield [r for r in data["records"] if isinstance(r, dict)]
            next_url = data.get("nextRecordsUrl")
            if data.get("done", True) or not next_url:
                return
            data = self.http.get_json(next_url)


class NoteObjectStream:
    primary_key = "Id"
    cursor_field = "SystemModstamp"

    def __init__(self, connector: SalesforceConnector, spec: NoteSpec) -> None:
        self.c = connector
        self.spec = spec
        self.name = f"notes:{spec.object}"

    def soql(self, since: str) -> str:
        s = self.spec
        fields = ["Id", s.text_field, "CreatedDate", "SystemModstamp", "CreatedById"]
        fields += [f for f in (s.account_field, s.title_field) if f]
        return (f"SELECT {', '.join(dict.fromkeys(fields))} FROM {s.object} "
                f"WHERE SystemModstamp >= {since} ORDER BY SystemModstamp ASC")

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        since = str(cursor.get("system_modstamp") or EPOCH)
        for batch in self.c.query(self.soql(since)):
            latest = since
            records: list[FeedbackRecord | Rejection] = []
            for r in batch:
                records.append(self._record(r))
                with contextlib.suppress(ValueError):
                    latest = max(latest, iso(parse_timestamp(r.get("SystemModstamp"))))
            yield Page(records=records, cursor={"system_modstamp": latest})

    def _record(self, r: dict[str, Any]) -> FeedbackRecord | Rejection:
        key = str(r.get("Id") or "")
        if not key:
            return Rejection("(no id)", payload_text(r), f"{self.spec.object} record without Id")
        try:
            occurred = parse_timestamp(r.get("CreatedDate"))
        except ValueError as exc:
            return Rejection(key, payload_text(r), f"bad date in CreatedDate: {exc}")
        account_id = r.get(self.spec.account_field) if self.spec.account_field else None
        account = None
        # A Note's ParentId may be a contact or an opportunity: only Account ids (prefix 001) name accounts;
        # the accounts stream runs first, so they are known by their Salesforce id.
        if account_id and str(account_id).startswith("001"):
            account = AccountRef(external_id=str(account_id), system="salesforce")
        text = r.get(self.spec.text_field)
        return FeedbackRecord(
            external_id=f"{self.spec.object}:{key}", text="" if text is None else str(text), occurred_at=occurred,
            kind="call_note", title=(str(r[self.spec.title_field]) if self.spec.title_field and
                                     r.get(self.spec.title_field) else None),
            account=account, author_role="sales", submitted_by=scalar_text(r.get("CreatedById")) or None,
        )


class AccountStream:
    """Accounts changed since the cursor, and accounts whose opportunities changed, with their facts."""

    name = "accounts"
    primary_key = "Id"
    cursor_field = "SystemModstamp"

    def __init__(self, connector: SalesforceConnector) -> None:
        self.c = connector

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        acc_since = str(cursor.get("account_modstamp") or EPOCH)
        opp_since = str(cursor.get("opportunity_modstamp") or EPOCH)
        changed: set[str] = set()
        acc_latest, opp_latest = acc_since, opp_since
        for batch in self.c.query(f"SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp >= {acc_since} "
                                  f"ORDER BY SystemModstamp ASC"):
            for r in batch:
                if scalar_text(r.get("Id")):
                    changed.add(scalar_text(r.get("Id")))
                with contextlib.suppress(ValueError):
                    acc_latest = max(acc_latest, iso(parse_timestamp(r.get("SystemModstamp"))))
        for batch in self.c.query(f"SELECT Id, AccountId, SystemModstamp FROM Opportunity "
                                  f"WHERE SystemModstamp >= {opp_since} ORDER BY SystemModstamp ASC"):
            for r in batch:
                if scalar_text(r.get("AccountId")):
                    changed.add(scalar_text(r.get("AccountId")))
                with contextlib.suppress(ValueError):
                    opp_latest = max(opp_latest, iso(parse_timestamp(r.get("SystemModstamp"))))
        ids = sorted(changed)
        fields = ["Id", "Name", "Website", "Type", "NumberOfEmployees"]
        fields += [f for f in (self.c.arr_field, self.c.segment_field) if f]
        chunks = [ids[i:i + 200] for i in range(0, len(ids), 200)] or [[]]
        for n, chunk in enumerate(chunks, start=1):
            accounts: list[AccountRecord] = []
            if chunk:
                in_list = ", ".join(f"'{_quote(i)}'" for i in chunk)
                rows = [r for b in self.c.query(f"SELECT {', '.join(dict.fromkeys(fields))} FROM Account "
                                                f"WHERE Id IN ({in_list})") for r in b]
                won: dict[str, float] = defaultdict(float)
                open_: dict[str, float] = defaultdict(float)
                for b in self.c.query(f"SELECT AccountId, Amount, IsClosed, IsWon FROM Opportunity "
                                      f"WHERE AccountId IN ({in_list})"):
                    for o in b:
                        owner, amount = scalar_text(o.get("AccountId")), _number(o.get("Amount")) or 0.0
                        if not owner:
                            continue
                        if o.get("IsWon") is True:
                            won[owner] += amount
                        elif o.get("IsClosed") is not True:
                            open_[owner] += amount
                accounts = [self._account(r, won, open_) for r in rows if scalar_text(r.get("Id"))]
            # The cursor moves only with the last chunk: a crash in between redoes all chunks (idempotent).
            last = n == len(chunks)
            yield Page(accounts=accounts, cursor={
                "account_modstamp": acc_latest if last else acc_since,
                "opportunity_modstamp": opp_latest if last else opp_since,
            })

    def _account(self, r: dict[str, Any], won: dict[str, float], open_: dict[str, float]) -> AccountRecord:
        acc_id = scalar_text(r.get("Id"))
        kind = str(r.get("Type") or "").lower()
        lifecycle = ("customer" if "customer" in kind else "prospect" if "prospect" in kind
                     else "churned" if "former" in kind or "churn" in kind else None)
        arr = _number(r.get(self.c.arr_field)) if self.c.arr_field else won.get(acc_id, 0.0)
        segment = (str(r.get(self.c.segment_field) or "") or None) if self.c.segment_field \
            else _segment(r.get("NumberOfEmployees"))
        return AccountRecord(
            name=scalar_text(r.get("Name")) or f"salesforce account {acc_id}",
            domain=scalar_text(r.get("Website")) or None,
            segment=segment, arr=arr, lifecycle=lifecycle, open_pipeline=open_.get(acc_id, 0.0),
            external_ids={"salesforce": acc_id},
        )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _segment(employees: Any) -> str | None:
    count = _number(employees)
    if count is None:
        return None
    return "enterprise" if count >= 1000 else "mid-market" if count >= 100 else "smb"
