"""inventories.used: each inventory's usage, kept by the writes instead of summed by the reads

A claim's capacity check, the usages reads and allocation candidates summed every allocation a
provider held in a class; a pool with 100,000 allocations made each of them cost that much.
The sum is now a column every write keeps under the provider lock it already holds. Existing
databases get it computed from their allocations here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inventories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("used", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE inventories SET used = (SELECT coalesce(sum(a.used), 0) FROM allocations a "
        "WHERE a.resource_provider_id = inventories.resource_provider_id "
        "AND a.resource_class_id = inventories.resource_class_id)"
    )
    with op.batch_alter_table("inventories", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_inventories_used_non_negative"), "used >= 0")


def downgrade() -> None:
    with op.batch_alter_table("inventories", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_inventories_used_non_negative"), type_="check")
        batch_op.drop_column("used")
