"""at most one analysis runs at a time

Two analyses at once (the hourly schedule and one started from the API, say) would both rewrite the
themes and assignments. A partial unique index lets only one full or incremental run be `running`; the
next one is refused with a message naming the run in progress. Analyses that a killed process left
`running` (all but the newest, which the next start closes if its process is gone) are marked
`abandoned` first, as the next run would have marked them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ONE_RUNNING_ANALYSIS = "status = 'running' AND kind IN ('full', 'incremental')"


def upgrade() -> None:
    op.execute(sa.text(
        "UPDATE analysis_run SET status = 'abandoned', finished_at = CURRENT_TIMESTAMP, "
        "error = 'left running by a process that stopped without recording an end (closed by migration 0004)' "
        f"WHERE {ONE_RUNNING_ANALYSIS} AND id < (SELECT max(id) FROM analysis_run WHERE {ONE_RUNNING_ANALYSIS})"
    ))
    op.create_index("ux_analysis_run_one_running", "analysis_run", ["status"], unique=True,
                    sqlite_where=sa.text(ONE_RUNNING_ANALYSIS), postgresql_where=sa.text(ONE_RUNNING_ANALYSIS))


def downgrade() -> None:
    op.drop_index("ux_analysis_run_one_running", table_name="analysis_run")
