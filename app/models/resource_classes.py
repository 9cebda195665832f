from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamps

# Standard classes keep their index in os-resource-classes as id; custom ones start here.
FIRST_CUSTOM_ID = 10000


class ResourceClass(Timestamps, Base):
    __tablename__ = "resource_classes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255), unique=True)
