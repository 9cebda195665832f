"""Version discovery and microversion negotiation."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import LOG_LINES, AppFactory, make_client


async def test_root_advertises_versions_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"authorization": "", "openstack-api-version": ""})
    assert response.status_code == 200
    version = response.json()["versions"][0]
    assert version["min_version"] == "1.0"
    assert version["max_version"] == "1.39"
    assert version["status"] == "CURRENT"
    assert response.headers["openstack-api-version"] == "placement 1.0"
    assert "openstack-api-version" in response.headers["vary"]


async def test_latest_means_1_39(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"openstack-api-version": "placement latest"})
    assert response.headers["openstack-api-version"] == "placement 1.39"


@pytest.mark.parametrize("header", ["placement 0.5", "placement 1.40", "placement 2.0"])
async def test_out_of_range_version_is_406_with_bounds(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get("/", headers={"openstack-api-version": header})
    assert response.status_code == 406
    error = response.json()["errors"][0]
    assert (error["min_version"], error["max_version"]) == ("1.0", "1.39")


@pytest.mark.parametrize("header", ["placement pony.horse", "placement 1.2.3", "placement"])
async def test_malformed_version_is_400(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/", headers={"openstack-api-version": header})
    assert response.status_code == 400
    assert response.json()["errors"][0]["title"] == "Bad Request"


async def test_other_services_in_the_header_are_ignored(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/", headers={"openstack-api-version": "compute 2.90, placement 1.20"}
    )
    assert response.headers["openstack-api-version"] == "placement 1.20"


async def test_cache_headers_from_1_15_only(client: httpx.AsyncClient) -> None:
    new = await client.get("/", headers={"openstack-api-version": "placement 1.15"})
    assert new.headers["cache-control"] == "no-cache"
    assert new.headers["last-modified"].endswith("GMT")
    old = await client.get("/", headers={"openstack-api-version": "placement 1.14"})
    assert "cache-control" not in old.headers and "last-modified" not in old.headers


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["errors"][0]["code"] == "placement.undefined_code"


async def test_unknown_path_is_404_envelope_with_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/barnabas")
    assert response.status_code == 404
    error = response.json()["errors"][0]
    assert error["request_id"].startswith("req-")
    assert response.headers["x-request-id"] == error["request_id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_every_answer_names_its_request_id_as_openstack_clients_read_it(
    client: httpx.AsyncClient,
) -> None:
    # keystoneauth (and so Nova) logs x-openstack-request-id; Placement's own name is without x-.
    for response in (await client.get("/resource_classes"), await client.get("/barnabas")):
        request_id = response.headers["openstack-request-id"]
        assert request_id.startswith("req-")
        assert response.headers["x-openstack-request-id"] == request_id


async def test_a_callers_global_request_id_is_logged_beside_ours(
    client: httpx.AsyncClient,
) -> None:
    global_id = "req-1a2b3c4d-0000-4000-8000-0123456789ab"
    first = len(LOG_LINES)
    ours = await client.get("/resource_classes", headers={"x-openstack-request-id": global_id})
    ignored = await client.get("/resource_classes", headers={"x-openstack-request-id": "made-up"})
    lines = [json.loads(line) for line in LOG_LINES[first:] if '"allot.access"' in line]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id[ours.headers["openstack-request-id"]]["global_request_id"] == global_id
    assert "global_request_id" not in by_id[ignored.headers["openstack-request-id"]]
    # Our own id stays ours: a caller cannot choose it.
    assert ours.headers["openstack-request-id"] != global_id


async def test_accept_without_json_is_406(client: httpx.AsyncClient) -> None:
    response = await client.get("/resource_classes", headers={"accept": "text/plain"})
    assert response.status_code == 406
    assert response.json()["errors"][0]["code"] == "placement.undefined_code"


async def test_unknown_path_is_404_whatever_the_client_accepts(client: httpx.AsyncClient) -> None:
    response = await client.get("/nothing-here", headers={"accept": "text/plain"})
    assert response.status_code == 404


async def test_a_browser_gets_errors_as_a_generic_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/nothing-here", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "404 Not Found" in response.text and "nothing-here" not in response.text


async def test_allow_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    for method in ("DELETE", "OPTIONS", "PATCH"):
        response = await client.request(method, "/resource_classes")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
    one = await client.post("/resource_classes/CUSTOM_X")
    assert one.headers["allow"] == "GET, PUT, DELETE"


async def test_cors_only_for_configured_origins(app_factory: AppFactory) -> None:
    async with (
        app_factory(cors_origins="http://ui.example.com") as cors_app,
        make_client(cors_app, {}) as anyone,
    ):
        preflight = {"access-control-request-method": "GET"}
        asked = await anyone.options(
            "/",
            headers={
                **preflight,
                "origin": "http://ui.example.com",
                "access-control-request-headers": "openstack-api-version, x-evil",
            },
        )
        assert asked.status_code == 200
        assert asked.headers["access-control-allow-origin"] == "http://ui.example.com"
        # Only what was asked for and is allowed is named back.
        assert asked.headers["access-control-allow-headers"] == "openstack-api-version"
        stranger = await anyone.options("/", headers={**preflight, "origin": "http://evil.test"})
        assert stranger.status_code == 200
        assert "access-control-allow-origin" not in stranger.headers
        simple = await anyone.get("/", headers={"origin": "http://ui.example.com"})
        assert simple.headers["access-control-allow-origin"] == "http://ui.example.com"
        other = await anyone.get("/", headers={"origin": "http://evil.test"})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


async def test_no_cors_unless_configured(client: httpx.AsyncClient) -> None:
    headers = {"origin": "http://ui.example.com", "access-control-request-method": "GET"}
    assert (await client.options("/", headers=headers)).status_code == 405
    plain = await client.get("/", headers=headers)
    assert "access-control-allow-origin" not in plain.headers


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz", headers={"authorization": ""})).json() == {"status": "ok"}
    ready = await client.get("/readyz", headers={"authorization": ""})
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/resource_classes")
    body = (await client.get("/metrics")).text
    assert 'allot_requests_total{method="GET",route="/resource_classes",status="200"}' in body
