"""Delivering a stored weekly report: a Slack incoming webhook and e-mail over SMTP, each optional.

A delivery never loses the report: it is already stored (row and files) before anything is sent, each channel
is retried with backoff on transient failures, and the outcome of every channel is recorded in
``report.delivery`` (``sent``, ``failed`` or ``skipped``, attempts, error). Secrets (the webhook URL carries
its token; the SMTP password) never appear in logs or in the recorded errors.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from models.db import session_scope
from models.settings import Settings
from models.tables import Report, utcnow
from pipeline.report import TIER_LABELS

log = logging.getLogger(__name__)

CHANNELS = ("slack", "email")


class DeliveryError(Exception):
    """One attempt failed; ``transient`` says whether trying again can help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class ChannelResult:
    status: str  # sent, failed, skipped
    attempts: int = 0
    error: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "attempts": self.attempts, "at": utcnow().isoformat()}
        if self.error:
            out["error"] = self.error
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): 1, 2, 4... capped."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


def with_retries(send: Callable[[], None], *, channel: str, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> ChannelResult:
    """Call ``send`` until it succeeds, fails permanently, or the attempts run out."""
    for attempt in range(1, policy.attempts + 1):
        try:
            send()
        except DeliveryError as exc:
            last_try = attempt == policy.attempts or not exc.transient
            log.warning("report delivery via %s failed (attempt %d/%d): %s%s", channel, attempt, policy.attempts,
                        exc, "" if last_try else "; retrying")
            if last_try:
                return ChannelResult("failed", attempts=attempt, error=str(exc))
            sleep(policy.delay(attempt))
        else:
            log.info("report delivered via %s after %d attempt(s)", channel, attempt)
            return ChannelResult("sent", attempts=attempt)
    raise AssertionError("unreachable: RetryPolicy.attempts must be at least 1")


class _RedactSecrets(logging.Filter):
    """Blanks registered secrets in records of a library logger (httpx logs every request URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "<redacted>")
            record.msg, record.args = message, None
        return True


_REDACT = _RedactSecrets()
logging.getLogger("httpx").addFilter(_REDACT)


# -- Slack ------------------------------------------------------------------------------------------------
def _plain(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int = 600) -> str:
    """Text made inert for Slack mrkdwn (its three control characters)."""
    return _plain(text, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_blocks(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A Block Kit message: a header, the headline, the top 3 opportunities, and a link to the report."""
    week, url = str(summary["week"]), str(summary["url"])
    h = summary.get("headline", {})
    facts = f"*{h.get('items', 0):,}* feedback items from *{h.get('accounts', 0):,}* accounts"
    previous = h.get("items_previous")
    if previous:
        facts += f" ({(h.get('items', 0) - previous) / previous:+.0%} vs last week)"
    facts += f" · *{h.get('themes_active', 0):,}* themes · *{h.get('deal_blockers', 0):,}* deal-blocker flags"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Groundswell theme report {week}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts}},
        {"type": "divider"},
    ]
    for o in list(summary.get("top", []))[:3]:
        tier = TIER_LABELS.get(str(o.get("tier")), str(o.get("tier")))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*{o['rank']}. <{o['url']}|{_mrkdwn(str(o['label']), 120)}>* — score {float(o['score']):.0f} ({tier})\n"
            f"{_mrkdwn(str(o.get('rationale') or ''))}")}})
    if not summary.get("top"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No opportunities scored yet."}})
    blocks.append({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open the report"}, "url": url}]})
    return {"text": f"Groundswell theme report {week}: {url}", "blocks": blocks}


def post_slack(webhook_url: str, payload: Mapping[str, Any], *, timeout_s: float,
               transport: httpx.BaseTransport | None = None) -> None:
    """One POST to the webhook. Raises DeliveryError without the URL in it (the URL is the secret)."""
    _REDACT.secrets.add(webhook_url)
    try:
        with httpx.Client(transport=transport, timeout=timeout_s) as client:
            response = client.post(webhook_url, json=payload)
    except httpx.TimeoutException:
        raise DeliveryError("Slack webhook timed out", transient=True) from None
    except httpx.TransportError as exc:
        raise DeliveryError(f"Slack webhook unreachable ({type(exc).__name__})", transient=True) from None
    if response.status_code >= 300:
        body = _plain(response.text, 200)
        transient = response.status_code == 429 or response.status_code >= 500
        raise DeliveryError(f"Slack webhook answered HTTP {response.status_code}: {body}", transient=transient)


# -- e-mail ------------------------------------------------------------------------------------------------
# Called as factory(host, port, timeout=seconds), like smtplib.SMTP itself; tests pass a fake.
SMTPFactory = Callable[..., smtplib.SMTP]


def report_email(settings: Settings, *, week: str, markdown: str, html: str) -> EmailMessage:
    """multipart/alternative: the Markdown as text/plain first, the HTML as the preferred part."""
    message = EmailMessage()
    message["Subject"] = f"Groundswell theme report {week}"
    message["From"] = settings.report_from
    message["To"] = ", ".join(settings.report_to)
    message.set_content(markdown, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def send_email(settings: Settings, message: EmailMessage, *, smtp_factory: SMTPFactory = smtplib.SMTP) -> None:
    """One SMTP session. Raises DeliveryError; server errors 4xx are transient, 5xx and bad logins are not."""
    host = settings.smtp_host or ""
    try:
        with smtp_factory(host, settings.smtp_port, timeout=settings.http_timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_user, password)
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP login refused ({exc.smtp_code})", transient=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"SMTP refused the recipients {sorted(exc.recipients)}", transient=False) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP server answered {exc.smtp_code}", transient=400 <= exc.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP server {host}:{settings.smtp_port} unreachable ({type(exc).__name__})",
                            transient=True) from None


# -- one report --------------------------------------------------------------------------------------------
def record_delivery(factory: sessionmaker[Session], report_id: int, channel: str, result: ChannelResult) -> None:
    with session_scope(factory) as session:
        report = session.get(Report, report_id, with_for_update=True)
        if report is None:
            raise LookupError(f"report {report_id} does not exist")
        report.delivery = {**(report.delivery or {}), channel: result.as_dict()}


def deliver_report(factory: sessionmaker[Session], settings: Settings, report_id: int, summary: Mapping[str, Any],
                   *, transport: httpx.BaseTransport | None = None, smtp_factory: SMTPFactory = smtplib.SMTP,
                   policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                   force: bool = False) -> dict[str, dict[str, Any]]:
    """Send report ``report_id`` on every configured channel and record each outcome in ``report.delivery``.

    A channel already ``sent`` for this report is not sent again unless ``force`` (so a retried task does not
    post twice). Failures are logged and recorded, never raised: the report stays stored either way.

    Returns:
        channel -> recorded outcome (``status``, ``attempts``, ``error``...).
    """
    policy = policy or RetryPolicy()
    with factory() as session:
        report = session.get(Report, report_id)
        if report is None:
            raise LookupError(f"report {report_id} does not exist")
        week, markdown, html, done = report.week, report.markdown, report.html, dict(report.delivery or {})

    def slack() -> ChannelResult:
        if settings.slack_webhook_url is None:
            return ChannelResult("skipped", reason="GROUNDSWELL_SLACK_WEBHOOK_URL is not set")
        url = settings.slack_webhook_url.get_secret_value()
        payload = slack_blocks({**summary, "week": week})
        return with_retries(lambda: post_slack(url, payload, timeout_s=settings.http_timeout_s, transport=transport),
                            channel="slack", policy=policy, sleep=sleep)

    def email() -> ChannelResult:
        if not settings.smtp_host or not settings.report_to:
            return ChannelResult("skipped", reason="GROUNDSWELL_SMTP_HOST or GROUNDSWELL_REPORT_TO is not set")
        message = report_email(settings, week=week, markdown=markdown, html=html)
        return with_retries(lambda: send_email(settings, message, smtp_factory=smtp_factory),
                            channel="email", policy=policy, sleep=sleep)

    outcomes: dict[str, dict[str, Any]] = {}
    for channel, send in (("slack", slack), ("email", email)):
        if not force and (done.get(channel) or {}).get("status") == "sent":
            outcomes[channel] = done[channel]
            continue
        result = send()
        record_delivery(factory, report_id, channel, result)
        outcomes[channel] = result.as_dict()
    return outcomes
