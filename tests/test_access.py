"""Tenancy, credentials, OIDC and the audit log, over real gRPC and REST."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pg import FreshDatabaseUrl
from servers import RunningServer, ServerThread, settings_for
from sqlalchemy import delete

from opensphere.client import Client, ClientError
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2
from opensphere.store import Database
from opensphere.store import models as m


def created(op: Any, cls: type) -> Any:
    msg = cls()
    assert op.done and op.response.Unpack(msg), op
    return msg


def code_of(call: Callable[..., Any], *args: Any) -> grpc.StatusCode:
    with pytest.raises(ClientError) as info:
        call(*args)
    return info.value.code


def add_role(admin: Client, service: str, resource: str, role: str, subject_id: str) -> None:
    admin.call(f"{service}.UpdateAccessBindings", {"resourceId": resource, "accessBindingDeltas": [
        {"action": "ADD", "accessBinding": {"roleId": role, "subject": {
            "type": "userAccount", "id": subject_id}}}]})


@pytest.fixture(scope="module")
def tenants(api_server: RunningServer) -> list[dict[str, Any]]:
    """Two users, each administering one community with one project."""
    admin = api_server.client()
    out = []
    for name in ("alice", "bob"):
        user = admin.call("SubjectService.Create", {"type": "userAccount", "name": name})
        token = admin.call("SubjectService.IssueToken", {"subjectId": user.id}).secret
        community = created(admin.call("CommunityService.Create", {
            "organizationId": api_server.organization_id, "name": f"{name}-team"}),
            community_pb2.Community)
        add_role(admin, "CommunityService", community.id, "datasphere.communities.admin", user.id)
        client = api_server.client(token=token)
        project = created(client.call("ProjectService.Create", {
            "communityId": community.id, "name": f"{name}-project"}), project_pb2.Project)
        out.append({"id": user.id, "token": token, "client": client,
                    "community": community.id, "project": project.id})
    return out


def test_tenants_cannot_reach_each_other_over_grpc(tenants) -> None:
    alice, bob = tenants
    other = bob["client"]
    p, c = alice["project"], alice["community"]
    for method, request in [
        ("ProjectService.Get", {"projectId": p}),
        ("ProjectService.Update", {"projectId": p, "description": "mine now"}),
        ("ProjectService.Delete", {"projectId": p}),
        ("ProjectService.Execute", {"projectId": p, "notebookId": "main.ipynb"}),
        ("ProjectService.Open", {"projectId": p}),
        ("ProjectService.ListAccessBindings", {"resourceId": p}),
        ("ProjectService.UpdateAccessBindings", {"resourceId": p, "accessBindingDeltas": [
            {"action": "ADD", "accessBinding": {"roleId": "admin", "subject": {
                "type": "userAccount", "id": bob["id"]}}}]}),
        ("ProjectService.Create", {"communityId": c}),
        ("CommunityService.Get", {"communityId": c}),
        ("CommunityService.Update", {"communityId": c, "description": "x"}),
        ("CommunityService.Delete", {"communityId": c}),
    ]:
        code = code_of(other.call, method, request)
        assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED), method
    listed = other.call("ProjectService.List", {"communityId": c})
    assert list(listed.projects) == []
    mine = alice["client"].call("ProjectService.Get", {"projectId": p})
    assert mine.description == ""  # nothing changed


def test_tenants_cannot_reach_each_other_over_rest(api_server, tenants) -> None:
    alice, bob = tenants
    headers = {"Authorization": f"Bearer {bob['token']}"}
    p, c = alice["project"], alice["community"]
    with httpx.Client(base_url=api_server.rest, headers=headers) as http:
        for method, path, body in [
            ("GET", f"/datasphere/v2/projects/{p}", None),
            ("PATCH", f"/datasphere/v2/projects/{p}", {"description": "x"}),
            ("DELETE", f"/datasphere/v2/projects/{p}", None),
            ("POST", f"/datasphere/v2/projects/{p}:execute", {"notebookId": "a.ipynb"}),
            ("POST", f"/datasphere/v2/projects/{p}:open", {}),
            ("GET", f"/datasphere/v2/projects/{p}:accessBindings", None),
            ("GET", f"/datasphere/v2/communities/{c}", None),
            ("DELETE", f"/datasphere/v2/communities/{c}", None),
            ("POST", "/datasphere/v2/projects", {"communityId": c}),
        ]:
            response = http.request(method, path, json=body)
            assert response.status_code in (404, 501), (method, path, response.text)
        listed = http.get("/datasphere/v2/projects", params={"communityId": c}).json()
        assert listed.get("projects", []) == []
        guessed = http.get(f"/datasphere/v2/projects/{p[:-1]}x")
        assert guessed.status_code == 404
        # Same body for an existing and a missing id: existence does not leak.
        assert http.get(f"/datasphere/v2/projects/{p}").json()["message"].replace(p, "X") == \
            guessed.json()["message"].replace(f"{p[:-1]}x", "X")


def test_viewer_sees_but_cannot_change(api_server, tenants) -> None:
    alice, bob = tenants
    add_role(alice["client"], "ProjectService", alice["project"],
             "datasphere.community-projects.viewer", bob["id"])
    assert bob["client"].call("ProjectService.Get", {"projectId": alice["project"]}).id
    assert code_of(bob["client"].call, "ProjectService.Update", {
        "projectId": alice["project"], "description": "x"}) == grpc.StatusCode.PERMISSION_DENIED
    listed = bob["client"].call("ProjectService.List", {"communityId": alice["community"]})
    assert [p.id for p in listed.projects] == [alice["project"]]


def test_unknown_role_or_subject_is_invalid(tenants) -> None:
    alice = tenants[0]
    for binding in [{"roleId": "datasphere.superuser", "subject": {"type": "userAccount",
                                                                   "id": alice["id"]}},
                    {"roleId": "viewer", "subject": {"type": "robot", "id": alice["id"]}},
                    {"roleId": "viewer", "subject": {"type": "userAccount", "id": "ghost"}},
                    {"roleId": "viewer", "subject": {"type": "system", "id": "everyone"}}]:
        code = code_of(alice["client"].call, "ProjectService.SetAccessBindings",
                       {"resourceId": alice["project"], "accessBindings": [binding]})
        assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_update_access_bindings_reports_effective_deltas(tenants) -> None:
    from opensphere.proto_gen.yandex.cloud.access import access_pb2

    alice, bob = tenants
    delta = {"action": "ADD", "accessBinding": {"roleId": "editor", "subject": {
        "type": "userAccount", "id": bob["id"]}}}
    op = alice["client"].call("ProjectService.UpdateAccessBindings", {
        "resourceId": alice["project"], "accessBindingDeltas": [delta, delta]})
    result = access_pb2.AccessBindingsOperationResult()
    assert op.response.Unpack(result)
    assert len(result.effective_deltas) == 1
    op = alice["client"].call("ProjectService.UpdateAccessBindings", {
        "resourceId": alice["project"], "accessBindingDeltas": [{**delta, "action": "REMOVE"}]})
    assert op.response.Unpack(result) and len(result.effective_deltas) == 1


def test_revoked_token_and_key_are_refused(api_server) -> None:
    admin = api_server.client()
    user = admin.call("SubjectService.Create", {"type": "userAccount", "name": "revokee"})
    token = admin.call("SubjectService.IssueToken", {"subjectId": user.id})
    client = api_server.client(token=token.secret)
    client.call("TokenService.Create", {})
    admin.call("SubjectService.RevokeCredential", {"credentialId": token.id})
    assert code_of(client.call, "TokenService.Create", {}) == grpc.StatusCode.UNAUTHENTICATED

    robot = admin.call("SubjectService.Create", {"type": "serviceAccount", "name": "robot"})
    key = admin.call("SubjectService.CreateApiKey", {"subjectId": robot.id})
    headers = {"Authorization": f"Api-Key {key.secret}"}
    with httpx.Client(base_url=api_server.rest, headers=headers) as http:
        assert http.get("/opensphere/v1/organizations").status_code == 200
        admin.call("SubjectService.RevokeCredential", {"credentialId": key.id})
        assert http.get("/opensphere/v1/organizations").status_code == 401
    bearer = {"Authorization": f"Bearer {key.secret}"}  # a key is not a bearer token
    with httpx.Client(base_url=api_server.rest, headers=bearer) as http:
        assert http.get("/opensphere/v1/organizations").status_code == 401


def test_access_changes_apply_at_once_on_every_server_of_a_store(
        api_server, tmp_path: Path) -> None:
    """A second server on the same store remembers the token and the grant it checked;
    revoking through the first server, or removing the binding by hand in the database,
    still applies to the second server's very next call."""
    admin = api_server.client()
    user = admin.call("SubjectService.Create", {"type": "userAccount", "name": "replicated"})
    token = admin.call("SubjectService.IssueToken", {"subjectId": user.id})
    community = created(admin.call("CommunityService.Create", {
        "organizationId": api_server.organization_id, "name": "replicated"}),
        community_pb2.Community)
    add_role(admin, "CommunityService", community.id, "datasphere.communities.viewer", user.id)
    (tmp_path / "admin.token").write_text(api_server.token)  # the store has its admin
    replica = ServerThread(settings_for(tmp_path, api_server.settings.effective_database_url))
    other = replica.start().client(token=token.secret)
    try:
        for _ in range(2):  # the second call is answered from what the replica remembers
            assert other.call("CommunityService.Get", {"communityId": community.id}).id
        store = Database(api_server.settings.effective_database_url)
        try:
            asyncio.run(_unbind(store, community.id, user.id))
        finally:
            asyncio.run(store.close())
        assert code_of(other.call, "CommunityService.Get", {"communityId": community.id}) \
            == grpc.StatusCode.NOT_FOUND
        admin.call("SubjectService.RevokeCredential", {"credentialId": token.id})
        assert code_of(other.call, "OrganizationService.List", {}) \
            == grpc.StatusCode.UNAUTHENTICATED
    finally:
        other.close()
        replica.stop()


async def _unbind(store: Database, community_id: str, subject_id: str) -> None:
    async with store.session() as session:
        await session.execute(delete(m.AccessBinding).where(
            m.AccessBinding.resource_id == community_id, m.AccessBinding.subject_id == subject_id))


def test_audit_log_records_changes_and_refusals(api_server, tenants) -> None:
    alice, bob = tenants
    code_of(bob["client"].call, "ProjectService.Delete", {"projectId": alice["project"]})
    records = api_server.client().call("AuditService.List", {"subjectId": bob["id"]}).records
    refused = [r for r in records if r.method.endswith("ProjectService.Delete")]
    assert refused and refused[0].result in ("NOT_FOUND", "PERMISSION_DENIED")
    assert refused[0].resource_id == alice["project"]
    created_ = api_server.client().call("AuditService.List", {
        "method": "yandex.cloud.datasphere.v2.ProjectService.Create", "result": "OK"}).records
    assert {r.subject_id for r in created_} >= {alice["id"], bob["id"]}
    assert code_of(bob["client"].call, "AuditService.List", {}) == \
        grpc.StatusCode.PERMISSION_DENIED


# --- OpenID Connect -------------------------------------------------------------------------

ISSUER, AUDIENCE = "https://idp.example.test", "opensphere"


def _jwks(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory: pytest.TempPathFactory,
                fresh_database_url: FreshDatabaseUrl) -> Iterator[tuple[RunningServer, Any]]:
    folder = tmp_path_factory.mktemp("oidc")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks: Path = folder / "jwks.json"
    jwks.write_text(json.dumps(_jwks(key, "k1")))
    thread = ServerThread(settings_for(folder / "data", fresh_database_url("sqlite"),
                                       oidc_jwks_file=jwks, oidc_issuer=ISSUER,
                                       oidc_audience=AUDIENCE))
    running = thread.start()
    try:
        yield running, key
    finally:
        thread.stop()


def _token(key: Any, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 300,
            **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def test_oidc_token_is_accepted_as_a_federated_user(oidc_server) -> None:
    server, key = oidc_server
    client = server.client(token=_token(key))
    client.call("TokenService.Create", {})
    subjects = server.client().call("SubjectService.List", {"type": "federatedUser"}).subjects
    assert [s.name for s in subjects] == [f"user-42@{ISSUER}"]


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 10},
    {"iss": "https://evil.example.test"},
    {"aud": "someone-else"},
])
def test_oidc_bad_tokens_are_refused(oidc_server, claims) -> None:
    server, key = oidc_server
    client = server.client(token=_token(key, **claims))
    assert code_of(client.call, "TokenService.Create", {}) == grpc.StatusCode.UNAUTHENTICATED


def test_oidc_token_signed_by_another_key_is_refused(oidc_server) -> None:
    server, _ = oidc_server
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = server.client(token=_token(stranger))
    assert code_of(client.call, "TokenService.Create", {}) == grpc.StatusCode.UNAUTHENTICATED


def test_audit_records_survive_a_restart(tmp_path: Path,
                                         fresh_database_url: FreshDatabaseUrl) -> None:
    settings = settings_for(tmp_path, fresh_database_url("postgresql"))
    first = ServerThread(settings)
    running = first.start()
    code_of(running.client(token="os1_wrong").call, "TokenService.Create", {})
    running.client().call("CommunityService.Create", {
        "organizationId": running.organization_id, "name": "before-restart"})
    first.stop()
    second = ServerThread(settings)
    again = second.start()
    try:
        records = again.client().call("AuditService.List", {}).records
        results = {(r.method.rsplit(".", 1)[-1], r.result) for r in records}
        assert ("Create", "UNAUTHENTICATED") in results
        assert ("Create", "OK") in results
    finally:
        second.stop()


def test_open_operations_are_readable_by_their_creator_only(api_server, tenants) -> None:
    """Open's response holds a single-use session token: a project viewer must not see it."""
    from sqlalchemy import create_engine

    from opensphere.store import Database
    from opensphere.store import models as m

    alice, bob = tenants
    add_role(alice["client"], "ProjectService", alice["project"],
             "datasphere.community-projects.viewer", bob["id"])
    db = create_engine(Database(api_server.settings.effective_database_url).sync_url)
    with db.begin() as conn:
        now = m.utcnow()
        conn.execute(m.Operation.__table__.insert().values(
            id="ops-open-secret", description="Open project", resource_type="project",
            resource_id=alice["project"], created_by=alice["id"], created_at=now,
            modified_at=now, done=True))
    db.dispose()
    assert alice["client"].call("OperationService.Get", {"operationId": "ops-open-secret"})
    assert code_of(bob["client"].call, "OperationService.Get",
                   {"operationId": "ops-open-secret"}) == grpc.StatusCode.NOT_FOUND
