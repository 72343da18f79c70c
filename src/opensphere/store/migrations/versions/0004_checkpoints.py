"""Checkpoints of Execute runs.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from opensphere.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("project_id", sa.String(50),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("notebook_id", sa.String(200), nullable=False),
        sa.Column("operation_id", sa.String(50), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("notebook", sa.Text(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=False),
    )
    op.create_index("ix_checkpoints_project_notebook", "checkpoints",
                    ["project_id", "notebook_id", "created_at"])
    op.create_index("ix_checkpoints_operation_id", "checkpoints", ["operation_id"])


def downgrade() -> None:
    op.drop_table("checkpoints")
