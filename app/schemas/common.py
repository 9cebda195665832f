"""Shared schema pieces: strict models, bounded types, links."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models.base import MAX_INT


class Strict(BaseModel):
    """Placement's schemas forbid additional properties, and so do ours."""

    model_config = ConfigDict(extra="forbid", strict=True)


CUSTOM_NAME_PATTERN = r"^CUSTOM_[A-Z0-9_]+$"
CustomName = Annotated[str, StringConstraints(pattern=CUSTOM_NAME_PATTERN, max_length=255)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=MAX_INT)]
PositiveInt32 = Annotated[int, Field(ge=1, le=MAX_INT)]


class Link(BaseModel):
    rel: str
    href: str


def link(rel: str, href: str) -> dict[str, str]:
    return {"rel": rel, "href": href}
