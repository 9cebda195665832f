"""Resource provider bodies, per microversion (parent_provider_uuid from 1.14)."""

from __future__ import annotations

import uuid as uuidlib
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from app.models.base import EXTERNAL_ID_LEN, NAME_LEN
from app.schemas.common import Link, NonNegativeInt32, Strict

# The longest spelling of a UUID Python accepts: "urn:uuid:{...}".
_UUID_MAX_INPUT = 45


def canonical_uuid(value: str) -> str:
    """Placement accepts any UUID spelling (no dashes, upper case) and stores the dashed one."""
    if len(value) > _UUID_MAX_INPUT:
        raise ValueError("not a UUID")
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise ValueError("not a UUID") from None


Uuid = Annotated[str, StringConstraints(max_length=_UUID_MAX_INPUT), AfterValidator(canonical_uuid)]
# A provider generation a client sends: what the column can hold (anything else could never match).
Generation = NonNegativeInt32
ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=NAME_LEN)]
OwnerProject = Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_LEN)]


class ProviderCreate10(Strict):
    name: ProviderName
    uuid: Uuid | None = None
    # allot's extension (DESIGN section 6): the owning project; absent means shared.
    owner_project_id: OwnerProject | None = None


class ProviderCreate(ProviderCreate10):
    """POST /resource_providers from 1.14."""

    parent_provider_uuid: Uuid | None = None


class ProviderUpdate10(Strict):
    name: ProviderName
    owner_project_id: OwnerProject | None = None


class ProviderUpdate(ProviderUpdate10):
    """PUT /resource_providers/{uuid} from 1.14 (re-parenting from 1.37)."""

    parent_provider_uuid: Uuid | None = None


class ProviderOut(BaseModel):
    uuid: str
    name: str
    generation: int
    links: list[Link]
    parent_provider_uuid: str | None = Field(None, description="1.14+")
    root_provider_uuid: str | None = Field(None, description="1.14+")
    owner_project_id: str | None = Field(None, description="allot extension; only when set")


class ProviderList(BaseModel):
    resource_providers: list[ProviderOut]


class ProviderUsages(BaseModel):
    resource_provider_generation: int
    usages: dict[str, int]
