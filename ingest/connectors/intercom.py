"""Intercom: conversations updated since the cursor through the search API, their parts as text.

API: ``POST /conversations/search`` with ``{"query": {"field": "updated_at", "operator": ">", ...},
"pagination": {"per_page": N, "starting_after": ...}}``; each conversation's parts from
``GET /conversations/{id}``; the contact's company from ``GET /contacts/{id}`` and ``GET /companies/{id}``.
Headers: ``Authorization: Bearer <token>`` and ``Intercom-Version``.

The text of an item is what the customer wrote: the opening message when a customer started it, and every
customer ``comment`` part (admin replies, internal notes and bot parts stay out). Search results are not
guaranteed to come in ``updated_at`` order, so the cursor moves to the newest ``updated_at`` seen only when a
search is exhausted; pages in between save ``starting_after`` so a rerun continues the same search. The next
search asks for ``updated_at > newest - 1`` so a conversation updated within that same second is not lost
(reading it twice only re-upserts it).

Options: ``base_url`` (default ``https://api.intercom.io``; ``https://api.eu.intercom.io`` in the EU),
``api_version`` (default ``2.11``), ``page_size`` (max 150). Secret: ``intercom_token``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from ingest.base import Connector, Page, Stream, obj, objects, parse_timestamp
from ingest.errors import BadResponse
from ingest.http import Sleep, token_client
from ingest.records import AccountRecord, AccountRef, FeedbackRecord, Rejection, not_an_object, payload_text

CUSTOMER_AUTHORS = frozenset({"user", "lead", "contact"})


class IntercomConnector(Connector):
    kind: ClassVar[str] = "intercom"
    system: ClassVar[str | None] = "intercom"

    def __init__(self, *, source: str, options: dict[str, Any], token: str,
                 transport: httpx.BaseTransport | None = None, timeout_s: float = 30.0, max_retries: int = 5,
                 sleep: Sleep | None = None) -> None:
        super().__init__(source=source, options=options)
        self.page_size = self.int_option("page_size", 50, maximum=150)
        self.http = token_client(
            source=source, token=token,
            missing="the Intercom access token is missing: set GROUNDSWELL_INTERCOM_TOKEN",
            base_url=self.option("base_url", "https://api.intercom.io"),
            headers={"Authorization": f"Bearer {token}", "Intercom-Version": self.option("api_version", "2.11"),
                     "Accept": "application/json"},
            transport=transport, timeout_s=timeout_s, max_retries=max_retries, sleep=sleep,
        )
        self._contacts: dict[str, str | None] = {}
        self._companies: dict[str, dict[str, Any]] = {}

    def streams(self) -> list[Stream]:
        return [ConversationStream(self)]

    def close(self) -> None:
        self.http.close()

    def company_of(self, contact_id: str) -> dict[str, Any] | None:
        if contact_id not in self._contacts:
            contact = self.http.get_json(f"/contacts/{contact_id}")
            data = objects(obj(obj(contact).get("companies")).get("data"))
            self._contacts[contact_id] = str(data[0]["id"]) if data and data[0].get("id") else None
        company_id = self._contacts[contact_id]
        if company_id is None:
            return None
        if company_id not in self._companies:
            company = self.http.get_json(f"/companies/{company_id}")
            if not isinstance(company, dict) or "id" not in company:
                raise BadResponse(f"company {company_id} answered without an id", source=self.source)
            self._companies[company_id] = company
        return self._companies[company_id]


class ConversationStream:
    name = "conversations"
    primary_key = "id"
    cursor_field = "updated_at"

    def __init__(self, connector: IntercomConnector) -> None:
        self.c = connector

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        since = int(cursor.get("updated_since", 0))
        newest = int(cursor.get("newest", since))
        starting_after = cursor.get("starting_after")
        while True:
            body: dict[str, Any] = {
                "query": {"field": "updated_at", "operator": ">", "value": max(since - 1, 0)},
                "pagination": {"per_page": self.c.page_size},
            }
            if starting_after:
                body["pagination"]["starting_after"] = starting_after
            data = self.c.http.post_json("/conversations/search", body)
            if not isinstance(data, dict) or not isinstance(data.get("conversations"), list):
                raise BadResponse("conversation search answered without a 'conversations' list",
                                  source=self.c.source)
            records: list[FeedbackRecord | Rejection] = []
            accounts: dict[str, AccountRecord] = {}
            for conv in data["conversations"]:
                if not isinstance(conv, dict):
                    records.append(not_an_object(conv, "conversation"))  # kept, never dropped silently
                    continue
                with contextlib.suppress(TypeError, ValueError):
                    newest = max(newest, int(conv.get("updated_at") or 0))
                records.append(self._record(conv, accounts))
            starting_after = obj(obj(data.get("pages")).get("next")).get("starting_after")
            if starting_after:
                yield Page(records=records, accounts=list(accounts.values()),
                           cursor={"updated_since": since, "newest": newest, "starting_after": starting_after})
            else:
                yield Page(records=records, accounts=list(accounts.values()),
                           cursor={"updated_since": newest, "newest": newest})
                return

    def _record(self, conv: dict[str, Any], accounts: dict[str, AccountRecord]) -> FeedbackRecord | Rejection:
        conv_id = conv.get("id")
        if conv_id is None:
            return Rejection("(no id)", payload_text(conv), "conversation without id")
        key = str(conv_id)
        try:
            occurred = parse_timestamp(conv.get("created_at"))
        except ValueError as exc:
            return Rejection(key, payload_text(conv), f"bad date in created_at: {exc}")
        full = self.c.http.get_json(f"/conversations/{key}")
        if not isinstance(full, dict):
            raise BadResponse(f"conversation {key} is not a JSON object", source=self.c.source)
        parts: list[str] = []
        source = obj(full.get("source"))
        if obj(source.get("author")).get("type") in CUSTOMER_AUTHORS and source.get("body"):
            parts.append(str(source["body"]))
        for part in objects(obj(full.get("conversation_parts")).get("conversation_parts")):
            if part.get("part_type") == "comment" and part.get("body") and \
                    obj(part.get("author")).get("type") in CUSTOMER_AUTHORS:
                parts.append(str(part["body"]))
        account = None
        contacts = objects(obj(full.get("contacts") or conv.get("contacts")).get("contacts"))
        if contacts and contacts[0].get("id"):
            company = self.c.company_of(str(contacts[0]["id"]))
            if isinstance(company, dict) and company.get("id") is not None:
                record = _account(company)
                accounts[str(company["id"])] = record
                account = AccountRef(name=record.name, domain=record.domain, external_id=str(company["id"]),
                                     system="intercom")
        return FeedbackRecord(
            external_id=key, text="\n\n".join(parts), occurred_at=occurred, kind="chat",
            title=str(source.get("subject") or "") or None, account=account, author_role="customer", is_html=True,
            tags=[str(t.get("name")) for t in objects(obj(full.get("tags")).get("tags")) if t.get("name")],
        )


def _account(company: dict[str, Any]) -> AccountRecord:
    spend = company.get("monthly_spend")
    try:
        arr = float(spend) * 12 if spend not in (None, "") else None
    except (TypeError, ValueError):
        arr = None
    return AccountRecord(
        name=str(company.get("name") or company.get("website") or f"intercom company {company['id']}"),
        domain=str(company.get("website") or "") or None, arr=arr, external_ids={"intercom": str(company["id"])},
    )
