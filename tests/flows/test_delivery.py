"""Report delivery against a local Slack webhook receiver and a local SMTP server, both on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import email
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Iterator
from email import policy as email_policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from flows.delivery import RetryPolicy, deliver_report, slack_blocks
from models.settings import Settings
from models.tables import Report
from pipeline.report import Headline, OpportunityRow, Quote, ReportData, ThemeWeek, render_report
from pipeline.report_data import delivery_summary, save_report

SECRET_PATH = "/services/T000/B000/s3cr3t-token"


# -- a local Slack webhook receiver -------------------------------------------------------------------------
class Receiver(ThreadingHTTPServer):
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses  # answered in order; the last one repeats
        self.requests: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{SECRET_PATH}"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                     "json": json.loads(body)})
        status = self.server.statuses.pop(0) if len(self.server.statuses) > 1 else self.server.statuses[0]
        reply = b"ok" if status == 200 else b"invalid_payload" if status < 500 else b"internal_error"
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(list(getattr(request, "param", [200])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# -- a minimal local SMTP server (RFC 5321's happy path: EHLO, MAIL, RCPT, DATA, QUIT) --------------------------
class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), SMTPHandler)


class SMTPHandler(socketserver.StreamRequestHandler):
    server: SMTPServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self.reply("220 localhost test SMTP")
        sender, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode("ascii", "replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip(), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)  # undo dot-stuffing
                self.server.messages.append({"from": sender, "to": recipients, "data": b"".join(lines)})
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:  # RSET, NOOP...
                self.reply("250 OK")


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# -- a stored report --------------------------------------------------------------------------------------------
def small_report() -> ReportData:
    themes = [ThemeWeek(theme_id=i, label=f"Theme <{i}> & co", items=10 * i, accounts=i, url=f"http://gs/themes/{i}",
                        score=20.0 * i, trend="growing",
                        quotes=(Quote(text=f"quote {i} — naïve café", source="zendesk", url="https://z/1",
                                      account="Acme"),))
              for i in range(1, 5)]
    return ReportData(
        week="2026-W47", week_start=dt.date(2026, 11, 16), generated_at=dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC),
        headline=Headline(items=120, accounts=30, themes_active=4, field_notes=6, deal_blockers=2, items_previous=100),
        themes=themes,
        opportunities=[OpportunityRow(theme_id=t.theme_id, label=t.label, rank=5 - t.theme_id, score=t.score or 0.0,
                                      tier="vital", rationale=f"why {t.theme_id} < 0.01", url=t.url,
                                      components={"reach": 0.5}) for t in reversed(themes)],
        weekly_mentions=pd.DataFrame({"theme_id": [1, 2], "week": ["2026-W47", "2026-W47"], "items": [10, 20]}),
    )


@pytest.fixture
def stored(sessions: sessionmaker[Session], settings: Settings) -> tuple[int, dict[str, Any], ReportData]:
    data = small_report()
    rendered = render_report(data)
    with sessions.begin() as session:
        saved = save_report(session, data.week, rendered.markdown, rendered.html, rendered.snapshot,
                            settings.reports_dir)
    return saved.report_id, delivery_summary(data, saved.report_id, "http://gs.example.com"), data


def configured(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update=values)


def stored_report(sessions: sessionmaker[Session], report_id: int) -> Report:
    with sessions() as session:
        return session.get_one(Report, report_id)


FAST = RetryPolicy(attempts=3, backoff_s=0.5)


# -- tests ----------------------------------------------------------------------------------------------------------
def test_slack_and_email_reach_local_servers(sessions, settings, stored, receiver: Receiver,
                                             smtp_server: SMTPServer) -> None:
    report_id, summary, _ = stored
    settings = configured(settings, slack_webhook_url=SecretStr(receiver.url), smtp_host="127.0.0.1",
                          smtp_port=smtp_server.server_address[1], report_to=["pm@example.com", "cto@example.com"],
                          report_from="gs@example.com")
    outcomes = deliver_report(sessions, settings, report_id, summary, policy=FAST, sleep=lambda s: None)
    assert {c: o["status"] for c, o in outcomes.items()} == {"slack": "sent", "email": "sent"}

    [post] = receiver.requests
    assert post["path"] == SECRET_PATH and post["content_type"] == "application/json"
    blocks = post["json"]["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Groundswell theme report 2026-W47"}}
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert "*120* feedback items from *30* accounts (+20% vs last week)" in sections[0]
    assert [s.split("*")[1].split(".")[0] for s in sections[1:]] == ["1", "2", "3"]  # the top 3, in rank order
    assert "Theme &lt;4&gt; &amp; co" in sections[1] and "why 4 &lt; 0.01" in sections[1]
    assert blocks[-1]["elements"][0]["url"] == f"http://gs.example.com/reports/{report_id}"

    [mail] = smtp_server.messages
    assert mail["from"] == "<gs@example.com>" and mail["to"] == ["<pm@example.com>", "<cto@example.com>"]
    message = email.message_from_bytes(mail["data"], policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Groundswell theme report 2026-W47"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = list(message.iter_parts())
    row = stored_report(sessions, report_id)
    assert plain.get_content_type() == "text/plain" and plain.get_content().replace("\r\n", "\n") == row.markdown
    assert html.get_content_type() == "text/html" and html.get_content().replace("\r\n", "\n") == row.html
    assert "naïve café" in plain.get_content() and "data:image/png;base64," in html.get_content()

    assert row.delivery["slack"]["status"] == "sent" and row.delivery["slack"]["attempts"] == 1
    assert row.delivery["email"]["status"] == "sent"
    # A retried task does not post twice: channels already sent are skipped.
    deliver_report(sessions, settings, report_id, summary, policy=FAST, sleep=lambda s: None)
    assert len(receiver.requests) == 1 and len(smtp_server.messages) == 1


@pytest.mark.parametrize("receiver", [[500, 200]], indirect=True)
def test_a_failing_webhook_is_retried_with_backoff(sessions, settings, stored, receiver: Receiver) -> None:
    report_id, summary, _ = stored
    waits: list[float] = []
    outcomes = deliver_report(sessions, configured(settings, slack_webhook_url=SecretStr(receiver.url)), report_id,
                              summary, policy=FAST, sleep=waits.append)
    assert outcomes["slack"]["status"] == "sent" and outcomes["slack"]["attempts"] == 2
    assert len(receiver.requests) == 2 and receiver.requests[0]["json"] == receiver.requests[1]["json"]
    assert waits == [0.5]
    assert outcomes["email"] == {**outcomes["email"], "status": "skipped"}  # not configured: skipped, not failed


@pytest.mark.parametrize("receiver", [[503]], indirect=True)
def test_a_webhook_that_keeps_failing_is_recorded_and_the_report_stays(
        sessions, settings, stored, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    report_id, summary, _ = stored
    before = stored_report(sessions, report_id)
    waits: list[float] = []
    with caplog.at_level(logging.DEBUG):
        outcomes = deliver_report(sessions, configured(settings, slack_webhook_url=SecretStr(receiver.url)),
                                  report_id, summary, policy=FAST, sleep=waits.append)
    assert outcomes["slack"]["status"] == "failed" and outcomes["slack"]["attempts"] == 3
    assert len(receiver.requests) == 3 and waits == [0.5, 1.0]
    after = stored_report(sessions, report_id)
    assert (after.markdown, after.html, after.week) == (before.markdown, before.html, before.week)
    assert after.delivery["slack"]["status"] == "failed"
    assert "HTTP 503" in after.delivery["slack"]["error"]
    assert (settings.reports_dir / "2026-W47.md").read_text() == after.markdown
    # The webhook URL is the secret: it is in no log line (httpx's own included) and in no stored error.
    assert "giving up" not in caplog.text and "retrying" in caplog.text
    assert "s3cr3t" not in caplog.text and "s3cr3t" not in json.dumps(after.delivery)
    assert any(r.name == "httpx" for r in caplog.records)


@pytest.mark.parametrize("receiver", [[404]], indirect=True)
def test_a_permanent_error_is_not_retried(sessions, settings, stored, receiver: Receiver) -> None:
    report_id, summary, _ = stored
    outcomes = deliver_report(sessions, configured(settings, slack_webhook_url=SecretStr(receiver.url)), report_id,
                              summary, policy=FAST, sleep=lambda s: None)
    assert outcomes["slack"]["status"] == "failed" and outcomes["slack"]["attempts"] == 1
    assert "HTTP 404: invalid_payload" in outcomes["slack"]["error"]


def test_an_unreachable_smtp_server_is_retried_then_recorded(sessions, settings, stored) -> None:
    report_id, summary, _ = stored
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    outcomes = deliver_report(
        sessions, configured(settings, smtp_host="127.0.0.1", smtp_port=port, report_to=["pm@example.com"],
                             smtp_password=SecretStr("hunter2")),
        report_id, summary, policy=FAST, sleep=waits.append)
    assert outcomes["email"]["status"] == "failed" and outcomes["email"]["attempts"] == 3
    assert "unreachable" in outcomes["email"]["error"] and waits == [0.5, 1.0]
    assert outcomes["slack"]["status"] == "skipped"
    row = stored_report(sessions, report_id)
    assert row.delivery["email"]["status"] == "failed" and "hunter2" not in json.dumps(row.delivery)


def test_slack_blocks_without_opportunities() -> None:
    payload = slack_blocks({"week": "2026-W01", "url": "http://gs/reports/1", "headline": {}, "top": []})
    texts = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert texts[-1] == "No opportunities scored yet."
    assert payload["text"] == "Groundswell theme report 2026-W01: http://gs/reports/1"


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_weekly_report_flow_builds_and_delivers(prefect_harness, settings: Settings, receiver: Receiver,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.report import weekly_report

    monkeypatch.setenv("GROUNDSWELL_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("GROUNDSWELL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("GROUNDSWELL_SLACK_WEBHOOK_URL", receiver.url)
    result = weekly_report(week="2026-W47", deliver=True)
    assert result["week"] == "2026-W47"
    assert result["markdown"] == str(settings.reports_dir / "2026-W47.md")
    assert (settings.reports_dir / "2026-W47.html").exists()
    assert result["delivery"]["slack"]["status"] == "sent" and result["delivery"]["email"]["status"] == "skipped"
    assert receiver.requests[0]["json"]["blocks"][0]["text"]["text"] == "Groundswell theme report 2026-W47"
