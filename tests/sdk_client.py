"""Scenarios driven through the official ``yandexcloud`` SDK, run as a separate process.

The SDK registers the same protobuf files as OpenSphere, so it never shares a process with
the server. Usage: ``python sdk_client.py SCENARIO``; the connection comes from the
environment (OPENSPHERE_SDK_ENDPOINT, OPENSPHERE_SDK_TOKEN, OPENSPHERE_SDK_CA) and the
result is printed as one JSON document.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import yandexcloud
from google.protobuf.empty_pb2 import Empty
from google.protobuf.json_format import MessageToDict
from google.protobuf.wrappers_pb2 import Int64Value
from yandex.cloud.access import access_pb2
from yandex.cloud.datasphere.v2 import community_pb2, project_pb2
from yandex.cloud.datasphere.v2.community_service_pb2 import (
    CreateCommunityMetadata,
    CreateCommunityRequest,
    GetCommunityRequest,
    ListCommunitiesRequest,
)
from yandex.cloud.datasphere.v2.community_service_pb2_grpc import CommunityServiceStub
from yandex.cloud.datasphere.v2.project_service_pb2 import (
    CreateProjectMetadata,
    CreateProjectRequest,
    GetProjectRequest,
    GetProjectRestrictionsRequest,
    GetUnitBalanceRequest,
    ListProjectsRequest,
    ProjectExecutionMetadata,
    ProjectExecutionRequest,
    ProjectExecutionResponse,
    SetProjectRestrictionsRequest,
    SetUnitBalanceMetadata,
    SetUnitBalanceRequest,
    UpdateProjectAccessBindingsMetadata,
)
from yandex.cloud.datasphere.v2.project_service_pb2_grpc import ProjectServiceStub
from yandex.cloud.datasphere.v2.restrictions_pb2 import Restriction, RestrictionsResponse
from yandex.cloud.operation.operation_service_pb2 import GetOperationRequest
from yandex.cloud.operation.operation_service_pb2_grpc import OperationServiceStub


def sdk() -> yandexcloud.SDK:
    """The SDK entry point; it discovers the operation endpoint through ApiEndpointService."""
    return yandexcloud.SDK(
        iam_token=os.environ["OPENSPHERE_SDK_TOKEN"],
        endpoint=os.environ["OPENSPHERE_SDK_ENDPOINT"],
        root_certificates=Path(os.environ["OPENSPHERE_SDK_CA"]).read_bytes(),
    )


def datasphere_channel() -> grpc.Channel:
    """The SDK maps no endpoint id to DataSphere stubs, so they get a channel of their own,
    authenticated the same way the SDK authenticates (an IAM bearer token over TLS)."""
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(Path(os.environ["OPENSPHERE_SDK_CA"]).read_bytes()),
        grpc.access_token_call_credentials(os.environ["OPENSPHERE_SDK_TOKEN"]),
    )
    return grpc.secure_channel(os.environ["OPENSPHERE_SDK_ENDPOINT"], credentials)


def communities_and_projects(organization_id: str) -> dict[str, Any]:
    """Create a community and a project, read the operations, get and list both back."""
    client = sdk()
    channel = datasphere_channel()
    communities = CommunityServiceStub(channel)
    projects = ProjectServiceStub(channel)
    operations = client.client(OperationServiceStub)
    op = communities.Create(CreateCommunityRequest(organization_id=organization_id,
                                                   name="sdk-community"))
    community = client.wait_operation_and_get_result(
        op, response_type=community_pb2.Community, meta_type=CreateCommunityMetadata).response
    op_again = operations.Get(GetOperationRequest(operation_id=op.id))
    project_op = projects.Create(CreateProjectRequest(community_id=community.id,
                                                      name="sdk-project"))
    project = client.wait_operation_and_get_result(
        project_op, response_type=project_pb2.Project,
        meta_type=CreateProjectMetadata).response
    return {
        "community": MessageToDict(community),
        "operation": MessageToDict(op_again),
        "community_get": MessageToDict(communities.Get(
            GetCommunityRequest(community_id=community.id))),
        "community_list": MessageToDict(communities.List(
            ListCommunitiesRequest(organization_id=organization_id))),
        "project": MessageToDict(project),
        "project_get": MessageToDict(projects.Get(GetProjectRequest(project_id=project.id))),
        "project_list": MessageToDict(projects.List(
            ListProjectsRequest(community_id=community.id))),
    }


def access_bindings(project_id: str, subject_id: str) -> dict[str, Any]:
    """Grant a role with UpdateAccessBindings, then list the bindings back."""
    client = sdk()
    projects = ProjectServiceStub(datasphere_channel())
    op = projects.UpdateAccessBindings(access_pb2.UpdateAccessBindingsRequest(
        resource_id=project_id, access_binding_deltas=[access_pb2.AccessBindingDelta(
            action=access_pb2.ADD, access_binding=access_pb2.AccessBinding(
                role_id="datasphere.community-projects.developer",
                subject=access_pb2.Subject(id=subject_id, type="userAccount")))]))
    result = client.wait_operation_and_get_result(
        op, response_type=access_pb2.AccessBindingsOperationResult,
        meta_type=UpdateProjectAccessBindingsMetadata)
    listed = projects.ListAccessBindings(access_pb2.ListAccessBindingsRequest(
        resource_id=project_id))
    return {"operation": MessageToDict(op), "result": MessageToDict(result.response),
            "metadata": MessageToDict(result.meta), "bindings": MessageToDict(listed)}


def execute(project_id: str, notebook_id: str) -> dict[str, Any]:
    """Run a notebook with an input and an output, and wait for the operation's result."""
    client = sdk()
    projects = ProjectServiceStub(datasphere_channel())
    request = ProjectExecutionRequest(project_id=project_id, notebook_id=notebook_id,
                                      output_variable_names=["result"])
    request.input_variables.update({"factor": 6})
    op = projects.Execute(request)
    result = client.wait_operation_and_get_result(
        op, response_type=ProjectExecutionResponse, meta_type=ProjectExecutionMetadata,
        timeout=120)
    return {"response": MessageToDict(result.response), "metadata": MessageToDict(result.meta)}


def budget(project_id: str) -> dict[str, Any]:
    """Set and read back the unit balance and the restrictions of a project."""
    client = sdk()
    projects = ProjectServiceStub(datasphere_channel())
    op = projects.SetUnitBalance(SetUnitBalanceRequest(
        project_id=project_id, unit_balance=Int64Value(value=5000)))
    client.wait_operation_and_get_result(op, meta_type=SetUnitBalanceMetadata)
    balance = projects.GetUnitBalance(GetUnitBalanceRequest(project_id=project_id))
    meta = projects.GetRestrictionsMeta(Empty())
    op = projects.SetRestrictions(SetProjectRestrictionsRequest(
        project_id=project_id, restrictions=[
            Restriction(name="allowed_specs", string_value=["c1.4", "c1.8"]),
            Restriction(name="max_concurrent_runs", long_value=[2])]))
    set_result = client.wait_operation_and_get_result(op, response_type=RestrictionsResponse)
    restrictions = projects.GetRestrictions(GetProjectRestrictionsRequest(
        project_id=project_id))
    return {"balance": MessageToDict(balance), "meta": MessageToDict(meta),
            "set": MessageToDict(set_result.response), "get": MessageToDict(restrictions)}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "budget": budget,
    "execute": execute,
    "communities_and_projects": communities_and_projects,
    "access_bindings": access_bindings,
}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])))
