"""record which process owns each run

A run whose process was killed (kill -9, a server restarted mid-job) stays queued or running in the table.
With the owner (host, pid and the process's start time) recorded, the next run or server start on that
host sees the process is gone and marks the run abandoned at once, instead of after hours.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 16:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analysis_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analysis_run", schema=None) as batch_op:
        batch_op.drop_column("owner")
