"""index embedding by model and created_at

Search checks whether a model's stored vectors changed (their count and newest ``created_at``) every few
seconds; without this index that check reads every vector of the table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:30:00.000000
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("embedding", schema=None) as batch_op:
        batch_op.create_index("ix_embedding_model_created_at", ["model", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("embedding", schema=None) as batch_op:
        batch_op.drop_index("ix_embedding_model_created_at")
