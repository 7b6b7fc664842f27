"""drop jobs.celery_task_id: task ids are derived from the job id, the column was never read

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 or later), not batch mode: batch mode would
    # copy the table and drop the old one, which with foreign keys on deletes every job's stages
    # and shards (ON DELETE CASCADE).
    op.drop_column("jobs", "celery_task_id")


def downgrade() -> None:
    op.add_column("jobs", sa.Column("celery_task_id", sa.String(length=255), nullable=True))
