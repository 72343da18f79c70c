"""Communities, projects and operations over real gRPC, on SQLite and on PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servers import RunningServer

from opensphere.client import ClientError
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2


def unpack(op, cls):
    assert op.done, op
    assert op.WhichOneof("result") == "response", op
    msg = cls()
    assert op.response.Unpack(msg)
    return msg


def error_of(call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value


@pytest.fixture(scope="module")
def client(api_server: RunningServer):
    c = api_server.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def community(client, api_server: RunningServer) -> community_pb2.Community:
    op = client.call("CommunityService.Create", {
        "organizationId": api_server.organization_id, "name": "ml-team",
        "description": "Team notebooks", "labels": {"env": "test"}})
    return unpack(op, community_pb2.Community)


def test_health_serving(api_server: RunningServer) -> None:
    with grpc.insecure_channel(api_server.grpc) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_community_create_records_operation(client, community, api_server) -> None:
    assert community.name == "ml-team"
    assert community.organization_id == api_server.organization_id
    assert community.labels == {"env": "test"}
    assert community.created_by_id
    ops = client.call("CommunityService.Create", {
        "organizationId": api_server.organization_id, "name": "second-team"})
    again = client.call("OperationService.Get", {"operationId": ops.id})
    assert again == ops
    assert again.created_by == community.created_by_id
    assert again.metadata.type_url == \
        "type.googleapis.com/yandex.cloud.datasphere.v2.CreateCommunityMetadata"
    assert again.response.type_url == "type.googleapis.com/yandex.cloud.datasphere.v2.Community"


def test_community_get_update_list_delete(client, api_server) -> None:
    created = unpack(client.call("CommunityService.Create", {
        "organizationId": api_server.organization_id, "name": "to-change",
        "description": "before", "labels": {"a": "1"}}), community_pb2.Community)
    updated = unpack(client.call("CommunityService.Update", {
        "communityId": created.id, "updateMask": "description", "name": "ignored-name",
        "description": "after"}), community_pb2.Community)
    assert (updated.name, updated.description) == ("to-change", "after")
    got = client.call("CommunityService.Get", {"communityId": created.id})
    assert got.description == "after" and got.labels == {"a": "1"}
    listed = client.call("CommunityService.List", {
        "organizationId": api_server.organization_id, "nameOrDescriptionPattern": "AFTER"})
    assert [c.id for c in listed.communities] == [created.id]
    client.call("CommunityService.Delete", {"communityId": created.id})
    assert error_of(client.call, "CommunityService.Get",
                    {"communityId": created.id}).code == grpc.StatusCode.NOT_FOUND


def test_community_with_projects_cannot_be_deleted(client, community) -> None:
    project = unpack(client.call("ProjectService.Create", {"communityId": community.id}),
                     project_pb2.Project)
    err = error_of(client.call, "CommunityService.Delete", {"communityId": community.id})
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    client.call("ProjectService.Delete", {"projectId": project.id})


def test_community_needs_existing_organization(client) -> None:
    err = error_of(client.call, "CommunityService.Create", {"organizationId": "nope"})
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert "organization" in str(err)


def test_project_settings_and_limits_round_trip(client, community) -> None:
    project = unpack(client.call("ProjectService.Create", {
        "communityId": community.id, "name": "churn-model", "description": "d",
        "labels": {"team": "ds"},
        "settings": {"defaultDedicatedSpec": "c1.8", "staleExecTimeoutMode": "ONE_HOUR",
                     "vmInactivityTimeout": "600s", "ide": "JUPYTER_LAB"},
        "limits": {"maxUnitsPerHour": "10", "maxUnitsPerExecution": "5"}}), project_pb2.Project)
    got = client.call("ProjectService.Get", {"projectId": project.id})
    assert got == project
    assert got.settings.default_dedicated_spec == "c1.8"
    assert got.settings.vm_inactivity_timeout.seconds == 600
    assert got.limits.max_units_per_hour.value == 10
    updated = unpack(client.call("ProjectService.Update", {
        "projectId": project.id, "updateMask": "settings.defaultDedicatedSpec,limits",
        "settings": {"defaultDedicatedSpec": "c1.32"}, "limits": {}}), project_pb2.Project)
    assert updated.settings.default_dedicated_spec == "c1.32"
    assert updated.settings.vm_inactivity_timeout.seconds == 600
    assert not updated.limits.HasField("max_units_per_hour")
    assert client.call("ProjectService.Get", {"projectId": project.id}) == updated


def test_project_list_paging_and_filters(client, api_server) -> None:
    own = unpack(client.call("CommunityService.Create", {
        "organizationId": api_server.organization_id, "name": "paging"}),
        community_pb2.Community)
    ids = [unpack(client.call("ProjectService.Create", {
        "communityId": own.id, "name": f"p-{i:02d}"}), project_pb2.Project).id
        for i in range(23)]
    seen, token = [], ""
    while True:
        page = client.call("ProjectService.List", {
            "communityId": own.id, "pageSize": 10, "pageToken": token})
        seen += [p.id for p in page.projects]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    named = client.call("ProjectService.List", {"communityId": own.id,
                                                "projectNamePattern": "p-1"})
    assert [p.name for p in named.projects] == [f"p-{i}" for i in range(10, 20)]
    owned = client.call("ProjectService.List", {"communityId": own.id, "ownedById": "nobody"})
    assert list(owned.projects) == []
    default = client.call("ProjectService.List", {"communityId": own.id, "pageSize": 0})
    assert len(default.projects) == 23 and not default.next_page_token


@pytest.mark.parametrize(("method", "request_", "field"), [
    ("ProjectService.Create", {"communityId": "x", "name": "Bad Name"}, "name"),
    ("ProjectService.Create", {"communityId": "x", "name": "a" * 64}, "name"),
    ("ProjectService.Create", {"communityId": "x", "description": "d" * 257}, "description"),
    ("ProjectService.Create", {"communityId": "x", "labels": {"Bad": "v"}}, "labels[Bad]"),
    ("ProjectService.Create", {"communityId": "x", "labels": {"k": "V!"}}, "labels[k]"),
    ("ProjectService.Create",
     {"communityId": "x", "labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
    ("ProjectService.Create", {"name": "ok"}, "community_id"),
    ("ProjectService.List", {"communityId": "x", "pageSize": 1001}, "page_size"),
    ("ProjectService.List", {"communityId": "x", "pageToken": "garbage!"}, "page_token"),
    ("ProjectService.Get", {}, "project_id"),
    ("ProjectService.Get", {"projectId": "p" * 51}, "project_id"),
    ("CommunityService.Create", {"organizationId": "o", "name": "x"}, "name"),
    ("CommunityService.List", {}, "organization_id"),
    ("CommunityService.Update", {"communityId": "c", "updateMask": "id"}, "update_mask"),
])
def test_invalid_arguments_name_the_field(client, community, method, request_, field) -> None:
    if "communityId" in request_ and method != "CommunityService.Update":
        request_ = {**request_, "communityId": community.id}
    if method == "CommunityService.Update":
        request_ = {**request_, "communityId": community.id}
    err = error_of(client.call, method, request_)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert field in str(err)


def test_failed_create_writes_nothing(client, community) -> None:
    before = client.call("ProjectService.List", {"communityId": community.id})
    err = error_of(client.call, "ProjectService.Create",
                   {"communityId": community.id, "name": "-bad"})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    err = error_of(client.call, "ProjectService.Create", {"communityId": "missing-community"})
    assert err.code == grpc.StatusCode.NOT_FOUND
    after = client.call("ProjectService.List", {"communityId": community.id})
    assert after == before


def test_unknown_ids_are_not_found(client) -> None:
    for method, request in [("ProjectService.Get", {"projectId": "nope"}),
                            ("ProjectService.Delete", {"projectId": "nope"}),
                            ("CommunityService.Get", {"communityId": "nope"}),
                            ("OperationService.Get", {"operationId": "nope"})]:
        assert error_of(client.call, method, request).code == grpc.StatusCode.NOT_FOUND


def test_calls_need_a_valid_token(api_server) -> None:
    bad = api_server.client(token="os1_not-a-token")
    err = error_of(bad.call, "ProjectService.Get", {"projectId": "x"})
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(api_server.grpc) as channel:
        call = channel.unary_unary("/yandex.cloud.datasphere.v2.ProjectService/Get")
        with pytest.raises(grpc.RpcError) as info:
            call(b"")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_new_token_works(api_server) -> None:
    issued = api_server.client().call("TokenService.Create", {"description": "ci"})
    assert issued.token and issued.token != api_server.token
    other = api_server.client(token=issued.token)
    assert other.call("OrganizationService.List").organizations


def test_capabilities_not_yet_available_are_unimplemented(client, community) -> None:
    project = unpack(client.call("ProjectService.Create", {"communityId": community.id}),
                     project_pb2.Project)
    err = error_of(client.call, "ProjectService.AddResource", {
        "projectId": project.id, "resourceType": "RESOURCE_TYPE_DATASET", "resourceId": "d"})
    assert err.code == grpc.StatusCode.UNIMPLEMENTED
    assert "not available" in str(err)
