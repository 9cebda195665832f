"""Consumers and who they belong to: projects, users, consumer types."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import EXTERNAL_ID_LEN, UUID_LEN, Base, Timestamps


class Project(Timestamps, Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LEN), unique=True)


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LEN), unique=True)


class ConsumerType(Timestamps, Base):
    __tablename__ = "consumer_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class Consumer(Timestamps, Base):
    __tablename__ = "consumers"
    __table_args__ = (
        CheckConstraint("generation >= 0", name="generation_non_negative"),
        Index("ix_consumers_project_id_user_id", "project_id", "user_id"),
        Index("ix_consumers_consumer_type_id", "consumer_type_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(UUID_LEN), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    consumer_type_id: Mapped[int | None] = mapped_column(ForeignKey("consumer_types.id"))
    generation: Mapped[int] = mapped_column(Integer, default=0)
