"""Unit balances, disk sizes, per-run usage, and restrictions.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from opensphere.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "project_budgets",
        sa.Column("project_id", sa.String(50),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("unit_balance", sa.BigInteger(), nullable=True),
        sa.Column("disk_size_gb", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "usage",
        sa.Column("operation_id", sa.String(50), primary_key=True),
        sa.Column("project_id", sa.String(50),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subject_id", sa.String(100), nullable=False),
        sa.Column("spec", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_usage_project_updated", "usage", ["project_id", "updated_at"])
    op.create_table(
        "restrictions",
        sa.Column("resource_type", sa.String(32), primary_key=True),
        sa.Column("resource_id", sa.String(50), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("values", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for table in ("restrictions", "usage", "project_budgets"):
        op.drop_table(table)
