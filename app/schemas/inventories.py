"""Inventory bodies: Placement's bounds and defaults (max_unit defaults to the 32-bit maximum)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from app.models.base import MAX_INT
from app.schemas.common import NonNegativeInt32, PositiveInt32, Strict
from app.schemas.providers import Generation

# The largest value a single-precision SQL float holds, Placement's bound for allocation_ratio.
MAX_ALLOCATION_RATIO = 3.40282e38
# A generous cap on classes per provider: protects the service from absurd bodies.
MAX_CLASSES_PER_PROVIDER = 1000

ClassName = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9_]+$", max_length=255)]
AllocationRatio = Annotated[float, Field(gt=0, le=MAX_ALLOCATION_RATIO)]


class InventoryFields(Strict):
    total: PositiveInt32
    reserved: NonNegativeInt32 = 0
    min_unit: PositiveInt32 = 1
    max_unit: PositiveInt32 = MAX_INT
    step_size: PositiveInt32 = 1
    allocation_ratio: AllocationRatio = 1.0


class InventoryUpdate(InventoryFields):
    """PUT /resource_providers/{uuid}/inventories/{resource_class}."""

    resource_provider_generation: Generation


class InventoryCreate(InventoryFields):
    """POST /resource_providers/{uuid}/inventories."""

    resource_class: ClassName
    resource_provider_generation: Generation | None = None


class InventoriesReplace(Strict):
    """PUT /resource_providers/{uuid}/inventories: the provider's whole inventory."""

    resource_provider_generation: Generation
    inventories: Annotated[
        dict[ClassName, InventoryFields], Field(max_length=MAX_CLASSES_PER_PROVIDER)
    ]


class InventoryOut(BaseModel):
    total: int
    reserved: int
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float


class InventoryWithGeneration(InventoryOut):
    resource_provider_generation: int


class InventoryList(BaseModel):
    inventories: dict[str, InventoryOut]
    resource_provider_generation: int
