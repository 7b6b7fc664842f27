"""browser sign-in: server-side sessions and one-time sign-in codes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def create_secret_table(name: str, secret: str, *extra: sa.Column | sa.ForeignKeyConstraint) -> None:
    """A table of short-lived sign-in secrets: an owner (rows go with it), a unique hash, a lifetime."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column(secret, sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        *extra,
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f(f"fk_{name}_owner_id_owners"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )
    op.create_index(op.f(f"ix_{name}_owner_id"), name, ["owner_id"], unique=False)
    op.create_index(op.f(f"ix_{name}_{secret}"), name, [secret], unique=True)


def upgrade() -> None:
    create_secret_table(
        "web_sessions",
        "session_hash",
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_web_sessions_token_id_api_tokens"), ondelete="CASCADE"
        ),
    )
    create_secret_table("login_codes", "code_hash", sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_index(op.f("ix_login_codes_code_hash"), table_name="login_codes")
    op.drop_index(op.f("ix_login_codes_owner_id"), table_name="login_codes")
    op.drop_table("login_codes")
    op.drop_index(op.f("ix_web_sessions_session_hash"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_owner_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
