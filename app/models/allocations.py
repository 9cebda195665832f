from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamps


class Allocation(Timestamps, Base):
    __tablename__ = "allocations"
    __table_args__ = (
        CheckConstraint("used > 0", name="used_positive"),
        UniqueConstraint("consumer_id", "resource_provider_id", "resource_class_id"),
        # `used` rides along so that usage sums are index-only scans (PostgreSQL).
        Index(
            "ix_allocations_resource_provider_id_resource_class_id",
            "resource_provider_id",
            "resource_class_id",
            postgresql_include=["used"],
        ),
        Index("ix_allocations_resource_class_id", "resource_class_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consumer_id: Mapped[int] = mapped_column(ForeignKey("consumers.id", ondelete="CASCADE"))
    resource_provider_id: Mapped[int] = mapped_column(ForeignKey("resource_providers.id"))
    resource_class_id: Mapped[int] = mapped_column(ForeignKey("resource_classes.id"))
    used: Mapped[int] = mapped_column(Integer)
