from __future__ import annotations

from pydantic import BaseModel

from app.schemas.common import CustomName, Link, Strict


class ResourceClassCreate(Strict):
    name: CustomName


class ResourceClassRename(Strict):
    """PUT /resource_classes/{name} before 1.7: rename a custom class."""

    name: CustomName


class ResourceClassOut(BaseModel):
    name: str
    links: list[Link]


class ResourceClassList(BaseModel):
    resource_classes: list[ResourceClassOut]
