"""Deployments and their schedules, kept apart from the flow code.

``pipeline`` runs on ``settings.pipeline_cron`` (hourly by default) and ``weekly_report`` on
``settings.report_cron`` (Mondays 08:00), both in ``settings.timezone``. Cron schedules need a Prefect
server: ``groundswell schedule`` serves these deployments against one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.pipeline import pipeline
from flows.report import weekly_report
from models.settings import Settings

PIPELINE_DEPLOYMENT = "hourly"
REPORT_DEPLOYMENT = "weekly"


def build_deployments(settings: Settings) -> list[Any]:
    """The served deployments (``prefect.deployments.runner.RunnerDeployment``), one per schedule.

    Their entrypoints are module paths (``flows.pipeline.pipeline``), imported like any other module. A file
    path entrypoint (Prefect's default) has the run load ``flows/pipeline.py`` as a script with ``flows/``
    first on ``sys.path``, where it shadows the top-level ``pipeline`` package: every scheduled run crashed
    on a circular import before doing any work.
    """
    return [
        pipeline.to_deployment(
            name=PIPELINE_DEPLOYMENT, schedule=Cron(settings.pipeline_cron, timezone=settings.timezone),
            description="Sync every enabled source, then analyse what is new.", tags=["groundswell"],
            entrypoint_type=EntrypointType.MODULE_PATH),
        # Delivery goes to the channels configured in settings; with none configured it is skipped.
        weekly_report.to_deployment(
            name=REPORT_DEPLOYMENT, schedule=Cron(settings.report_cron, timezone=settings.timezone),
            parameters={"deliver": True}, description="Write and deliver last week's theme report.",
            tags=["groundswell"], entrypoint_type=EntrypointType.MODULE_PATH),
    ]


def serve_deployments(deployments: Sequence[Any]) -> None:
    """Serve ``deployments`` until interrupted (SIGINT or SIGTERM); their schedules are paused on the way out."""
    from prefect import serve

    serve(*deployments, pause_on_shutdown=True, print_starting_message=False)
