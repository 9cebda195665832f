"""Resource providers and what hangs off them: inventories, traits, aggregates."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import EXTERNAL_ID_LEN, NAME_LEN, UUID_LEN, Base, Timestamps


class ResourceProvider(Timestamps, Base):
    __tablename__ = "resource_providers"
    __table_args__ = (
        CheckConstraint("generation >= 0", name="generation_non_negative"),
        Index("ix_resource_providers_root_provider_id", "root_provider_id"),
        Index("ix_resource_providers_parent_provider_id", "parent_provider_id"),
        Index("ix_resource_providers_owner_project_id", "owner_project_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(UUID_LEN), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # Nullable only while the row is being inserted: a root is its own root.
    root_provider_id: Mapped[int | None] = mapped_column(ForeignKey("resource_providers.id"))
    parent_provider_id: Mapped[int | None] = mapped_column(ForeignKey("resource_providers.id"))
    owner_project_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LEN))


class Inventory(Timestamps, Base):
    __tablename__ = "inventories"
    __table_args__ = (
        UniqueConstraint("resource_provider_id", "resource_class_id"),
        Index("ix_inventories_resource_class_id", "resource_class_id"),
        CheckConstraint("total >= 0", name="total_non_negative"),
        CheckConstraint("reserved >= 0", name="reserved_non_negative"),
        CheckConstraint("min_unit >= 0", name="min_unit_non_negative"),
        CheckConstraint("max_unit >= 0", name="max_unit_non_negative"),
        CheckConstraint("step_size >= 0", name="step_size_non_negative"),
        CheckConstraint("allocation_ratio > 0", name="allocation_ratio_positive"),
        CheckConstraint("used >= 0", name="used_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id", ondelete="CASCADE")
    )
    resource_class_id: Mapped[int] = mapped_column(ForeignKey("resource_classes.id"))
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    min_unit: Mapped[int] = mapped_column(Integer, default=1)
    max_unit: Mapped[int] = mapped_column(Integer)
    step_size: Mapped[int] = mapped_column(Integer, default=1)
    allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    # The sum of the allocations' `used` on this provider in this class, kept by every write
    # under the provider's lock: a capacity check reads one row, however many allocations the
    # provider holds. `allot db check` compares it with the sum.
    used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ProviderTrait(Base):
    __tablename__ = "resource_provider_traits"
    __table_args__ = (Index("ix_resource_provider_traits_trait_id", "trait_id"),)

    resource_provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id", ondelete="CASCADE"), primary_key=True
    )
    trait_id: Mapped[int] = mapped_column(ForeignKey("traits.id"), primary_key=True)


class Aggregate(Base):
    __tablename__ = "placement_aggregates"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(UUID_LEN), unique=True)


class ProviderAggregate(Base):
    __tablename__ = "resource_provider_aggregates"
    __table_args__ = (Index("ix_resource_provider_aggregates_aggregate_id", "aggregate_id"),)

    resource_provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id", ondelete="CASCADE"), primary_key=True
    )
    aggregate_id: Mapped[int] = mapped_column(
        ForeignKey("placement_aggregates.id", ondelete="CASCADE"), primary_key=True
    )
