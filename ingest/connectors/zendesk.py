"""Zendesk Support: tickets and their public comments through the cursor-based incremental export.

API: ``GET /api/v2/incremental/tickets/cursor.json?start_time=<unix>`` for the first page, then
``?cursor=<after_cursor>`` until ``end_of_stream``; users and organizations are sideloaded with
``include=users,organizations``. Comments come from ``GET /api/v2/tickets/{id}/comments.json``.
Authentication is basic auth ``{email}/token:{api_token}``. The requester's organization is the account.

Options: ``subdomain`` (or ``base_url``), ``email``, ``start_time`` (ISO date or Unix seconds, default 0),
``page_size`` (tickets per page, default 1000, Zendesk's maximum). Secret: ``zendesk_token``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from ingest.base import Connector, Page, Stream, parse_timestamp
from ingest.errors import BadResponse, ConfigError
from ingest.http import Sleep, token_client
from ingest.records import AccountRecord, AccountRef, FeedbackRecord, Rejection, not_an_object, payload_text


class ZendeskConnector(Connector):
    kind: ClassVar[str] = "zendesk"
    system: ClassVar[str | None] = "zendesk"

    def __init__(self, *, source: str, options: dict[str, Any], token: str,
                 transport: httpx.BaseTransport | None = None, timeout_s: float = 30.0, max_retries: int = 5,
                 sleep: Sleep | None = None) -> None:
        super().__init__(source=source, options=options)
        base_url = self.optional("base_url")
        if base_url is None:
            base_url = f"https://{self.option('subdomain')}.zendesk.com"
        email = self.option("email")
        start = self.option("start_time", "0")
        try:
            self.start_time = int(parse_timestamp(start).timestamp())
        except ValueError as exc:
            raise ConfigError(f"option 'start_time': {exc}", source=source) from None
        self.page_size = self.int_option("page_size", 1000, maximum=1000)
        self.http = token_client(
            source=source, token=token, missing="the Zendesk API token is missing: set GROUNDSWELL_ZENDESK_TOKEN",
            base_url=base_url, auth=httpx.BasicAuth(f"{email}/token", token),
            transport=transport, timeout_s=timeout_s, max_retries=max_retries, sleep=sleep,
        )
        self.base_url = base_url.rstrip("/")

    def streams(self) -> list[Stream]:
        return [TicketStream(self)]

    def close(self) -> None:
        self.http.close()


class TicketStream:
    name = "tickets"
    primary_key = "id"
    cursor_field = "after_cursor"

    def __init__(self, connector: ZendeskConnector) -> None:
        self.c = connector

    def read(self, cursor: dict[str, Any]) -> Iterator[Page]:
        params: dict[str, Any] = {"include": "users,organizations", "per_page": self.c.page_size}
        if cursor.get("after_cursor"):
            params["cursor"] = cursor["after_cursor"]
        else:
            params["start_time"] = self.c.start_time
        while True:
            data = self.c.http.get_json("/api/v2/incremental/tickets/cursor.json", params=params)
            if not isinstance(data, dict) or not isinstance(data.get("tickets"), list):
                raise BadResponse("the incremental ticket export answered without a 'tickets' list",
                                  source=self.c.source)
            users = {u["id"]: u for u in data.get("users") or [] if isinstance(u, dict) and "id" in u}
            orgs = {o["id"]: o for o in data.get("organizations") or [] if isinstance(o, dict) and "id" in o}
            records: list[FeedbackRecord | Rejection] = []
            accounts: dict[int, AccountRecord] = {}
            for ticket in data["tickets"]:
                if not isinstance(ticket, dict):
                    records.append(not_an_object(ticket, "ticket"))  # kept, never dropped silently
                    continue
                if ticket.get("status") == "deleted":
                    continue
                org = orgs.get(_ref(ticket.get("organization_id")))
                if org is not None:
                    accounts[org["id"]] = _account(org)
                records.append(self._record(ticket, users, org))
            after = data.get("after_cursor") or params.get("cursor")
            next_cursor = {"after_cursor": after} if after else dict(cursor)
            yield Page(records=records, accounts=list(accounts.values()), cursor=next_cursor)
            if data.get("end_of_stream", True) or not data.get("after_cursor"):
                return
            params = {"include": "users,organizations", "per_page": self.c.page_size,
                      "cursor": data["after_cursor"]}

    def _record(self, ticket: dict[str, Any], users: dict[Any, Any], org: dict[str, Any] | None
                ) -> FeedbackRecord | Rejection:
        ticket_id = ticket.get("id")
        if ticket_id is None:
            return Rejection("(no id)", payload_text(ticket), "ticket without id")
        key = str(ticket_id)
        try:
            occurred = parse_timestamp(ticket.get("created_at"))
        except ValueError as exc:
            return Rejection(key, payload_text(ticket), f"bad date in created_at: {exc}")
        bodies = [c for c in self._comments(ticket_id) if c.get("public", True)]
        if bodies:
            text = "\n\n".join(_comment_text(c) for c in bodies if _comment_text(c).strip())
            is_html = any(c.get("html_body") and not c.get("plain_body") and not c.get("body") for c in bodies)
        else:
            text, is_html = str(ticket.get("description") or ""), False
        requester = users.get(_ref(ticket.get("requester_id"))) or {}
        email = requester.get("email") if isinstance(requester, dict) else None
        account = None
        if org is not None:
            domains = org.get("domain_names") or []
            account = AccountRef(name=org.get("name"), domain=domains[0] if domains else None,
                                 external_id=str(org["id"]), system="zendesk")
        elif email:
            account = AccountRef(domain=email)
        return FeedbackRecord(
            external_id=key, text=text, occurred_at=occurred, kind="ticket", title=ticket.get("subject"),
            account=account, author_role="customer", url=f"{self.c.base_url}/agent/tickets/{key}",
            tags=[str(t) for t in ticket.get("tags") or []], is_html=is_html,
        )

    def _comments(self, ticket_id: Any) -> list[dict[str, Any]]:
        url: str | None = f"/api/v2/tickets/{ticket_id}/comments.json"
        comments: list[dict[str, Any]] = []
        while url:
            data = self.c.http.get_json(url)
            if not isinstance(data, dict):
                raise BadResponse(f"comments of ticket {ticket_id} are not a JSON object", source=self.c.source)
            comments.extend(c for c in data.get("comments") or [] if isinstance(c, dict))
            links = data.get("links") or {}
            meta = data.get("meta") or {}
            url = data.get("next_page") or (links.get("next") if meta.get("has_more") else None)
        return comments


def _comment_text(comment: dict[str, Any]) -> str:
    return str(comment.get("plain_body") or comment.get("body") or comment.get("html_body") or "")


def _account(org: dict[str, Any]) -> AccountRecord:
    domains = org.get("domain_names") or []
    fields = org.get("organization_fields") or {}
    arr = fields.get("arr")
    try:
        arr_value = float(arr) if arr not in (None, "") else None
    except (TypeError, ValueError):
        arr_value = None
    return AccountRecord(
        name=str(org.get("name") or (domains[0] if domains else f"zendesk organization {org['id']}")),
        domain=domains[0] if domains else None,
        segment=fields.get("segment") or None,
        arr=arr_value,
        external_ids={"zendesk": str(org["id"])},
    )


def _ref(value: Any) -> int | str | None:
    """An id used to look up a side-loaded user or organization; anything else (a list, an object) finds none."""
    return value if isinstance(value, int | str) else None
