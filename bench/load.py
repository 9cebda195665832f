"""An async load tool for any Placement-API server: allot (bearer token) or Placement (noauth).

Scenarios, each bounded in time and requests, loopback only:

- setup: create providers with inventories (providers/s);
- claim: C concurrent clients each PUT /allocations/{new consumer} on a random provider
  (accepted claims/s, p50/p95/p99, 409s), then the over-allocation check;
- contention: every client claims on the same two small providers until both are full;
- churn: move (GET + PUT with the consumer generation) and delete existing consumers;
- candidates: see bench/candidates.py (its own dataset and CLI; the runner calls it).

The over-allocation check reads every provider's inventories and usages back through the API
and compares them with what the clients were told was accepted.

    .venv/bin/python -m bench.load --base-url http://127.0.0.1:8601 --token "$TOKEN" \\
        --scenario setup,claim,contention,churn --clients 32 --providers 100 --seconds 10
    .venv/bin/python -m bench.load --base-url http://127.0.0.1:8780 --noauth ...   # Placement
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import httpx
import uvloop

VERSION = "placement 1.39"
PROJECT = "0b1e5b7e-6c55-4d7e-9c8a-2f1d3c4b5a60"
USER = "5b0c3f1e-7a2d-4c1e-8f00-9e8d7c6b5a41"
CLAIM = {"VCPU": 1, "MEMORY_MB": 64}
# Big enough that the claim and churn scenarios never run a provider out of room.
INVENTORY = {"VCPU": 1_000_000, "MEMORY_MB": 64_000_000}
CAPACITY_CODE = "placement.undefined_code"  # Placement's code for "does not fit"
CONFLICT_CODE = "placement.concurrent_update"


@dataclass
class Target:
    name: str
    base_url: str
    headers: dict[str, str]
    # Tests pass the app's ASGI transport; a real run goes over loopback TCP.
    transport: httpx.AsyncBaseTransport | None = None

    @classmethod
    def allot(cls, base_url: str, token: str, name: str = "allot") -> Target:
        return cls(name, base_url, {"authorization": f"Bearer {token}"})

    @classmethod
    def placement(cls, base_url: str, name: str = "placement") -> Target:
        # Placement's noauth2 middleware: this header makes the caller an admin.
        return cls(name, base_url, {"x-auth-token": "admin"})

    def client(self) -> Client:
        assert self.base_url.startswith(("http://127.", "http://localhost")), "loopback only"
        return Client(self)


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# What a request that never got an answer raises, whichever client sent it.
TRANSPORT_ERRORS = (httpx.TransportError, OSError, httptools.HttpParserError, TimeoutError)
REQUEST_TIMEOUT_S = 120.0


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time; answers parsed by httptools (llhttp).

    The load generator shares the servers' two cores, so its CPU per request is CPU a server
    does not get: this costs about 0.09 ms per claim, where aiohttp's client cost 0.23 (and
    httpx's 1.4). A server that closes the connection after its answer (Placement under
    gunicorn's sync workers does) gets a new one for the next request.
    """

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.answer: asyncio.Future[Answer] | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport, self.open = cast(asyncio.Transport, transport), True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        answer = Answer(self.parser.get_status_code(), b"".join(self.body))
        self.body = []
        if not self.parser.should_keep_alive():
            self.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        self.close()
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    async def send(self, request: bytes) -> Answer:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answer


class Client:
    """A client's connections to a target: HTTP/1.1 over loopback TCP (`_Connection`, as many
    as it has requests in flight), or httpx on an in-process ASGI transport (tests)."""

    def __init__(self, target: Target) -> None:
        headers = {
            **target.headers,
            "openstack-api-version": VERSION,
            "content-type": "application/json",
        }
        self._httpx: httpx.AsyncClient | None = None
        if target.transport is not None:
            self._httpx = httpx.AsyncClient(
                base_url=target.base_url, headers=headers, transport=target.transport
            )
        url = httpx.URL(target.base_url)
        self._address = (url.host, url.port or 80)
        fixed = {"host": f"{url.host}:{url.port or 80}", **headers}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []
        self._all: list[_Connection] = []

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._httpx is not None:
            await self._httpx.aclose()
        for connection in self._all:
            connection.close()

    async def request(self, method: str, path: str, body: Any = None) -> Answer:
        data = b"" if body is None else json.dumps(body).encode()
        if self._httpx is not None:
            response = await self._httpx.request(method, path, content=data or None)
            return Answer(response.status_code, response.content)
        request = (
            f"{method} {path} HTTP/1.1\r\n{self._head}content-length: {len(data)}\r\n\r\n"
        ).encode() + data
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            connection = await self._connection()
            try:
                answer = await connection.send(request)
            except BaseException:
                connection.close()  # an answer may still come: never reuse this connection
                raise
        if connection.open:
            self._idle.append(connection)
        return answer

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.open:
                return connection
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, *self._address
        )
        self._all = [c for c in self._all if c.open] + [connection]
        return connection

    def get(self, path: str) -> Awaitable[Answer]:
        return self.request("GET", path)

    def put(self, path: str, body: Any) -> Awaitable[Answer]:
        return self.request("PUT", path, body)

    def post(self, path: str, body: Any) -> Awaitable[Answer]:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Awaitable[Answer]:
        return self.request("DELETE", path)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Tally:
    """What one scenario saw: latencies, statuses, error codes."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    transport_errors: int = 0
    elapsed_s: float = 0.0
    client_cpu_share: float = 0.0

    async def call(self, request: Awaitable[Answer]) -> Answer | None:
        """Await one request (a coroutine not yet started) and record it."""
        started = time.perf_counter()
        try:
            response = await request
        except TRANSPORT_ERRORS:
            self.transport_errors += 1
            return None
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[response.status_code] += 1
        if response.status_code >= 400:
            self.codes[_error_code(response)] += 1
        return response

    def summary(self, accepted_status: int) -> dict[str, Any]:
        accepted = self.statuses[accepted_status]
        return {
            "requests": sum(self.statuses.values()),
            "accepted": accepted,
            "accepted_per_s": round(accepted / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p95_ms": round(percentile(self.latencies_ms, 95), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "status_409": self.statuses[409],
            "status_5xx": sum(n for s, n in self.statuses.items() if s >= 500),
            "transport_errors": self.transport_errors,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "codes": dict(self.codes),
            "elapsed_s": round(self.elapsed_s, 2),
            "client_cpu_share": round(self.client_cpu_share, 2),
        }


def _error_code(response: Answer) -> str:
    try:
        return str(response.json()["errors"][0].get("code") or "none")
    except (ValueError, KeyError, IndexError, TypeError):
        return "unparsed"


def claim_body(allocations: dict[str, dict[str, int]], generation: int | None) -> dict[str, Any]:
    return {
        "allocations": {rp: {"resources": res} for rp, res in allocations.items()},
        "consumer_generation": generation,
        "project_id": PROJECT,
        "user_id": USER,
        "consumer_type": "INSTANCE",
    }


@dataclass
class Ledger:
    """What the clients were told: accepted consumers and where their claims are."""

    consumers: dict[str, str] = field(default_factory=dict)  # consumer -> provider

    def per_provider(self) -> Counter[str]:
        return Counter(self.consumers.values())


async def _run_clients(
    target: Target,
    clients: int,
    worker: Callable[[Client, int], Awaitable[None]],
    tally: Tally,
) -> None:
    """Run `clients` workers at once, each with its own connection, as independent schedulers
    would. The clients are made before the clock starts, so that no claim waits on one."""
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(target.client()) for _ in range(clients)]
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(http, n) for n, http in enumerate(https)))
        tally.elapsed_s = time.perf_counter() - started
        # The load generator shares the machine: how much of a core it used itself.
        tally.client_cpu_share = (time.process_time() - cpu) / max(tally.elapsed_s, 1e-9)


# --- scenarios ------------------------------------------------------------------------------


async def setup(
    target: Target, providers: int, clients: int, prefix: str, inventory: dict[str, int] = INVENTORY
) -> tuple[list[str], dict[str, Any]]:
    """Create `providers` providers with inventories; providers/s."""
    uuids = [str(uuid.uuid4()) for _ in range(providers)]
    queue = list(enumerate(uuids))
    tally = Tally()

    async def worker(http: Client, _: int) -> None:
        while queue:
            i, rp = queue.pop()
            body = {"name": f"{prefix}-{i}", "uuid": rp}
            created = await tally.call(http.post("/resource_providers", body))
            if created is None or created.status_code != 200:
                raise RuntimeError(f"{target.name}: cannot create a provider: {created}")
            inventories = {
                "resource_provider_generation": 0,
                "inventories": {rc: {"total": total} for rc, total in inventory.items()},
            }
            await tally.call(http.put(f"/resource_providers/{rp}/inventories", inventories))

    await _run_clients(target, clients, worker, tally)
    summary = tally.summary(200)
    summary["providers"] = providers
    summary["providers_per_s"] = round(providers / tally.elapsed_s, 1)
    return uuids, summary


async def claim(
    target: Target,
    providers: list[str],
    clients: int,
    seconds: float,
    ledger: Ledger,
    max_claims: int = 1_000_000,
) -> dict[str, Any]:
    """New consumers claim on random providers for `seconds`: accepted claims/s, latency."""
    tally = Tally()
    deadline = time.perf_counter() + seconds
    sent = 0

    async def worker(http: Client, _: int) -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent < max_claims:
            sent += 1
            consumer, rp = str(uuid.uuid4()), random.choice(providers)
            body = claim_body({rp: CLAIM}, None)
            response = await tally.call(http.put(f"/allocations/{consumer}", body))
            if response is not None and response.status_code == 204:
                ledger.consumers[consumer] = rp

    await _run_clients(target, clients, worker, tally)
    summary = tally.summary(204)
    summary.update(clients=clients, providers=len(providers))
    return summary


async def contention(
    target: Target, clients: int, capacity: int, prefix: str, attempts: int = 200
) -> dict[str, Any]:
    """Every client claims on two small providers until the service says both are full."""
    small, _ = await setup(target, 2, 2, prefix, {"VCPU": capacity, "MEMORY_MB": 64 * capacity})
    ledger = Ledger()
    tally = Tally()
    full: set[str] = set()

    async def worker(http: Client, n: int) -> None:
        for attempt in range(attempts):
            if len(full) == 2:
                return
            rp = small[(n + attempt) % 2]
            if rp in full:
                rp = small[(n + attempt + 1) % 2]
            consumer = str(uuid.uuid4())
            body = claim_body({rp: CLAIM}, None)
            response = await tally.call(http.put(f"/allocations/{consumer}", body))
            if response is None:
                continue
            if response.status_code == 204:
                ledger.consumers[consumer] = rp
            elif _error_code(response) == CAPACITY_CODE:
                full.add(rp)

    await _run_clients(target, clients, worker, tally)
    summary = tally.summary(204)
    summary.update(clients=clients, capacity=2 * capacity, filled=len(ledger.consumers))
    summary["check"] = await check(target, small, ledger)
    return summary


async def churn(
    target: Target, providers: list[str], clients: int, seconds: float, ledger: Ledger
) -> dict[str, Any]:
    """Half the operations move a consumer to another provider, half delete one."""
    tally = Tally()
    moves = deletes = 0
    deadline = time.perf_counter() + seconds
    pool = list(ledger.consumers)
    random.shuffle(pool)

    async def worker(http: Client, _: int) -> None:
        nonlocal moves, deletes
        while pool and time.perf_counter() < deadline:
            consumer = pool.pop()
            if len(pool) % 2:
                response = await tally.call(http.delete(f"/allocations/{consumer}"))
                if response is not None and response.status_code == 204:
                    del ledger.consumers[consumer]
                    deletes += 1
                continue
            current = await tally.call(http.get(f"/allocations/{consumer}"))
            if current is None or current.status_code != 200:
                continue
            generation = current.json()["consumer_generation"]
            destination = random.choice(
                [p for p in providers[:50] if p != ledger.consumers[consumer]]
            )
            body = claim_body({destination: CLAIM}, generation)
            response = await tally.call(http.put(f"/allocations/{consumer}", body))
            if response is not None and response.status_code == 204:
                ledger.consumers[consumer] = destination
                moves += 1

    await _run_clients(target, clients, worker, tally)
    summary = tally.summary(204)
    summary["accepted"] = moves + deletes
    summary["accepted_per_s"] = round((moves + deletes) / tally.elapsed_s, 1)
    summary.update(clients=clients, moves=moves, deletes=deletes)
    return summary


async def check(target: Target, providers: list[str], ledger: Ledger) -> dict[str, Any]:
    """Usage never above capacity, and equal to what the clients were told was accepted."""
    expected = ledger.per_provider()
    over = mismatched = 0
    queue = list(providers)
    async with target.client() as http:

        async def worker(_: int) -> None:
            nonlocal over, mismatched
            while queue:
                rp = queue.pop()
                inventories = (await http.get(f"/resource_providers/{rp}/inventories")).json()
                usages = (await http.get(f"/resource_providers/{rp}/usages")).json()["usages"]
                for rc, inv in inventories["inventories"].items():
                    capacity = (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]
                    if usages.get(rc, 0) > capacity:
                        over += 1
                if usages.get("VCPU", 0) != expected[rp] * CLAIM["VCPU"]:
                    mismatched += 1

        await asyncio.gather(*(worker(n) for n in range(8)))
    return {"providers": len(providers), "over_allocated": over, "usage_mismatches": mismatched}


# --- command line ---------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    if args.noauth:
        target = Target.placement(args.base_url, args.name or "placement")
    else:
        target = Target.allot(args.base_url, args.token, args.name or "allot")
    scenarios = args.scenario.split(",")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"target": target.name}
    providers, results["setup"] = await setup(target, args.providers, args.clients, prefix)
    ledger = Ledger()
    if "claim" in scenarios or "churn" in scenarios:
        results["claim"] = await claim(target, providers, args.clients, args.seconds, ledger)
        results["claim"]["check"] = await check(target, providers, ledger)
    if "contention" in scenarios:
        results["contention"] = await contention(target, args.clients, 50, f"{prefix}-small")
    if "churn" in scenarios:
        results["churn"] = await churn(target, providers, args.clients, args.seconds, ledger)
        results["churn"]["check"] = await check(target, providers, ledger)
    print(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True)
    auth = parser.add_mutually_exclusive_group(required=True)
    auth.add_argument("--token", help="bearer token (allot)")
    auth.add_argument("--noauth", action="store_true", help="x-auth-token: admin (Placement)")
    parser.add_argument("--name")
    parser.add_argument("--scenario", default="setup,claim,contention,churn")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--providers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    uvloop.run(_main(parser.parse_args()))  # the generator's own loop costs it less CPU


if __name__ == "__main__":
    main()
