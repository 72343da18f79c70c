"""A version number of everything access decisions depend on, kept by triggers.

Every change that can alter who a credential belongs to or what a caller may do on a
resource bumps ``iam_state.version`` in the same transaction, whichever code (or person)
made it; servers reuse access decisions only while the version stays the same.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

# table -> the changes to it that can alter an access decision
CHANGES = {
    "access_bindings": ("INSERT", "UPDATE", "DELETE"),
    "group_members": ("INSERT", "UPDATE", "DELETE"),
    "tokens": ("UPDATE", "DELETE"),
    "subjects": ("UPDATE", "DELETE"),
    "projects": ("UPDATE OF community_id", "DELETE"),
    "communities": ("UPDATE OF organization_id", "DELETE"),
    "organizations": ("DELETE",),
}
BUMP = "UPDATE iam_state SET version = version + 1 WHERE id = 1"
FUNCTION = "opensphere_iam_changed"


def _triggers() -> list[tuple[str, str, str]]:
    return [(f"iam_changed_{table}_{change.split()[0].lower()}", table, change)
            for table, changes in CHANGES.items() for change in changes]


def upgrade() -> None:
    op.create_table(
        "iam_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO iam_state (id, version) VALUES (1, 0)")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(f"CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
    for name, table, change in _triggers():
        if postgres:
            op.execute(f"CREATE TRIGGER {name} AFTER {change} ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
        else:
            op.execute(f"CREATE TRIGGER {name} AFTER {change} ON {table} BEGIN {BUMP}; END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, _change in _triggers():
        op.execute(f"DROP TRIGGER {name} ON {table}" if postgres else f"DROP TRIGGER {name}")
    if postgres:
        op.execute(f"DROP FUNCTION {FUNCTION}()")
    op.drop_table("iam_state")
