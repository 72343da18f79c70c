"""Every implemented RPC × every role, granted on the project or on its community only.

The expectations below are written from the public DataSphere role descriptions, not read
from ``iam.roles`` or ``services.permissions``: if either drifts, this test says where.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from servers import RunningServer

from opensphere.client import Client, ClientError
from opensphere.services.api import HANDLERS

LEVELS = {"viewer": 0, "developer": 1, "editor": 2, "admin": 3}
SEES_ONLY = -1  # a project role held on a community shows the community, nothing more
PRIMITIVE = ("viewer", "editor", "admin")
ROLES = [f"datasphere.community-projects.{lvl}" for lvl in LEVELS] + \
        [f"datasphere.communities.{lvl}" for lvl in LEVELS] + list(PRIMITIVE)
CASES = [(role, scope) for role in ROLES for scope in ("project", "community")] + [(None, None)]


def level_on(role: str | None, scope: str | None, target: str) -> int | None:
    """What ``role`` bound at ``scope`` gives on ``target``; None means it cannot see it."""
    if role is None or (target == "community" and scope == "project"):
        return None
    if role in PRIMITIVE:
        return LEVELS[role]
    family, level = role.rsplit(".", 1)
    if target == "community" and family == "datasphere.community-projects":
        return SEES_ONLY
    return LEVELS[level]


@dataclass(frozen=True)
class Expect:
    """The call is allowed from ``level`` on ``target`` (project, community, organization,
    installation); below it, PERMISSION_DENIED if the target is visible, else NOT_FOUND."""

    target: str
    level: int


DS, OS = "yandex.cloud.datasphere.v2", "opensphere.v1"
EXPECT: dict[str, Expect] = {
    f"{DS}.ProjectService.Get": Expect("project", 0),
    f"{DS}.ProjectService.List": Expect("project", 0),
    f"{DS}.ProjectService.ListAccessBindings": Expect("project", 0),
    f"{DS}.ProjectService.GetStateVariables": Expect("project", 0),
    f"{DS}.ProjectService.GetCellOutputs": Expect("project", 0),
    f"{DS}.ProjectService.Execute": Expect("project", 1),
    f"{DS}.ProjectService.Open": Expect("project", 1),
    f"{DS}.ProjectService.Update": Expect("project", 2),
    f"{DS}.ProjectService.GetUnitBalance": Expect("project", 2),
    f"{DS}.ProjectService.GetRestrictions": Expect("project", 2),
    f"{DS}.ProjectService.Delete": Expect("project", 3),
    f"{DS}.ProjectService.SetAccessBindings": Expect("project", 3),
    f"{DS}.ProjectService.UpdateAccessBindings": Expect("project", 3),
    f"{DS}.ProjectService.SetUnitBalance": Expect("project", 3),
    f"{DS}.ProjectService.SetRestrictions": Expect("project", 3),
    f"{DS}.ProjectService.ResizeDisk": Expect("project", 3),
    f"{DS}.ProjectService.GetDiskInfo": Expect("project", 0),
    f"{OS}.UsageService.List": Expect("project", 2),
    f"{DS}.ProjectService.Create": Expect("community", 1),
    f"{DS}.CommunityService.Get": Expect("community", SEES_ONLY),
    f"{DS}.CommunityService.List": Expect("community", SEES_ONLY),
    f"{DS}.CommunityService.ListAccessBindings": Expect("community", 0),
    f"{DS}.CommunityService.Update": Expect("community", 2),
    f"{DS}.CommunityService.GetRestrictions": Expect("community", 2),
    f"{DS}.CommunityService.Delete": Expect("community", 3),
    f"{DS}.CommunityService.SetAccessBindings": Expect("community", 3),
    f"{DS}.CommunityService.UpdateAccessBindings": Expect("community", 3),
    f"{DS}.CommunityService.SetRestrictions": Expect("community", 3),
    "yandex.cloud.operation.OperationService.Get": Expect("project", 0),
    "yandex.cloud.operation.OperationService.Cancel": Expect("project", 1),
    f"{OS}.ExecutionService.Watch": Expect("project", 0),
    f"{DS}.CommunityService.Create": Expect("organization", 2),
    f"{OS}.OrganizationService.List": Expect("organization", 0),
    f"{OS}.OrganizationService.ListAccessBindings": Expect("organization", 0),
    f"{OS}.OrganizationService.SetAccessBindings": Expect("organization", 3),
    f"{OS}.OrganizationService.UpdateAccessBindings": Expect("organization", 3),
    f"{DS}.CommunityService.GetRestrictionsMeta": Expect("anyone", 0),
    f"{DS}.ProjectService.GetRestrictionsMeta": Expect("anyone", 0),
    f"{OS}.TokenService.Create": Expect("anyone", 0),
    **{f"{OS}.SubjectService.{name}": Expect("installation", 3)
       for name in ("Create", "List", "Delete", "AddGroupMember", "RemoveGroupMember",
                    "IssueToken", "CreateApiKey", "RevokeCredential")},
    f"{OS}.AuditService.List": Expect("installation", 3),
    "yandex.cloud.endpoint.ApiEndpointService.List": Expect("public", 0),
    "yandex.cloud.endpoint.ApiEndpointService.Get": Expect("public", 0),
    f"{OS}.ProjectFileService.Download": Expect("project", 0),
    f"{OS}.ProjectFileService.List": Expect("project", 0),
    f"{OS}.ProjectFileService.Upload": Expect("project", 1),
    f"{OS}.ProjectFileService.Move": Expect("project", 1),
    f"{OS}.ProjectFileService.Delete": Expect("project", 1),
}
# Files the admin puts in every case's project, for the file methods to act on.
FILES = ("read-me.txt", "move-me.txt", "delete-me.txt")
# Destructive calls run last, the project before its community.
LAST = [f"{DS}.ProjectService.Delete", f"{DS}.CommunityService.Delete"]


@dataclass
class World:
    admin: Client
    user: Client
    user_id: str
    bystander_id: str
    org: str
    community: str
    project: str
    operation: str


def requests(w: World) -> dict[str, dict[str, Any]]:
    """A valid request for every method, aimed at the case's fresh resources."""
    grant = {"accessBindingDeltas": [{"action": "ADD", "accessBinding": {
        "roleId": "viewer", "subject": {"type": "userAccount", "id": w.bystander_id}}}]}

    def keep(kind: str, resource: str) -> dict[str, Any]:
        current = w.admin.call(f"{kind}.ListAccessBindings", {"resourceId": resource})
        return {"resourceId": resource, "accessBindings": [
            {"roleId": b.role_id, "subject": {"type": b.subject.type, "id": b.subject.id}}
            for b in current.access_bindings]}

    p, c = {"projectId": w.project}, {"communityId": w.community}
    return {
        f"{DS}.ProjectService.Get": p, f"{DS}.ProjectService.List": c,
        f"{DS}.ProjectService.ListAccessBindings": {"resourceId": w.project},
        f"{DS}.ProjectService.GetStateVariables": {**p, "notebookId": "main.ipynb"},
        f"{DS}.ProjectService.GetCellOutputs": {**p, "cellId": "c1"},
        f"{DS}.ProjectService.Execute": {**p, "notebookId": "main.ipynb"},
        f"{DS}.ProjectService.Open": p,
        f"{DS}.ProjectService.Update": {**p, "description": "changed"},
        f"{DS}.ProjectService.GetUnitBalance": p,
        f"{DS}.ProjectService.GetRestrictions": p,
        f"{DS}.ProjectService.Delete": p,
        f"{DS}.ProjectService.SetAccessBindings": keep("ProjectService", w.project),
        f"{DS}.ProjectService.UpdateAccessBindings": {"resourceId": w.project, **grant},
        f"{DS}.ProjectService.SetUnitBalance": {**p, "unitBalance": "100"},
        f"{DS}.ProjectService.SetRestrictions": {**p, "restrictions": []},
        f"{DS}.ProjectService.ResizeDisk": {**p, "newDiskSizeGb": 30},
        f"{DS}.ProjectService.GetDiskInfo": p,
        f"{OS}.UsageService.List": p,
        f"{DS}.ProjectService.Create": c,
        f"{DS}.CommunityService.Create": {"organizationId": w.org},
        f"{DS}.CommunityService.Get": c,
        f"{DS}.CommunityService.List": {"organizationId": w.org},
        f"{DS}.CommunityService.ListAccessBindings": {"resourceId": w.community},
        f"{DS}.CommunityService.Update": {**c, "description": "changed"},
        f"{DS}.CommunityService.GetRestrictions": c,
        f"{DS}.CommunityService.Delete": c,
        f"{DS}.CommunityService.SetAccessBindings": keep("CommunityService", w.community),
        f"{DS}.CommunityService.UpdateAccessBindings": {"resourceId": w.community, **grant},
        f"{DS}.CommunityService.SetRestrictions": {**c, "restrictions": []},
        "yandex.cloud.operation.OperationService.Get": {"operationId": w.operation},
        "yandex.cloud.operation.OperationService.Cancel": {"operationId": w.operation},
        f"{OS}.ExecutionService.Watch": {"operationId": w.operation},
        f"{OS}.OrganizationService.List": {},
        f"{OS}.OrganizationService.ListAccessBindings": {"resourceId": w.org},
        f"{OS}.OrganizationService.SetAccessBindings": keep("OrganizationService", w.org),
        f"{OS}.OrganizationService.UpdateAccessBindings": {"resourceId": w.org, **grant},
        f"{DS}.CommunityService.GetRestrictionsMeta": {},
        f"{DS}.ProjectService.GetRestrictionsMeta": {},
        f"{OS}.TokenService.Create": {},
        f"{OS}.SubjectService.Create": {"type": "userAccount", "name": f"x-{w.project}"},
        f"{OS}.SubjectService.List": {},
        f"{OS}.SubjectService.Delete": {"subjectId": w.bystander_id},
        f"{OS}.SubjectService.AddGroupMember": {"groupId": "g", "subjectId": w.user_id},
        f"{OS}.SubjectService.RemoveGroupMember": {"groupId": "g", "subjectId": w.user_id},
        f"{OS}.SubjectService.IssueToken": {"subjectId": w.user_id},
        f"{OS}.SubjectService.CreateApiKey": {"subjectId": w.user_id},
        f"{OS}.SubjectService.RevokeCredential": {"credentialId": "none"},
        f"{OS}.AuditService.List": {},
        "yandex.cloud.endpoint.ApiEndpointService.List": {},
        "yandex.cloud.endpoint.ApiEndpointService.Get": {"apiEndpointId": "datasphere"},
        f"{OS}.ProjectFileService.Download": {**p, "path": "read-me.txt"},
        f"{OS}.ProjectFileService.List": p,
        f"{OS}.ProjectFileService.Upload": {**p, "path": "new.txt"},
        f"{OS}.ProjectFileService.Move": {**p, "source": "move-me.txt", "destination": "m.txt"},
        f"{OS}.ProjectFileService.Delete": {**p, "path": "delete-me.txt"},
    }


def expected(method: str, role: str | None, scope: str | None) -> str:
    """"allow", or the code of the refusal."""
    rule = EXPECT[method]
    if rule.target in ("public", "anyone"):
        return "allow"
    if rule.target == "installation":
        return "PERMISSION_DENIED"
    if rule.target == "organization":  # the cases never grant anything on the organization
        return "NOT_FOUND"
    level = level_on(role, scope, rule.target)
    if level is not None and level >= rule.level:
        return "allow"
    return "NOT_FOUND" if level is None else "PERMISSION_DENIED"


def outcome(client: Client, method: str, request: dict[str, Any]) -> tuple[str, Any]:
    """("allow", response) or (code name, None) for an access refusal."""
    service, name = method.rsplit(".", 2)[-2:]
    short = f"{service}.{name}"
    try:
        if name == "Upload":
            return "allow", client.stream_unary(short, [client.request(short, request)])
        if name in ("Download", "Watch"):  # server-streaming
            return "allow", list(client.unary_stream(short, request))
        return "allow", client.call(short, request)
    except ClientError as err:
        if err.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
            return err.code.name, None
        return "allow", None  # refused for another reason than access: it got past the check



@pytest.fixture(scope="module")
def setting(api_server: RunningServer) -> dict[str, Any]:
    admin = api_server.client()
    user = admin.call("SubjectService.Create", {"type": "userAccount", "name": "matrix-user"})
    bystander = admin.call("SubjectService.Create", {"type": "userAccount", "name": "bystander"})
    token = admin.call("SubjectService.IssueToken", {"subjectId": user.id}).secret
    return {"admin": admin, "user": api_server.client(token=token), "user_id": user.id,
            "bystander_id": bystander.id, "org": api_server.organization_id}


def fresh_world(setting: dict[str, Any], role: str | None, scope: str | None) -> World:
    from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2

    admin: Client = setting["admin"]
    community, project = community_pb2.Community(), project_pb2.Project()
    admin.call("CommunityService.Create", {"organizationId": setting["org"]}).response.Unpack(
        community)
    admin.call("ProjectService.Create", {"communityId": community.id}).response.Unpack(project)
    # Open is judged at its access check; no JupyterLab needs to start for that.
    admin.call("CommunityService.SetRestrictions", {"communityId": community.id, "restrictions": [
        {"name": "ide_allowed", "boolValue": [False]}]})
    operation = admin.call("ProjectService.Update", {"projectId": project.id,
                                                     "description": "by admin"}).id
    for path in FILES:
        head = admin.request("ProjectFileService.Upload", {"projectId": project.id,
                                                           "path": path})
        admin.stream_unary("ProjectFileService.Upload", [head, type(head)(chunk=b"data")])
    if role is not None:
        service, resource = ("ProjectService", project.id) if scope == "project" else \
            ("CommunityService", community.id)
        admin.call(f"{service}.UpdateAccessBindings", {"resourceId": resource,
                   "accessBindingDeltas": [{"action": "ADD", "accessBinding": {
                       "roleId": role, "subject": {"type": "userAccount",
                                                   "id": setting["user_id"]}}}]})
    return World(admin=admin, user=setting["user"], user_id=setting["user_id"],
                 bystander_id=setting["bystander_id"], org=setting["org"],
                 community=community.id, project=project.id, operation=operation)


def listed(method: str, response: Any, w: World) -> bool | None:
    """For listings: whether the case's resource is in the page (None for other methods)."""
    if method.endswith("ProjectService.List"):
        return w.project in [p.id for p in response.projects]
    if method.endswith("CommunityService.List"):
        return w.community in [c.id for c in response.communities]
    if method.endswith("OrganizationService.List"):
        return w.org in [o.id for o in response.organizations]
    return None


def test_expectations_cover_every_implemented_rpc() -> None:
    assert sorted(set(HANDLERS) - set(EXPECT)) == []


@pytest.mark.parametrize(("role", "scope"), CASES,
                         ids=[f"{r}@{s}" if r else "no-role" for r, s in CASES])
def test_matrix(setting: dict[str, Any], role: str | None, scope: str | None) -> None:
    w = fresh_world(setting, role, scope)
    reqs = requests(w)
    methods = sorted(m for m in HANDLERS if m not in LAST) + LAST
    wrong = []
    for method in methods:
        got, response = outcome(w.user, method, reqs[method])
        want = expected(method, role, scope)
        if got == "allow" and listed(method, response, w) is False:
            got = "NOT_FOUND"  # a listing hides what it may not show
        if got != want:
            wrong.append(f"{method}: expected {want}, got {got}")
    assert wrong == []
