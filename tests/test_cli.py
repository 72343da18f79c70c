"""The ``opensphere`` command end to end: a real ``serve`` process driven by CLI processes."""

from __future__ import annotations

import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Cli, ServeProcess

from opensphere.cli.resources import CliError, parse_labels, parse_ttl


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: ServeProcess) -> Cli:
    return Cli(server.data_dir, server.grpc_address)


@pytest.fixture(scope="module")
def org_id(cli: Cli) -> str:
    orgs = cli.json("org", "list")["organizations"]
    return next(o["id"] for o in orgs if o["name"] == "default")


@pytest.fixture(scope="module")
def community_id(cli: Cli, org_id: str) -> str:
    return cli.json("community", "create", "--org", org_id, "--name", "projects-home")["id"]


def test_admin_token_is_private(server: ServeProcess) -> None:
    mode = stat.S_IMODE((server.data_dir / "admin.token").stat().st_mode)
    assert mode == 0o600


def test_org_list_readable(cli: Cli, org_id: str) -> None:
    out = cli.ok("org", "list")
    assert org_id in out and "default" in out


def test_community_lifecycle(cli: Cli, org_id: str) -> None:
    created = cli.json("community", "create", "--org", org_id, "--name", "team-a",
                       "--description", "First team", "--label", "env=dev")
    cid = created["id"]
    assert created["labels"] == {"env": "dev"} and created["organizationId"] == org_id
    listed = cli.json("community", "list", "--org", org_id, "--all")["communities"]
    assert cid in {c["id"] for c in listed}
    assert "First team" in cli.ok("community", "get", cid)

    updated = cli.json("community", "update", cid, "--description", "Renamed team",
                       "--label", "env=prod", "--label", "tier=gold")
    assert updated["name"] == "team-a" and updated["description"] == "Renamed team"
    assert updated["labels"] == {"env": "prod", "tier": "gold"}

    assert f"Deleted community {cid}" in cli.ok("community", "delete", cid)
    assert cli.fails("community", "get", cid) == f"error: NOT_FOUND: community {cid} not found"


def test_project_lifecycle(cli: Cli, community_id: str) -> None:
    created = cli.json("project", "create", "--community", community_id, "--name", "alpha",
                       "--spec", "c1.4", "--max-units-per-hour", "10", "--label", "team=ml")
    pid = created["id"]
    assert created["settings"] == {"defaultDedicatedSpec": "c1.4"}
    assert created["limits"] == {"maxUnitsPerHour": "10"}
    assert created["communityId"] == community_id

    readable = cli.ok("project", "get", pid)
    assert "alpha" in readable and "c1.4" in readable

    updated = cli.json("project", "update", pid, "--description", "first",
                       "--max-units-per-execution", "5")
    assert updated["name"] == "alpha" and updated["description"] == "first"
    assert updated["limits"] == {"maxUnitsPerHour": "10", "maxUnitsPerExecution": "5"}
    assert updated["settings"] == {"defaultDedicatedSpec": "c1.4"}

    deleted = cli.json("project", "delete", pid)
    assert deleted["done"] is True and "error" not in deleted
    cli.fails("project", "get", pid)


def test_project_list_walks_pages(cli: Cli, community_id: str) -> None:
    ids = {cli.json("project", "create", "--community", community_id, "--name", name)["id"]
           for name in ("page-a", "page-b", "page-c")}
    first = cli.json("project", "list", "--community", community_id, "--page-size", "1")
    assert len(first["projects"]) == 1 and first["nextPageToken"]

    everything = cli.json("project", "list", "--community", community_id, "--page-size", "1",
                          "--all")
    assert ids <= {p["id"] for p in everything["projects"]}
    assert "nextPageToken" not in everything

    table = cli.ok("project", "list", "--community", community_id, "--all")
    assert all(pid in table for pid in ids)
    for pid in ids:
        cli.ok("project", "delete", pid)


def test_token_create_and_use(cli: Cli, community_id: str, tmp_path: Path) -> None:
    result = cli.run("token", "create", "--description", "ci", "--ttl", "1h")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token and "\n" not in token and "shown only this once" in result.stderr

    # No admin.token where the CLI looks: only the new token can authenticate.
    stranger = Cli(tmp_path, cli.address)
    listed = stranger.json("project", "list", "--community", community_id,
                           OPENSPHERE_TOKEN=token)
    assert "projects" in listed
    assert "UNAUTHENTICATED" in stranger.fails("org", "list")

    full = cli.json("token", "create", "--ttl", "30m")
    assert full["token"] and full["tokenId"] and full["expiresAt"]


def test_not_found_is_one_line(cli: Cli) -> None:
    assert cli.fails("project", "get", "xyz") == "error: NOT_FOUND: project xyz not found"


def test_invalid_name_names_field(cli: Cli, community_id: str) -> None:
    line = cli.fails("project", "create", "--community", community_id, "--name", "Bad Name")
    assert line.startswith("error: INVALID_ARGUMENT: name")


@pytest.mark.parametrize("args", [("--label", "novalue"), ("--label", "=v")])
def test_bad_label_syntax(cli: Cli, community_id: str, args: tuple[str, str]) -> None:
    assert "KEY=VALUE" in cli.fails("project", "create", "--community", community_id, *args)


def test_missing_token_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "absent.token"
    assert str(missing) in cli.fails("org", "list", "--token-file", str(missing))


def test_update_without_fields_is_usage_error(cli: Cli) -> None:
    assert cli.run("project", "update", "xyz").returncode == 2


def test_no_server_is_unavailable(cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    line = Cli(cli.data_dir, address).fails("org", "list")
    assert line.startswith("error: UNAVAILABLE") and address in line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    served = ServeProcess(tmp_path)
    Cli(tmp_path, served.grpc_address).json("org", "list")  # stop a server that has served
    assert served.stop(sig) == 0, "".join(served.output)
    assert "Stopped." in "".join(served.output)
    assert "Traceback" not in "".join(served.output)


def test_parse_labels() -> None:
    assert parse_labels(["a=b", "c=", "d=e=f"]) == {"a": "b", "c": "", "d": "e=f"}
    with pytest.raises(CliError):
        parse_labels(["ab"])


@pytest.mark.parametrize(("text", "json_duration"),
                         [("3600s", "3600s"), ("30m", "1800s"), ("12h", "43200s"),
                          ("1h30m", "5400s"), ("7d", "604800s")])
def test_parse_ttl(text: str, json_duration: str) -> None:
    assert parse_ttl(text) == json_duration


@pytest.mark.parametrize("text", ["", "12", "1x", "h", "-1h"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(CliError):
        parse_ttl(text)
