"""What a caller can ask to do. Policy files name these; routes name them through Access aliases."""

RESOURCE_CLASSES_READ = "resource_classes:read"
RESOURCE_CLASSES_WRITE = "resource_classes:write"
TRAITS_READ = "traits:read"
TRAITS_WRITE = "traits:write"
# A provider and what hangs off it: inventories, traits, aggregates, usages.
PROVIDERS_READ = "providers:read"
PROVIDERS_CREATE = "providers:create"
PROVIDERS_WRITE = "providers:write"
PROVIDER_ALLOCATIONS_READ = "provider_allocations:read"
# A consumer's allocations; the owner is the consumer's project.
ALLOCATIONS_READ = "allocations:read"
ALLOCATIONS_WRITE = "allocations:write"
USAGES_READ = "usages:read"
CANDIDATES_READ = "allocation_candidates:read"
RESHAPER = "reshaper:write"
# Operations: the Prometheus metrics.
METRICS_READ = "metrics:read"

ALL = (
    RESOURCE_CLASSES_READ,
    RESOURCE_CLASSES_WRITE,
    TRAITS_READ,
    TRAITS_WRITE,
    PROVIDERS_READ,
    PROVIDERS_CREATE,
    PROVIDERS_WRITE,
    PROVIDER_ALLOCATIONS_READ,
    ALLOCATIONS_READ,
    ALLOCATIONS_WRITE,
    USAGES_READ,
    CANDIDATES_READ,
    RESHAPER,
    METRICS_READ,
)
