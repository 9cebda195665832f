"""GET /allocation_candidates response shapes (documentation; the router builds plain dicts)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ResourceSummary(BaseModel):
    capacity: int
    used: int


class ProviderSummary(BaseModel):
    resources: dict[str, ResourceSummary]
    traits: list[str] | None = Field(default=None, description="From 1.17.")
    parent_provider_uuid: str | None = Field(default=None, description="From 1.29.")
    root_provider_uuid: str | None = Field(default=None, description="From 1.29.")


class ProviderResources(BaseModel):
    resources: dict[str, int]


class AllocationRequest(BaseModel):
    """From 1.12 (before, `allocations` is a list of {resource_provider, resources})."""

    allocations: dict[str, ProviderResources]
    mappings: dict[str, list[str]] | None = Field(
        default=None, description="From 1.34: request group suffix -> provider uuids."
    )


class AllocationCandidates(BaseModel):
    allocation_requests: list[AllocationRequest]
    provider_summaries: dict[str, ProviderSummary]
