"""Allocation bodies, one model per microversion range, and the shapes allot answers with.

- before 1.8: a list of {resource_provider: {uuid}, resources}; no project or user.
- 1.8: project_id and user_id required.
- 1.12: allocations keyed by provider UUID (the shape GET returns).
- 1.13: POST /allocations: many consumers at once; an empty allocations object releases.
- 1.28: consumer_generation required (null for a consumer expected not to exist yet);
  PUT may send empty allocations to release everything.
- 1.34: an optional `mappings` object (accepted, validated, not stored, as in Placement).
- 1.38: consumer_type required.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    RootModel,
    StringConstraints,
    field_validator,
)

from app.models.base import EXTERNAL_ID_LEN, MAX_INT
from app.schemas.common import NonNegativeInt32, PositiveInt32, Strict

# Bounds (DESIGN section 8): the most any one request may name.
MAX_CONSUMERS_PER_REQUEST = 1000
MAX_PROVIDERS_PER_CONSUMER = 100
MAX_CLASSES_PER_PROVIDER = 100
MAX_MAPPING_GROUPS = 100
# Provider entries summed over a POST's or a reshape's consumers: keeps every list a write
# binds (providers to lock, rows to check) well inside what one statement can carry.
MAX_ALLOCATIONS_PER_REQUEST = 10_000

# Placement's own key pattern for provider and consumer UUIDs in bodies.
UUID_KEY_PATTERN = r"^[0-9a-fA-F-]{36}$"
NAME_PATTERN = r"^[A-Z0-9_]+$"
GROUP_SUFFIX_PATTERN = r"^([a-zA-Z0-9_-]{1,64})?$"
# Consumers written before 1.8 named no project or user: Placement records this one for both.
INCOMPLETE_CONSUMER_ID = "00000000-0000-0000-0000-000000000000"


def canonical_uuid(value: str) -> str:
    """The dashed lower-case spelling; any other spelling of one UUID is the same UUID."""
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise ValueError("not a UUID") from None


def _canonical_keys(value: dict[str, Any]) -> dict[str, Any]:
    canonical = {canonical_uuid(key): item for key, item in value.items()}
    if len(canonical) != len(value):
        # Two spellings of one UUID: which one did the caller mean?
        raise ValueError("the same UUID is named twice")
    return canonical


UuidKey = Annotated[str, StringConstraints(pattern=UUID_KEY_PATTERN)]
Uuid = Annotated[str, StringConstraints(max_length=36), AfterValidator(canonical_uuid)]
ClassName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=255)]
ConsumerTypeName = Annotated[
    str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=255)
]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_LEN)]
Int32 = Annotated[int, Field(ge=-MAX_INT - 1, le=MAX_INT)]
Resources = Annotated[
    dict[ClassName, PositiveInt32], Field(min_length=1, max_length=MAX_CLASSES_PER_PROVIDER)
]
MappingGroup = Annotated[str, StringConstraints(pattern=GROUP_SUFFIX_PATTERN)]
Mappings = Annotated[
    dict[
        MappingGroup,
        Annotated[list[Uuid], Field(min_length=1, max_length=MAX_PROVIDERS_PER_CONSUMER)],
    ],
    Field(min_length=1, max_length=MAX_MAPPING_GROUPS),
]


# --- PUT /allocations/{consumer_uuid}, list format (before 1.12) ---


class ProviderRef(Strict):
    uuid: Uuid


class ListedAllocation(Strict):
    resource_provider: ProviderRef
    resources: Resources


class AllocationsPutV10(Strict):
    """Before 1.8: no project or user (Placement records its 'incomplete consumer' ids)."""

    allocations: Annotated[
        list[ListedAllocation], Field(min_length=1, max_length=MAX_PROVIDERS_PER_CONSUMER)
    ]

    @field_validator("allocations")
    @classmethod
    def _one_entry_per_provider(cls, value: list[ListedAllocation]) -> list[ListedAllocation]:
        uuids = [item.resource_provider.uuid for item in value]
        if len(set(uuids)) != len(uuids):
            raise ValueError("a resource provider is listed twice")
        return value

    def by_provider(self) -> dict[str, dict[str, int]]:
        return {a.resource_provider.uuid: dict(a.resources) for a in self.allocations}


class AllocationsPutV18(AllocationsPutV10):
    project_id: ExternalId
    user_id: ExternalId


# --- dict format (1.12 on), shared by PUT, POST and the reshaper ---


class ProviderAllocation(Strict):
    # GET shows the provider generation; a client may send it back. It is ignored, as in Placement.
    generation: NonNegativeInt32 = 0
    resources: Resources


def _allocations_field(min_length: int) -> Any:
    return Field(min_length=min_length, max_length=MAX_PROVIDERS_PER_CONSUMER)


class _ByProvider(Strict):
    def by_provider(self) -> dict[str, dict[str, int]]:
        allocations: dict[str, ProviderAllocation] = getattr(self, "allocations", {})
        return {uuid: dict(a.resources) for uuid, a in allocations.items()}

    @field_validator("allocations", mode="after", check_fields=False)
    @classmethod
    def _canonical(cls, value: dict[str, ProviderAllocation]) -> dict[str, ProviderAllocation]:
        return _canonical_keys(value)


class AllocationsPutV112(_ByProvider):
    allocations: Annotated[dict[UuidKey, ProviderAllocation], _allocations_field(1)]
    project_id: ExternalId
    user_id: ExternalId


class ConsumerAllocationsV113(_ByProvider):
    """One consumer in POST /allocations (1.13): an empty allocations object releases it."""

    allocations: Annotated[dict[UuidKey, ProviderAllocation], _allocations_field(0)]
    project_id: ExternalId
    user_id: ExternalId


class ConsumerAllocationsV128(ConsumerAllocationsV113):
    # Required, and null when the caller expects the consumer not to exist yet.
    consumer_generation: Int32 | None


class ConsumerAllocationsV134(ConsumerAllocationsV128):
    # Accepted so a candidate's answer can be sent back as is; not stored (as in Placement).
    mappings: Mappings = Field(default_factory=dict)


class ConsumerAllocationsV138(ConsumerAllocationsV134):
    consumer_type: ConsumerTypeName


# PUT /allocations/{consumer_uuid} from 1.28 has exactly the shape of one POST entry.
AllocationsPutV128 = ConsumerAllocationsV128
AllocationsPutV134 = ConsumerAllocationsV134
AllocationsPutV138 = ConsumerAllocationsV138

ConsumerEntry = (
    ConsumerAllocationsV113
    | ConsumerAllocationsV128
    | ConsumerAllocationsV134
    | ConsumerAllocationsV138
)


def _consumers_field(min_length: int) -> Any:
    return Field(min_length=min_length, max_length=MAX_CONSUMERS_PER_REQUEST)


class _ByConsumer(RootModel[Any]):
    @field_validator("root", mode="after")
    @classmethod
    def _canonical(cls, value: dict[str, Any]) -> dict[str, Any]:
        entries = sum(len(consumer.allocations) for consumer in value.values())
        if entries > MAX_ALLOCATIONS_PER_REQUEST:
            raise ValueError(f"{entries} provider entries, more than {MAX_ALLOCATIONS_PER_REQUEST}")
        return _canonical_keys(value)


class AllocationsPostV113(_ByConsumer):
    root: Annotated[dict[UuidKey, ConsumerAllocationsV113], _consumers_field(1)]


class AllocationsPostV128(_ByConsumer):
    root: Annotated[dict[UuidKey, ConsumerAllocationsV128], _consumers_field(1)]


class AllocationsPostV134(_ByConsumer):
    root: Annotated[dict[UuidKey, ConsumerAllocationsV134], _consumers_field(1)]


class AllocationsPostV138(_ByConsumer):
    """POST /allocations (latest): consumer UUID -> that consumer's complete allocations."""

    root: Annotated[dict[UuidKey, ConsumerAllocationsV138], _consumers_field(1)]


# Reshaper allocations: like POST from 1.28, and may be empty.
class ReshaperAllocationsV130(_ByConsumer):
    root: Annotated[dict[UuidKey, ConsumerAllocationsV128], _consumers_field(0)]


class ReshaperAllocationsV134(_ByConsumer):
    root: Annotated[dict[UuidKey, ConsumerAllocationsV134], _consumers_field(0)]


class ReshaperAllocationsV138(_ByConsumer):
    root: Annotated[dict[UuidKey, ConsumerAllocationsV138], _consumers_field(0)]


# --- responses ---


class ConsumerProviderAllocation(BaseModel):
    generation: int
    resources: dict[str, int]


class ConsumerAllocationsOut(BaseModel):
    """GET /allocations/{consumer_uuid}; the keys after `allocations` appear by microversion."""

    allocations: dict[str, ConsumerProviderAllocation]
    project_id: str | None = Field(None, description="1.12+, when there are allocations")
    user_id: str | None = Field(None, description="1.12+, when there are allocations")
    consumer_generation: int | None = Field(None, description="1.28+, when there are allocations")
    consumer_type: str | None = Field(None, description="1.38+, when there are allocations")


class ProviderConsumerAllocation(BaseModel):
    resources: dict[str, int]
    consumer_generation: int | None = Field(None, description="1.28+")


class ProviderAllocationsOut(BaseModel):
    """GET /resource_providers/{uuid}/allocations."""

    allocations: dict[str, ProviderConsumerAllocation]
    resource_provider_generation: int
