from __future__ import annotations

from pydantic import BaseModel


class TraitList(BaseModel):
    traits: list[str]
