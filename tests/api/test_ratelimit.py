"""Rate limits: per subject, and per client address for anonymous and failed-auth calls.

In process memory and in Redis (the one at 127.0.0.1:6379); each run uses fresh subjects and
addresses, so counts left in Redis by another run never meet this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.main import create_app
from app.settings import ConfigurationError
from tests.conftest import AppFactory, auth, mint
from tests.conftest import test_settings as settings_for

REDIS = "redis://127.0.0.1:6379/0"
LIMITS = {"rate_limit": "3/minute", "rate_limit_anon": "2/minute"}


def _client(application: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=(address, 40000))
    return httpx.AsyncClient(
        transport=transport,
        base_url="http://allot.test",
        headers={"openstack-api-version": "placement latest"},
    )


def _address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS)
    yield client
    await client.aclose()


async def _counts_run(redis: Redis) -> int:
    """How many counts Redis has run for rate limiters (EVALSHA calls, server-wide)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@contextlib.asynccontextmanager
async def _counted_in_redis(app_factory: AppFactory, user: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose limits live in Redis, its counting script already loaded."""
    async with (
        app_factory(rate_limit_storage=REDIS, rate_limit="1000/minute") as limited,
        _client(limited, _address()) as c,
    ):
        assert (await c.get("/traits", headers=auth(user))).status_code == 200
        yield c


def _assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["errors"][0]["code"] == "allot.rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60


@pytest.mark.parametrize("storage", ["memory://", REDIS])
async def test_each_subject_has_its_own_budget(app_factory: AppFactory, storage: str) -> None:
    alice = mint(roles=["reader"], project="p", user=f"alice-{uuid.uuid4()}")
    bob = mint(roles=["reader"], project="p", user=f"bob-{uuid.uuid4()}")
    async with (
        app_factory(rate_limit_storage=storage, **LIMITS) as limited,
        _client(limited, _address()) as c,
    ):
        for _ in range(3):
            assert (await c.get("/traits", headers=auth(alice))).status_code == 200
        _assert_429(await c.get("/traits", headers=auth(alice)))
        # Same address, another subject: its own budget.
        assert (await c.get("/traits", headers=auth(bob))).status_code == 200


@pytest.mark.parametrize("storage", ["memory://", REDIS])
async def test_anonymous_and_failed_auth_are_limited_per_address(
    app_factory: AppFactory, storage: str
) -> None:
    stranger, neighbour = _address(), _address()
    async with app_factory(rate_limit_storage=storage, **LIMITS) as limited:
        async with _client(limited, stranger) as c:
            assert (await c.get("/traits")).status_code == 401
            bad = await c.get("/traits", headers=auth("forged.token.value"))
            assert bad.status_code == 401
            _assert_429(await c.get("/traits"))
            # Public routes are never limited.
            assert (await c.get("/")).status_code == 200
        async with _client(limited, neighbour) as c:
            assert (await c.get("/traits")).status_code == 401


async def test_redis_counts_are_shared_between_processes(app_factory: AppFactory) -> None:
    # Two apps stand for two server processes behind one load balancer.
    user = mint(roles=["reader"], project="p", user=f"carol-{uuid.uuid4()}")
    async with (
        app_factory(rate_limit_storage=REDIS, **LIMITS) as one,
        app_factory(rate_limit_storage=REDIS, **LIMITS) as two,
        _client(one, _address()) as c1,
        _client(two, _address()) as c2,
    ):
        assert (await c1.get("/traits", headers=auth(user))).status_code == 200
        assert (await c2.get("/traits", headers=auth(user))).status_code == 200
        assert (await c1.get("/traits", headers=auth(user))).status_code == 200
        _assert_429(await c2.get("/traits", headers=auth(user)))


@pytest.mark.parametrize("storage", ["memory://", REDIS])
async def test_requests_arriving_together_each_get_their_own_answer(
    app_factory: AppFactory, storage: str
) -> None:
    """With Redis, hits arriving together are counted in one call; a batch that does not fit
    whole is not refused whole: exactly the budget's worth of requests gets through."""
    user = mint(roles=["reader"], project="p", user=f"erin-{uuid.uuid4()}")
    async with (
        app_factory(rate_limit_storage=storage, rate_limit="5/minute") as limited,
        _client(limited, _address()) as c,
    ):
        answers = await asyncio.gather(*(c.get("/traits", headers=auth(user)) for _ in range(12)))
        assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 7
        _assert_429(await c.get("/traits", headers=auth(user)))


async def test_requests_arriving_together_take_fewer_redis_calls_than_requests(
    app_factory: AppFactory, redis: Redis
) -> None:
    user = mint(roles=["reader"], project="p", user=f"fred-{uuid.uuid4()}")
    async with _counted_in_redis(app_factory, user) as c:
        before = await _counts_run(redis)
        answers = await asyncio.gather(*(c.get("/traits", headers=auth(user)) for _ in range(20)))
        assert all(a.status_code == 200 for a in answers)
        assert await _counts_run(redis) - before < 20


async def test_requests_arriving_while_a_count_is_in_flight_share_the_next_call(
    app_factory: AppFactory, redis: Redis
) -> None:
    """One Redis call in flight per limit and caller: the requests that arrive meanwhile wait
    for it, then are counted together in one call (Redis holds the first with CLIENT PAUSE)."""
    user = mint(roles=["reader"], project="p", user=f"gail-{uuid.uuid4()}")
    async with _counted_in_redis(app_factory, user) as c:
        before = await _counts_run(redis)
        await redis.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
        try:
            requests = [asyncio.create_task(c.get("/traits", headers=auth(user)))]
            await asyncio.sleep(0.05)  # the first one's count is sent, and held
            for _ in range(9):
                requests.append(asyncio.create_task(c.get("/traits", headers=auth(user))))
                await asyncio.sleep(0.01)
            answers = await asyncio.gather(*requests)
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
        assert all(a.status_code == 200 for a in answers)
        # The held call, then one for everything that waited (10 calls without coalescing).
        assert await _counts_run(redis) - before <= 2


async def test_off_disables_the_limit(app_factory: AppFactory) -> None:
    user = mint(roles=["reader"], project="p", user=f"dave-{uuid.uuid4()}")
    async with app_factory(rate_limit="off") as unlimited, _client(unlimited, _address()) as c:
        for _ in range(10):
            assert (await c.get("/traits", headers=auth(user))).status_code == 200


async def test_unreachable_redis_stops_the_service_at_start(database_url: str) -> None:
    application = create_app(
        settings_for(database_url, rate_limit_storage="redis://127.0.0.1:8531/0", **LIMITS)
    )
    with pytest.raises(ConfigurationError, match="ALLOT_RATE_LIMIT_STORAGE"):
        async with application.router.lifespan_context(application):
            pass


@pytest.mark.parametrize(
    ("setting", "value"),
    [("rate_limit", "lots"), ("rate_limit_anon", "5 per fortnight"), ("rate_limit_storage", "x")],
)
def test_bad_rate_limit_settings_are_refused(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"ALLOT_{setting.upper()} "):
        create_app(settings_for("sqlite+aiosqlite://", **{setting: value}))
