"""Organizations, subjects, tokens, communities, projects and operations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from opensphere.store.models import UTCDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("subject_id", sa.String(50),
                  sa.ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "communities",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("organization_id", sa.String(50), sa.ForeignKey("organizations.id"),
                  nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("billing_account_id", sa.String(50), nullable=False),
        sa.Column("created_by_id", sa.String(50), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_communities_org_id", "communities", ["organization_id", "id"])
    op.create_table(
        "projects",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("community_id", sa.String(50), sa.ForeignKey("communities.id"),
                  nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("created_by_id", sa.String(50), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_projects_community_id", "projects", ["community_id", "id"])
    op.create_table(
        "operations",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("resource_id", sa.String(50), nullable=False),
        sa.Column("created_by", sa.String(50), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("modified_at", UTCDateTime(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("metadata_pb", sa.LargeBinary(), nullable=True),
        sa.Column("response_pb", sa.LargeBinary(), nullable=True),
        sa.Column("error_pb", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_operations_resource_id", "operations", ["resource_id"])


def downgrade() -> None:
    for table in ("operations", "projects", "communities", "tokens", "subjects", "organizations"):
        op.drop_table(table)
