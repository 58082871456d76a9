"""The weekly report flow: build (load, render, store) then optionally deliver (Slack, e-mail)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.delivery import deliver_report
from models.db import engine_from_settings, make_session_factory
from models.settings import Settings
from pipeline.report_data import ReportResult, build_weekly_report


# Database and file I/O can fail transiently (a lock, a full disk being cleaned up): retry the build.
@task(name="build-report", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def build_report(settings: Settings, week: str | None = None) -> ReportResult:
    engine = engine_from_settings(settings)
    try:
        result = build_weekly_report(make_session_factory(engine), settings, week=week)
    finally:
        engine.dispose()
    get_run_logger().info("report %s written: %s, %s", result.week, result.md_path, result.html_path)
    return result


# Each channel retries with backoff inside; the task retry covers the database writes of the outcome, and
# channels already sent are not sent again.
@task(name="deliver-report", retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def send_report(settings: Settings, result: ReportResult) -> dict[str, dict[str, Any]]:
    engine = engine_from_settings(settings)
    try:
        outcomes = deliver_report(make_session_factory(engine), settings, result.report_id, result.summary)
    finally:
        engine.dispose()
    get_run_logger().info("report %s delivery: %s", result.week,
                          ", ".join(f"{channel} {o['status']}" for channel, o in outcomes.items()))
    return outcomes


@flow(name="weekly-report", log_prints=False)
def weekly_report(week: str | None = None, deliver: bool = False) -> dict[str, Any]:
    """Write the report of ``week`` (default: the last complete week) and deliver it when asked."""
    settings = Settings()
    result = build_report(settings, week)
    out: dict[str, Any] = result.as_dict()
    if deliver:
        out["delivery"] = send_report(settings, result)
    return out
