"""Typed ORM tables. Import from here: every table is registered on Base.metadata."""

from app.models.allocations import Allocation
from app.models.base import Base
from app.models.consumers import Consumer, ConsumerType, Project, User
from app.models.providers import (
    Aggregate,
    Inventory,
    ProviderAggregate,
    ProviderTrait,
    ResourceProvider,
)
from app.models.resource_classes import FIRST_CUSTOM_ID, ResourceClass
from app.models.traits import Trait

__all__ = [
    "FIRST_CUSTOM_ID",
    "Aggregate",
    "Allocation",
    "Base",
    "Consumer",
    "ConsumerType",
    "Inventory",
    "Project",
    "ProviderAggregate",
    "ProviderTrait",
    "ResourceClass",
    "ResourceProvider",
    "Trait",
    "User",
]
