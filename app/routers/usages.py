"""GET /usages (1.9+): a project's (or a project's user's) total usage, by class.

From 1.38 grouped by consumer type, each group with its consumer count.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from app.authz import actions
from app.authz.dependencies import UsagesRead
from app.dependencies import SessionDep, Version, since
from app.httpcache import set_last_modified
from app.models.base import EXTERNAL_ID_LEN
from app.query import Query as QueryString
from app.services import usages as service
from app.timeutil import now

router = APIRouter(tags=["usages"])

USAGES_SINCE = 9
CONSUMER_TYPE_SINCE = 38
_TYPE_FILTER = re.compile(r"^([A-Z0-9_]+|all|unknown)$")


class UsagesOut(BaseModel):
    usages: dict[str, int] | dict[str, dict[str, int]]


@router.get("/usages", response_model=UsagesOut, dependencies=[since(USAGES_SINCE)])
async def total_usages(
    request: Request,
    response: Response,
    version: Version,
    session: SessionDep,
    access: UsagesRead,
    project_id: Annotated[str, Query(min_length=1, max_length=EXTERNAL_ID_LEN)],
    user_id: Annotated[str | None, Query(min_length=1, max_length=EXTERNAL_ID_LEN)] = None,
    consumer_type: Annotated[
        str | None, Query(pattern=_TYPE_FILTER.pattern, max_length=255, description="1.38+")
    ] = None,
) -> dict[str, Any]:
    # FastAPI has checked lengths and the pattern; this refuses unknown and repeated keys.
    with_types = version.at_least(CONSUMER_TYPE_SINCE)
    QueryString(request, {"project_id", "user_id"} | ({"consumer_type"} if with_types else set()))
    access.require(actions.USAGES_READ, project_id, f"usages of {project_id}")
    usages: Any
    if with_types:
        usages = await service.by_consumer_type(session, project_id, user_id, consumer_type)
    else:
        usages = await service.totals(session, project_id, user_id)
    # "What is the usage now?": Placement answers with the time of the question.
    set_last_modified(response, version, now())
    return {"usages": usages}
