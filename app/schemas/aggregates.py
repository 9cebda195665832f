"""A provider's aggregates: a bare list before 1.19, with the provider's generation from 1.19."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel

from app.schemas.common import Strict
from app.schemas.providers import Generation, Uuid

MAX_AGGREGATES_PER_PROVIDER = 1000
AggregateUuids = Annotated[list[Uuid], Field(max_length=MAX_AGGREGATES_PER_PROVIDER)]


class AggregatesUpdate10(RootModel[AggregateUuids]):
    """PUT /resource_providers/{uuid}/aggregates from 1.1 to 1.18: a list of UUIDs."""

    model_config = ConfigDict(strict=True)


class AggregatesUpdate(Strict):
    """PUT /resource_providers/{uuid}/aggregates from 1.19."""

    aggregates: AggregateUuids
    resource_provider_generation: Generation


class ProviderAggregates(BaseModel):
    aggregates: list[str]
    resource_provider_generation: int | None = Field(None, description="1.19+")
