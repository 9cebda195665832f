"""A provider's traits: PUT replaces the whole set, guarded by the provider's generation."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from app.schemas.common import Strict
from app.schemas.providers import Generation

# Bounded like the column that stores a trait's name.
TraitName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MAX_TRAITS_PER_PROVIDER = 1000


class ProviderTraitsUpdate(Strict):
    traits: Annotated[list[TraitName], Field(max_length=MAX_TRAITS_PER_PROVIDER)]
    resource_provider_generation: Generation


class ProviderTraits(BaseModel):
    traits: list[str]
    resource_provider_generation: int
