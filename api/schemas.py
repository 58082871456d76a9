"""Request and response models of the HTTP API. ORM rows never leave the routes; these do."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["admin", "pm", "sales", "ingest"]
Decision = Literal["under_review", "planned", "shipped", "declined"]
FeedbackKind = Literal["ticket", "chat", "call_note", "field_note", "review", "survey"]
RunKind = Literal["full", "incremental"]

MAX_NOTE_CHARS = 100_000
MAX_ID = 2**63 - 1  # ids are 64-bit integers on every backend; larger ones cannot exist


def _reject_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, list | tuple):
        for item in value:
            _reject_nul(item)
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    return value


class Strict(BaseModel):
    """Request bodies reject unknown fields (a typo is reported, not ignored) and NUL characters (no
    database stores them in text)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return _reject_nul(value)


def _strip(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


# -- feedback ----------------------------------------------------------------------------------
class FieldNoteIn(Strict):
    """A sales rep's note after a meeting. Name the account by ``account_name`` or ``account_domain``."""

    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS, description="What the customer said.")
    account_name: str | None = Field(None, max_length=300)
    account_domain: str | None = Field(None, max_length=255)
    deal_stage: str | None = Field(None, max_length=64)
    deal_amount: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False)
    tags: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be blank")
        if "\x00" in v:
            raise ValueError("text must not contain NUL characters")
        return v

    @field_validator("account_name", "account_domain", "deal_stage")
    @classmethod
    def _strip_optional(cls, v: str | None) -> str | None:
        return _strip(v)

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for tag in v:
            tag = tag.strip()
            if len(tag) > 50:
                raise ValueError("a tag has at most 50 characters")
            if tag and tag not in out:
                out.append(tag)
        return out

    @property
    def has_account(self) -> bool:
        """The route reports a note without account on ``body.account_name`` (a model-level error has no field)."""
        return bool(self.account_name or self.account_domain)


class BatchItemIn(Strict):
    external_id: str = Field(min_length=1, max_length=255)
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)
    occurred_at: dt.datetime
    kind: FeedbackKind = "ticket"
    title: str | None = Field(None, max_length=1000)
    account_name: str | None = Field(None, max_length=300)
    account_domain: str | None = Field(None, max_length=255)
    author_role: str | None = Field(None, max_length=32)
    submitted_by: str | None = Field(None, max_length=255)
    url: str | None = Field(None, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=20)
    deal_stage: str | None = Field(None, max_length=64)
    deal_amount: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False)


class BatchIn(Strict):
    source: str = Field("api", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$",
                        description="Name of the source the items come from; created when new.")
    items: list[BatchItemIn] = Field(min_length=1, max_length=1000)


class BatchOut(BaseModel):
    source: str
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    accounts_created: int
    reasons: dict[str, int]


class AccountOut(BaseModel):
    id: int
    name: str
    domain: str | None
    segment: str | None
    lifecycle: str
    arr: float
    open_pipeline: float


class ThemeRef(BaseModel):
    id: int
    label: str
    method: str | None = None
    similarity: float | None = None


class FeedbackOut(BaseModel):
    id: int
    source: str
    external_id: str
    kind: str
    title: str | None
    text: str
    url: str | None
    account: AccountOut | None
    author_role: str | None
    submitted_by: str | None
    occurred_at: dt.datetime
    ingested_at: dt.datetime
    sentiment: float | None
    intent: str | None
    flags: dict[str, Any]
    competitors: list[Any]
    tags: list[Any]
    deal_stage: str | None
    deal_amount: float | None
    theme: ThemeRef | None = None


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end.")


class MoveIn(Strict):
    theme_id: int = Field(ge=1, le=MAX_ID)


# -- themes --------------------------------------------------------------------------------------
class WeekPoint(BaseModel):
    week: str
    week_start: dt.date
    items: int
    accounts: int
    arr: float = 0.0
    open_pipeline: float = 0.0
    sentiment: float | None = None


class ThemeSummary(BaseModel):
    id: int
    label: str
    auto_label: str
    keywords: list[Any]
    status: str
    trend: str | None
    size: int
    score: float | None
    rank: int | None
    momentum: float | None
    decision: str | None
    weekly: list[WeekPoint] = Field(default_factory=list, description="Last weeks of mentions, oldest first.")


class QuoteOut(BaseModel):
    feedback_id: int
    text: str
    source: str
    kind: str
    account: str | None
    segment: str | None
    occurred_at: dt.datetime
    url: str | None
    submitted_by: str | None


class ThemeAccount(BaseModel):
    id: int
    name: str
    segment: str | None
    lifecycle: str
    arr: float
    open_pipeline: float
    mentions: int


class ThemeEventOut(BaseModel):
    id: int
    kind: str
    detail: dict[str, Any]
    run_id: int | None
    created_at: dt.datetime


class ThemeDetail(ThemeSummary):
    parent_id: int | None
    merged_into_id: int | None
    rationale: str | None
    components: dict[str, Any]
    quotes: list[QuoteOut]
    accounts: list[ThemeAccount]
    arr_at_stake: float
    open_pipeline_at_stake: float
    competitors: dict[str, int]
    lineage: list[ThemeEventOut]


class ThemePatch(Strict):
    label: str | None = Field(None, min_length=1, max_length=300, description="New label (a rename).")
    archived: bool | None = Field(None, description="true archives the theme, false restores it.")

    @field_validator("label")
    @classmethod
    def _label_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("label must not be blank")
        return v.strip() if v is not None else None


class MergeIn(Strict):
    into: int = Field(ge=1, le=MAX_ID, description="Id of the theme that absorbs this one.")


# -- opportunities ---------------------------------------------------------------------------------
class OpportunityOut(BaseModel):
    theme_id: int
    label: str
    segment: str
    score: float
    rank: int
    tier: str
    trend: str | None
    components: dict[str, Any]
    metrics: dict[str, Any]
    rationale: str
    decision: str | None
    decision_note: str | None
    run_id: int
    weekly: list[WeekPoint] = Field(default_factory=list)


class ScorePoint(BaseModel):
    run_id: int
    created_at: dt.datetime
    score: float
    rank: int


class OpportunityDetail(OpportunityOut):
    history: list[ScorePoint]
    competitors: dict[str, int]
    accounts: list[ThemeAccount]
    sales_reps: list[str]
    quotes: list[QuoteOut]
    decided_at: dt.datetime | None
    decided_by: str | None


class OpportunityPatch(Strict):
    decision: Decision
    note: str | None = Field(None, max_length=5000)


# -- search ------------------------------------------------------------------------------------------
class SearchHit(BaseModel):
    score: float
    feedback: FeedbackOut


class SearchOut(BaseModel):
    query: str
    model: str
    hits: list[SearchHit]


# -- reports, sources, runs, keys -----------------------------------------------------------------------
class ReportSummary(BaseModel):
    id: int
    week: str
    created_at: dt.datetime
    path: str | None
    delivery: dict[str, Any]


class ReportOut(ReportSummary):
    markdown: str
    html: str


class ReportIn(Strict):
    week: str | None = Field(None, pattern=r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$", description="ISO week, e.g. 2026-W47.")
    deliver: bool = False


class RunOut(BaseModel):
    id: int
    kind: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    stats: dict[str, Any]
    error: str | None


class RunIn(Strict):
    kind: RunKind = "incremental"


class SourceOut(BaseModel):
    id: int
    name: str
    kind: str
    config: dict[str, Any]
    enabled: bool
    created_at: dt.datetime
    last_sync_at: dt.datetime | None
    last_sync_status: str | None
    last_sync_error: str | None


SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey")


class SourceIn(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_\-]*$")
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("config")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if any(word in key.lower() for word in SECRET_WORDS):
                raise ValueError(f"config key {key!r} looks like a secret; secrets come from settings (env)")
        return v


class KeyIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Role


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The secret; shown this once only.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
