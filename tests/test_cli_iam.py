"""``opensphere iam`` and ``opensphere audit`` end to end, against a real ``serve`` process.

The administrator (admin.token in the server's data folder) manages subjects; the other
subjects call from a folder without admin.token, with OPENSPHERE_TOKEN or OPENSPHERE_API_KEY.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cli_support import Cli, ServeProcess

from opensphere.cli.iam import full_method, parse_result, parse_since, parse_subject
from opensphere.cli.resources import CliError

CREATE_COMMUNITY = "yandex.cloud.datasphere.v2.CommunityService.Create"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: ServeProcess) -> Cli:
    """The administrator."""
    return Cli(server.data_dir, server.grpc_address)


@pytest.fixture(scope="module")
def outsider(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A caller whose data folder has no admin.token: only the credential it is given counts."""
    return Cli(tmp_path_factory.mktemp("outsider"), cli.address)


@pytest.fixture(scope="module")
def org_id(cli: Cli) -> str:
    orgs = cli.json("org", "list")["organizations"]
    return next(o["id"] for o in orgs if o["name"] == "default")


@pytest.fixture(scope="module")
def user(cli: Cli) -> dict[str, Any]:
    return cli.json("iam", "user", "create", "alice")


@pytest.fixture(scope="module")
def service_account(cli: Cli) -> dict[str, Any]:
    return cli.json("iam", "sa", "create", "ci-bot")


@pytest.fixture(scope="module")
def team(cli: Cli, user: dict[str, Any]) -> dict[str, Any]:
    """A group with the user as its member."""
    group = cli.json("iam", "group", "create", "ml-team")
    line = cli.ok("iam", "group", "add-member", group["id"], user["id"])
    assert line.strip() == f"Added {user['id']} to group {group['id']}."
    return group


@pytest.fixture(scope="module")
def user_token(cli: Cli, user: dict[str, Any]) -> str:
    result = cli.run("iam", "token", "create", "--subject", user["id"], "--ttl", "1h",
                     "--description", "laptop")
    assert result.returncode == 0, result.stderr
    assert "shown only this once" in result.stderr and user["id"] in result.stderr
    return result.stdout.strip()


def _org_ids(caller: Cli, **env: str) -> set[str]:
    return {o["id"] for o in caller.json("org", "list", **env).get("organizations", [])}


def test_subjects_created_and_listed(cli: Cli, user: dict[str, Any],
                                     service_account: dict[str, Any],
                                     team: dict[str, Any]) -> None:
    assert (user["type"], user["name"]) == ("userAccount", "alice")
    assert (service_account["type"], service_account["name"]) == ("serviceAccount", "ci-bot")
    assert user["id"] != service_account["id"] and user["createdAt"]

    users = cli.ok("iam", "user", "list")
    assert user["id"] in users and "alice" in users and "userAccount" in users
    assert service_account["id"] not in users
    accounts = cli.json("iam", "sa", "list")["subjects"]
    assert [a["id"] for a in accounts] == [service_account["id"]]

    groups = cli.json("iam", "group", "list")["subjects"]
    assert [(g["id"], g["memberIds"]) for g in groups] == [(team["id"], [user["id"]])]
    assert user["id"] in cli.ok("iam", "group", "list")  # the MEMBERS column

    assert "ALREADY_EXISTS" in cli.fails("iam", "user", "create", "alice")


def test_group_members(cli: Cli, team: dict[str, Any], service_account: dict[str, Any],
                       user: dict[str, Any]) -> None:
    sa_id = service_account["id"]
    assert cli.json("iam", "group", "add-member", team["id"], sa_id) == {}
    listed = cli.json("iam", "group", "list")["subjects"][0]
    assert sorted(listed["memberIds"]) == sorted([user["id"], sa_id])

    line = cli.ok("iam", "group", "remove-member", team["id"], sa_id).strip()
    assert line == f"Removed {sa_id} from group {team['id']}."
    assert cli.json("iam", "group", "list")["subjects"][0]["memberIds"] == [user["id"]]
    assert "INVALID_ARGUMENT" in cli.fails("iam", "group", "add-member", team["id"], team["id"])


def test_user_sees_organization_once_granted(cli: Cli, outsider: Cli, user: dict[str, Any],
                                             user_token: str, org_id: str) -> None:
    assert user_token.startswith("os1_")
    assert _org_ids(outsider, OPENSPHERE_TOKEN=user_token) == set()
    member = f"userAccount:{user['id']}"

    line = cli.ok("iam", "grant", "organization", org_id, "viewer", member).strip()
    assert line == f"Granted viewer on organization {org_id} to {member}."
    assert _org_ids(outsider, OPENSPHERE_TOKEN=user_token) == {org_id}
    bindings = cli.json("iam", "bindings", "organization", org_id)["accessBindings"]
    assert {"roleId": "viewer", "subject": {"id": user["id"], "type": "userAccount"}} in bindings
    assert user["id"] in cli.ok("iam", "bindings", "organization", org_id)

    revoked = cli.json("iam", "revoke", "organization", org_id, "viewer", member)
    assert revoked["done"] is True and "error" not in revoked
    assert _org_ids(outsider, OPENSPHERE_TOKEN=user_token) == set()


def test_group_role_reaches_members(cli: Cli, outsider: Cli, team: dict[str, Any],
                                    user_token: str, org_id: str) -> None:
    community = cli.json("community", "create", "--org", org_id, "--name", "shared")["id"]
    as_user = {"OPENSPHERE_TOKEN": user_token}
    assert "NOT_FOUND" in outsider.fails("community", "get", community, **as_user)

    cli.ok("iam", "grant", "community", community, "datasphere.communities.viewer",
           f"group:{team['id']}")
    assert outsider.json("community", "get", community, **as_user)["name"] == "shared"
    page = cli.json("iam", "bindings", "community", community)["accessBindings"]
    assert {"roleId": "datasphere.communities.viewer",
            "subject": {"id": team["id"], "type": "group"}} in page


def test_grant_is_checked(cli: Cli, org_id: str, user: dict[str, Any]) -> None:
    assert "expected TYPE:ID" in cli.fails("iam", "grant", "organization", org_id, "viewer",
                                            user["id"])
    line = cli.fails("iam", "grant", "organization", org_id, "no-such-role",
                     f"userAccount:{user['id']}")
    assert line.startswith("error: INVALID_ARGUMENT") and "no-such-role" in line
    assert cli.run("iam", "grant", "galaxy", org_id, "viewer", "x:y").returncode == 2


def test_api_key_works_until_revoked(cli: Cli, outsider: Cli,
                                     service_account: dict[str, Any]) -> None:
    result = cli.run("iam", "key", "create", "--subject", service_account["id"])
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key and "\n" not in key and "expires never" in result.stderr

    credential = cli.json("iam", "key", "create", "--subject", service_account["id"],
                          "--description", "deploy")
    assert credential["kind"] == "api_key" and "expiresAt" not in credential
    second = credential["secret"]

    assert _org_ids(outsider, OPENSPHERE_API_KEY=second) == set()
    assert "UNAUTHENTICATED" in outsider.fails("org", "list", OPENSPHERE_TOKEN=second)

    line = cli.ok("iam", "key", "revoke", credential["id"]).strip()
    assert line == f"Revoked API key {credential['id']}."
    assert outsider.fails("org", "list", OPENSPHERE_API_KEY=second).startswith(
        "error: UNAUTHENTICATED")
    assert _org_ids(outsider, OPENSPHERE_API_KEY=key) == set()  # the other key still works


def test_api_keys_only_for_service_accounts(cli: Cli, user: dict[str, Any]) -> None:
    assert "INVALID_ARGUMENT" in cli.fails("iam", "key", "create", "--subject", user["id"])


def test_token_revoke(cli: Cli, outsider: Cli, service_account: dict[str, Any]) -> None:
    token = cli.json("iam", "token", "create", "--subject", service_account["id"])
    assert token["kind"] == "bearer" and token["expiresAt"]
    assert _org_ids(outsider, OPENSPHERE_TOKEN=token["secret"]) == set()
    assert cli.json("iam", "token", "revoke", token["id"]) == {}
    assert "UNAUTHENTICATED" in outsider.fails("org", "list", OPENSPHERE_TOKEN=token["secret"])
    assert "NOT_FOUND" in cli.fails("iam", "token", "revoke", "tok-missing")


def test_only_the_administrator_manages_subjects(outsider: Cli, user_token: str) -> None:
    line = outsider.fails("iam", "user", "list", OPENSPHERE_TOKEN=user_token)
    assert line.startswith("error: PERMISSION_DENIED")
    assert "PERMISSION_DENIED" in outsider.fails("audit", "list", OPENSPHERE_TOKEN=user_token)


def test_audit_shows_refusals_and_creations(cli: Cli, outsider: Cli, user: dict[str, Any],
                                            user_token: str, org_id: str) -> None:
    member = f"userAccount:{user['id']}"
    cli.ok("iam", "grant", "organization", org_id, "viewer", member)
    refused = outsider.fails("community", "create", "--org", org_id, "--name", "nope",
                             OPENSPHERE_TOKEN=user_token)
    assert refused.startswith("error: PERMISSION_DENIED")
    created = cli.json("community", "create", "--org", org_id, "--name", "audited")
    cli.ok("iam", "revoke", "organization", org_id, "viewer", member)

    denied = cli.json("audit", "list", "--result", "permission_denied", "--subject", user["id"],
                      "--method", "CommunityService.Create")["records"]
    assert [(r["subjectId"], r["resourceId"]) for r in denied] == [(user["id"], org_id)]
    table = cli.ok("audit", "list", "--result", "PERMISSION_DENIED", "--since", "1h")
    assert "CommunityService.Create" in table and user["id"] in table

    creations = cli.json("audit", "list", "--method", "CommunityService.Create")["records"]
    assert {r["result"] for r in creations} == {"OK", "PERMISSION_DENIED"}
    assert all(r["method"] == CREATE_COMMUNITY for r in creations)
    assert creations[0]["result"] == "OK"  # newest first: the refusal came before
    ok = cli.json("audit", "list", "--method", CREATE_COMMUNITY, "--result", "OK")["records"]
    assert {r["resourceId"] for r in ok} == {org_id} and created["id"]

    assert len(cli.json("audit", "list", "--limit", "2")["records"]) == 2
    future = cli.json("audit", "list", "--since", "2999-01-01T00:00:00Z")
    assert future == {"records": []}


def test_audit_records_unauthenticated_calls(cli: Cli, outsider: Cli) -> None:
    outsider.fails("org", "list", OPENSPHERE_TOKEN="os1_not-a-token")
    records = cli.json("audit", "list", "--result", "UNAUTHENTICATED", "--limit", "1")["records"]
    assert records[0]["method"].endswith("OrganizationService.List")


@pytest.mark.parametrize("args", [("--result", "MAYBE"), ("--method", "Nope.Create"),
                                  ("--since", "yesterday")])
def test_audit_filters_checked(cli: Cli, args: tuple[str, str]) -> None:
    assert args[0] in cli.fails("audit", "list", *args)


def test_delete_subjects(cli: Cli, outsider: Cli, org_id: str) -> None:
    user = cli.json("iam", "user", "create", "bob")
    bot = cli.json("iam", "sa", "create", "old-bot")
    group = cli.json("iam", "group", "create", "old-team")
    token = cli.json("iam", "token", "create", "--subject", user["id"])["secret"]
    cli.ok("iam", "grant", "organization", org_id, "viewer", f"userAccount:{user['id']}")

    for command, subject in (("user", user), ("sa", bot), ("group", group)):
        noun = {"user": "user", "sa": "service account", "group": "group"}[command]
        line = cli.ok("iam", command, "delete", subject["id"]).strip()
        assert line == f"Deleted {noun} {subject['id']}."
        listed = cli.json("iam", command, "list").get("subjects", [])
        assert subject["id"] not in {s["id"] for s in listed}
        assert "NOT_FOUND" in cli.fails("iam", command, "delete", subject["id"])

    assert "UNAUTHENTICATED" in outsider.fails("org", "list", OPENSPHERE_TOKEN=token)
    bindings = cli.json("iam", "bindings", "organization", org_id)["accessBindings"]
    assert user["id"] not in {b["subject"]["id"] for b in bindings}


def test_parse_subject() -> None:
    assert parse_subject("userAccount:aje1") == {"type": "userAccount", "id": "aje1"}
    assert parse_subject("system:allAuthenticatedUsers")["id"] == "allAuthenticatedUsers"
    for bad in ("aje1", ":aje1", "userAccount:"):
        with pytest.raises(CliError):
            parse_subject(bad)


def test_parse_since() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("1h30m", now) == "2026-03-01T10:30:00Z"
    assert parse_since("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    assert parse_since("2026-01-01T03:00:00+03:00") == "2026-01-01T00:00:00Z"
    assert parse_since("2026-01-01") == "2026-01-01T00:00:00Z"
    with pytest.raises(CliError):
        parse_since("-1h")


def test_parse_result_and_method() -> None:
    assert parse_result("not_found") == "NOT_FOUND"
    assert parse_result("OK") == "OK"
    assert full_method("AuditService.List") == "opensphere.v1.AuditService.List"
    assert full_method(CREATE_COMMUNITY) == CREATE_COMMUNITY
    with pytest.raises(CliError):
        parse_result("DENIED")
