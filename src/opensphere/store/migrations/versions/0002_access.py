"""Groups, access bindings, the audit log, API keys, and the resource type of operations.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from opensphere.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="bearer"))
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("resource_type", sa.String(32), nullable=False,
                                   server_default=""))
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(50), sa.ForeignKey("subjects.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("subject_id", sa.String(50), sa.ForeignKey("subjects.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_group_members_subject_id", "group_members", ["subject_id"])
    op.create_table(
        "access_bindings",
        sa.Column("resource_type", sa.String(32), primary_key=True),
        sa.Column("resource_id", sa.String(50), primary_key=True),
        sa.Column("role_id", sa.String(64), primary_key=True),
        sa.Column("subject_type", sa.String(32), primary_key=True),
        sa.Column("subject_id", sa.String(100), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_access_bindings_subject", "access_bindings", ["subject_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("subject_id", sa.String(100), nullable=False),
        sa.Column("method", sa.String(128), nullable=False),
        sa.Column("resource_id", sa.String(100), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("message", sa.String(512), nullable=False),
    )
    op.create_index("ix_audit_log_time", "audit_log", ["time"])
    op.create_index("ix_audit_log_subject_id", "audit_log", ["subject_id"])


def downgrade() -> None:
    for table in ("audit_log", "access_bindings", "group_members"):
        op.drop_table(table)
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("resource_type")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("kind")
