"""IDE gateway credentials: session tokens and browser cookies, stored hashed.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from opensphere.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "ide_credentials",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(50), sa.ForeignKey("subjects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("project_id", sa.String(50), sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ide_credentials_expires_at", "ide_credentials", ["expires_at"])


def downgrade() -> None:
    op.drop_table("ide_credentials")
