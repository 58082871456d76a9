"""HubSpot CRM: companies and notes through the CRM v3 search API, notes linked to companies.

API: ``POST /crm/v3/objects/{companies,notes}/search`` filtered on ``hs_lastmodifieddate`` (milliseconds),
sorted ascending, paged with ``after``; note -> company links from
``POST /crm/v4/associations/notes/companies/batch/read``; the linked companies from
``POST /crm/v3/objects/companies/batch/read``. Authentication: ``Authorization: Bearer <private app token>``.

The search API returns at most 10,000 results for one query, so a stream restarts its query from the
last modification time it saw when it reaches that limit. The cursor is that time (``since_ms``); it is
compared with ``GTE`` so records sharing the boundary millisecond are read again (and upserted unchanged)
rather than lost.

Options: ``base_url`` (default ``https://api.hubapi.com``), ``arr_property`` (company property with the
ARR, default ``hs_arr``), ``segment_property`` (default: derived from ``numberofemployees``),
``pipeline_property`` (company property with the open deal amount, optional), ``page_size`` (max 200).
Secret: ``hubspot_token``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from ingest.base import Connector, Page, Stream, obj, objects, parse_timestamp, scalar_text
from ingest.errors import BadResponse
from ingest.http import Sleep, token_client
from ingest.records import AccountRecord, AccountRef, FeedbackRecord, Rejection, payload_text

SEARCH_LIMIT = 10_000
LIFECYCLE = {"customer": "customer", "evangelist": "customer", "opportunity": "prospect",
             "salesqualifiedlead": "prospect", "marketingqualifiedlead": "prospect", "lead": "prospect",
             "subscriber": "prospect", "other": "unknown"}


class HubSpotConnector(Connector):
    kind: ClassVar[str] = "hubspot"
    system: ClassVar[str | None] = "hubspot"

    def __init__(self, *, source: str, options: dict[str, Any], token: str,
                 transport: httpx.BaseTransport | None = None, timeout_s: float = 30.0, max_retries: int = 5,
                 sleep: Sleep | None = None) -> None:
        super().__init__(source=source, options=options)
        self.page_size = self.int_option("page_size", 100, maximum=200)
        self.arr_property = self.option("arr_property", "hs_arr")
        self.segment_property = self.optional("segment_property")
        self.pipeline_property = self.optional("pipeline_property")
        self.http = token_client(
            source=source, token=token, missing="the HubSpot access token is missing: set GROUNDSWELL_HUBSPOT_TOKEN",
            base_url=self.option("base_url", "https://api.hubapi.com"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            transport=transport, timeout_s=timeout_s, max_retries=max_retries, sleep=sleep,
        )

    @property
    def company_properties(self) -> list[str]:
        props = ["name", "domain", "lifecyclestage", "numberofemployees", "hs_lastmodifieddate", self.arr_property]
        props += [p for p in (self.segment_property, self.pipeline_property) if p]
        return props

    def streams(self) -> list[Stream]:
        return [CompanyStream(self), NoteStream(self)]

    def close(self) -> None:
        self.http.close()

    def search(self, object_type: str, properties: list[str], cursor: dict[str, Any]
               ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Batches of search results modified since the cursor, each with the cursor valid after it."""
        since = int(cursor.get("since_ms", 0))
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since)},
                ]}],
                "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                "properties": properties,
                "limit": self.page_size,
            }
            if after is not None:
                body["after"] = after
            data = self.http.post_json(f"/crm/v3/objects/{object_type}/search", body)
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise BadResponse(f"{object_type} search answered without a 'results' list", source=self.source)
            results = objects(data["results"])
            latest = since
            for r in results:
                stamp = obj(r.get("properties")).get("hs_lastmodifieddate") or r.get("updatedAt")
                try:
                    latest = max(latest, int(parse_timestamp(stamp).timestamp() * 1000))
                except ValueError:
                    continue
            next_after = obj(obj(data.get("paging")).get("next")).get("after")
            yield results, {"since_ms": latest}
            if not next_after:
                return
            if int(next_after) >= SEARCH_LIMIT:
                if latest == since:  # 10,000 records share one millisecond: cannot move on safely
                    raise BadResponse(f"more than {SEARCH_LIMIT} {object_type} modified at {since} ms",
                                      source=self.source)
                since, after = latest, None
            else:
                after = str(next_after)

    def companies(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            data = self.http.post_json("/crm/v3/objects/companies/batch/read", {
                "properties": self.company_properties, "inputs": [{"id": i} for i in chunk],
            })
            for r in objects(obj(data).get("results")):
                if r.get("id") is not None:
                    found[str(r["id"])] = r
        return found

    def account(self, company: dict[str, Any]) -> AccountRecord:
        props = obj(company.get("properties"))
        lifecycle = LIFECYCLE.get(scalar_text(props.get("lifecyclestage")).lower())
        segment = (scalar_text(props.get(self.segment_property)) if self.segment_property
                   else _segment(props.get("numberofemployees")))
        domain = scalar_text(props.get("domain"))
        return AccountRecord(
            name=scalar_text(props.get("name")) or domain or f"hubspot company {company['id']}",
            domain=domain or None,
            segment=segment or None,
            arr=_number(props.get(self.arr_property)),
            lifecycle=lifecycle,
            open_pipeline=_number(props.get(self.pipeline_property)) if self.pipeline_property else None,
            external_ids={"hubspot": scalar_text(company["id"])},
        )


class CompanyStream:
    name = "companies"
    primary_key = "id"
    cursor_field = "hs_lastmodifieddate"

    def __init__(self, connector: HubSpotConnector) -> None:
        self.c = connector

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        for results, next_cursor in self.c.search("companies", self.c.company_properties, cursor):
            accounts = [self.c.account(r) for r in results if r.get("id") is not None and not r.get("archived")]
            yield Page(accounts=accounts, cursor=next_cursor)


class NoteStream:
    name = "notes"
    primary_key = "id"
    cursor_field = "hs_lastmodifieddate"

    def __init__(self, connector: HubSpotConnector) -> None:
        self.c = connector

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        props = ["hs_note_body", "hs_timestamp", "hs_lastmodifieddate", "hubspot_owner_id"]
        for results, next_cursor in self.c.search("notes", props, cursor):
            notes = [r for r in results if r.get("id") is not None and not r.get("archived")]
            links = self._companies_of([str(n["id"]) for n in notes])
            companies = self.c.companies(sorted({cid for ids in links.values() for cid in ids}))
            records = [self._record(n, links.get(str(n["id"]), []), companies) for n in notes]
            yield Page(records=records, cursor=next_cursor)

    def _companies_of(self, note_ids: list[str]) -> dict[str, list[str]]:
        links: dict[str, list[str]] = {}
        for start in range(0, len(note_ids), 1000):
            chunk = note_ids[start:start + 1000]
            if not chunk:
                continue
            data = self.c.http.post_json("/crm/v4/associations/notes/companies/batch/read",
                                         {"inputs": [{"id": i} for i in chunk]})
            for r in objects(obj(data).get("results")):
                from_id = str(obj(r.get("from")).get("id"))
                links[from_id] = [str(t["toObjectId"]) for t in objects(r.get("to")) if t.get("toObjectId") is not None]
        return links

    def _record(self, note: dict[str, Any], company_ids: list[str], companies: dict[str, dict[str, Any]]
                ) -> FeedbackRecord | Rejection:
        key = str(note["id"])
        props = obj(note.get("properties"))
        try:
            occurred = parse_timestamp(props.get("hs_timestamp") or note.get("createdAt"))
        except ValueError as exc:
            return Rejection(key, payload_text(note), f"bad date in hs_timestamp: {exc}")
        account = None
        for cid in company_ids:
            company = companies.get(cid)
            if company is not None:
                cprops = obj(company.get("properties"))
                account = AccountRef(name=scalar_text(cprops.get("name")) or None,
                                     domain=scalar_text(cprops.get("domain")) or None, external_id=cid,
                                     system="hubspot")
                break
        return FeedbackRecord(
            external_id=key, text=scalar_text(props.get("hs_note_body")), occurred_at=occurred, kind="call_note",
            account=account, author_role="sales", submitted_by=scalar_text(props.get("hubspot_owner_id")) or None,
            is_html=True,
        )


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _segment(employees: Any) -> str | None:
    count = _number(employees)
    if count is None:
        return None
    return "enterprise" if count >= 1000 else "mid-market" if count >= 100 else "smb"
