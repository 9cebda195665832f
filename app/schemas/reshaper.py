"""POST /reshaper (1.30+): new inventories for some providers and new allocations for some
consumers, applied together. Allocations take the POST /allocations shape of the same
microversion (mappings from 1.34, consumer_type from 1.38) and may be empty."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from app.schemas.allocations import (
    MAX_PROVIDERS_PER_CONSUMER,
    ReshaperAllocationsV130,
    ReshaperAllocationsV134,
    ReshaperAllocationsV138,
    UuidKey,
    canonical_uuid,
)
from app.schemas.common import Strict
from app.schemas.inventories import InventoriesReplace

# A reshape moves inventory within one provider tree: a bounded number of providers.
MAX_PROVIDERS_PER_RESHAPE = MAX_PROVIDERS_PER_CONSUMER

Inventories = Annotated[
    dict[UuidKey, InventoriesReplace], Field(min_length=1, max_length=MAX_PROVIDERS_PER_RESHAPE)
]


class _Reshape(Strict):
    inventories: Inventories

    @field_validator("inventories", mode="after")
    @classmethod
    def _canonical(cls, value: dict[str, InventoriesReplace]) -> dict[str, InventoriesReplace]:
        canonical = {canonical_uuid(key): item for key, item in value.items()}
        if len(canonical) != len(value):
            raise ValueError("the same provider is named twice")
        return canonical


class ReshapeV130(_Reshape):
    allocations: ReshaperAllocationsV130


class ReshapeV134(_Reshape):
    allocations: ReshaperAllocationsV134


class ReshapeV138(_Reshape):
    """POST /reshaper (latest): provider UUID -> its whole new inventory, and consumer UUID ->
    that consumer's complete new allocations."""

    allocations: ReshaperAllocationsV138
