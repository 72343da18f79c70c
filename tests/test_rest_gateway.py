"""The REST gateway over real HTTP on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from servers import RunningServer
from sqlalchemy import create_engine

from opensphere.ids import new_id
from opensphere.services.registry import HANDLERS
from opensphere.store import Database
from opensphere.store import models as m
from opensphere.transport import http_rules

TYPE_PREFIX = "type.googleapis.com/yandex.cloud.datasphere.v2."
CURL_FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


@pytest.fixture(scope="module")
def http(api_server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_server.token}"}
    with httpx.Client(base_url=api_server.rest, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(api_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.rest, timeout=30) as client:
        yield client


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def done_response(response: httpx.Response, type_name: str) -> dict[str, Any]:
    op = ok(response)
    assert op["done"] is True, op
    resource = dict(op["response"])
    assert resource.pop("@type") == TYPE_PREFIX + type_name
    return resource


def error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    return body


@pytest.fixture(scope="module")
def community(http: httpx.Client, api_server: RunningServer) -> dict[str, Any]:
    response = http.post("/datasphere/v2/communities", json={
        "organizationId": api_server.organization_id, "name": "rest-team",
        "labels": {"env": "test"}})
    return done_response(response, "Community")


@pytest.fixture(scope="module")
def project(http: httpx.Client, community: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/datasphere/v2/projects", json={
        "communityId": community["id"], "name": "rest-project",
        "limits": {"maxUnitsPerHour": "100"}})
    return done_response(response, "Project")


def test_create_community_returns_operation_json(http, community, api_server) -> None:
    assert community["organizationId"] == api_server.organization_id
    assert community["labels"] == {"env": "test"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", community["createdAt"])


def test_get_community(http, community) -> None:
    assert ok(http.get(f"/datasphere/v2/communities/{community['id']}")) == community


def test_patch_community_applies_update_mask_and_path_wins(http, community) -> None:
    response = http.patch(f"/datasphere/v2/communities/{community['id']}", json={
        "communityId": "not-this-one", "updateMask": "description",
        "description": "Patched over REST", "name": "ignored-by-mask"})
    updated = done_response(response, "Community")
    assert updated["id"] == community["id"]
    assert updated["description"] == "Patched over REST"
    assert updated["name"] == community["name"]


def test_list_communities_from_query_or_get_body(http, community, api_server) -> None:
    org = api_server.organization_id
    by_query = ok(http.get("/datasphere/v2/communities", params={"organizationId": org}))
    by_snake = ok(http.get("/datasphere/v2/communities", params={"organization_id": org}))
    # The public docs' curl example sends the request as a JSON body on GET.
    by_body = ok(http.request("GET", "/datasphere/v2/communities", headers=CURL_FORM,
                              content=json.dumps({"organizationId": org})))
    assert community["id"] in [c["id"] for c in by_query["communities"]]
    assert by_query == by_snake == by_body


def test_project_json_mapping(project, community) -> None:
    assert project["communityId"] == community["id"]
    assert project["limits"] == {"maxUnitsPerHour": "100"}  # int64 wrapper as a JSON string
    assert project["settings"]["commitMode"] == "COMMIT_MODE_UNSPECIFIED"  # enums by name


def test_get_and_cancel_operation(http, community) -> None:
    created = ok(http.post("/datasphere/v2/projects", json={"communityId": community["id"]}))
    assert created["metadata"] == {"@type": TYPE_PREFIX + "CreateProjectMetadata",
                                   "projectId": created["response"]["id"]}
    assert ok(http.get(f"/operations/{created['id']}")) == created
    assert ok(http.post(f"/operations/{created['id']}:cancel")) == created
    assert ok(http.get(f"/operations/{created['id']}:cancel")) == created


def test_validation_error_names_field(http, community) -> None:
    response = http.post("/datasphere/v2/projects",
                         json={"communityId": community["id"], "name": "Bad Name!"})
    body = error(response, 400, 3)
    assert body["message"].startswith("name:")
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert body["details"][0]["fieldViolations"][0]["field"] == "name"


def test_unknown_id_is_not_found(http) -> None:
    body = error(http.get("/datasphere/v2/projects/bt1doesnotexist"), 404, 5)
    assert "bt1doesnotexist" in body["message"]
    error(http.get("/operations/opsdoesnotexist"), 404, 5)


@pytest.mark.parametrize("authorization", [None, "Bearer os1_wrong", "Basic abc"])
def test_bad_credentials_are_unauthenticated(anonymous, community, authorization) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = anonymous.get(f"/datasphere/v2/communities/{community['id']}", headers=headers)
    body = error(response, 401, 16)
    assert "os1_wrong" not in body["message"]


def test_public_method_needs_no_token(anonymous) -> None:
    endpoints = ok(anonymous.get("/endpoints"))["endpoints"]
    assert "datasphere" in [e["id"] for e in endpoints]


def test_unknown_body_field_is_rejected(http, community) -> None:
    response = http.post("/datasphere/v2/projects",
                         json={"communityId": community["id"], "nmae": "typo"})
    assert '"nmae"' in error(response, 400, 3)["message"]


def test_unknown_query_parameter_is_rejected(http, community) -> None:
    response = http.get("/datasphere/v2/projects",
                        params={"communityId": community["id"], "pageSise": "3"})
    assert "pageSise" in error(response, 400, 3)["message"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"'])
def test_body_must_be_a_json_object(http, content) -> None:
    response = http.post("/datasphere/v2/projects", content=content, headers=CURL_FORM)
    assert "JSON" in error(response, 400, 3)["message"]


def test_unimplemented_method_is_501(http, project) -> None:
    binding = next((b for b in http_rules.bindings()
                    if b.method.full_name not in HANDLERS and b.variables), None)
    if binding is None:
        pytest.skip("every method with a path variable is implemented")
    path = re.sub(r"\{[^}]+\}", project["id"], binding.openapi_path)
    body = error(http.request(binding.http_method, path, json={}), 501, 12)
    assert binding.method.name in body["message"]


def test_unknown_route_and_wrong_method(http) -> None:
    error(http.get("/datasphere/v2/nothing"), 404, 5)
    error(http.get("/datasphere/v2/projects/"), 404, 5)
    response = http.put("/datasphere/v2/projects")
    error(response, 405, 12)
    assert response.headers["allow"] == "GET, POST"


def test_literal_route_beats_variable(http) -> None:
    response = http.get("/datasphere/v2/projects/restrictionsMeta")
    assert response.status_code in (200, 501), response.text
    if response.status_code == 501:
        assert "GetRestrictionsMeta" in response.json()["message"]


def walk(http: httpx.Client, params: dict[str, str]) -> tuple[list[str], int]:
    """Every project id over all pages, and the number of pages it took."""
    seen: list[str] = []
    params = dict(params)
    pages = 0
    while True:
        page = ok(http.get("/datasphere/v2/projects", params=params))
        pages += 1
        seen += [p["id"] for p in page["projects"]]
        if not page["nextPageToken"]:
            return seen, pages
        params["pageToken"] = page["nextPageToken"]


def test_paging_walks_2500_projects_once(http, api_server) -> None:
    team = done_response(http.post("/datasphere/v2/communities", json={
        "organizationId": api_server.organization_id, "name": "paging-team"}), "Community")
    # A few through the API, the bulk straight into the store: paging is what is tested.
    created = [done_response(http.post("/datasphere/v2/projects", json={
        "communityId": team["id"], "name": f"p{i:04d}"}), "Project")["id"] for i in range(5)]
    engine = create_engine(Database(api_server.settings.effective_database_url).sync_url)
    with engine.begin() as conn:
        rows = [{"id": new_id("bt1"), "community_id": team["id"], "name": f"p{i:04d}",
                 "description": "", "labels": {}, "settings": {}, "limits": {},
                 "created_by_id": team["createdById"], "created_at": m.utcnow()}
                for i in range(5, 2500)]
        conn.execute(m.Project.__table__.insert(), rows)
    engine.dispose()
    created += [r["id"] for r in rows]
    seen, pages = walk(http, {"communityId": team["id"], "pageSize": "1000"})
    assert pages == 3
    assert len(seen) == len(set(seen)) == 2500
    assert set(seen) == set(created)
    assert seen == sorted(seen)  # stable order: ids are time-ordered
    default, pages = walk(http, {"communityId": team["id"]})
    assert (default, pages) == (seen, 25)  # page size 0 means the default, 100
    snake = ok(http.get("/datasphere/v2/projects",
                        params={"community_id": team["id"], "page_size": "10"}))
    assert [p["id"] for p in snake["projects"]] == seen[:10]
    too_big = http.get("/datasphere/v2/projects",
                       params={"communityId": team["id"], "pageSize": "1001"})
    assert "page_size" in error(too_big, 400, 3)["message"]


def test_openapi_document(anonymous) -> None:
    document = ok(anonymous.get("/openapi.json"))
    assert document["openapi"].startswith("3.1")
    execute = document["paths"]["/datasphere/v2/projects/{projectId}:execute"]["post"]
    assert execute["operationId"] == "ProjectService_Execute"
    assert execute["parameters"][0] == {"name": "projectId", "in": "path", "required": True,
                                        "schema": {"type": "string"}}
    assert "notebookId" in execute["requestBody"]["content"]["application/json"]["schema"][
        "properties"]
    schemas = document["components"]["schemas"]
    project = schemas["yandex.cloud.datasphere.v2.Project"]["properties"]
    assert project["createdAt"] == {"type": "string", "format": "date-time"}
    assert project["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    refs = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document))
    assert set(refs) <= set(schemas)


def test_every_documented_operation_is_routed(anonymous) -> None:
    """Each path and method in /openapi.json reaches a method (here: 401 without a token)."""
    document = anonymous.get("/openapi.json").json()
    for template, item in document["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x1", template)
        for method in item:
            response = anonymous.request(method.upper(), path)
            assert response.status_code != 405, (method, path)
            assert "no API method" not in response.json().get("message", ""), (method, path)
