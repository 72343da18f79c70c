"""The official SDK, in its own process, against a TLS-enabled OpenSphere server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from pg import BACKENDS, FreshDatabaseUrl
from servers import RunningServer, ServerThread, settings_for
from tls import make_certificate

SCRIPT = Path(__file__).with_name("sdk_client.py")


@pytest.fixture(scope="module", params=BACKENDS)
def tls_server(request: pytest.FixtureRequest, fresh_database_url: FreshDatabaseUrl,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder)
    thread = ServerThread(settings_for(folder / "data", fresh_database_url(request.param),
                                       tls_cert=cert, tls_key=key))
    running = thread.start()
    try:
        yield running
    finally:
        thread.stop()


def run_sdk(server: RunningServer, scenario: str, *args: str) -> dict:
    env = {**os.environ, "OPENSPHERE_SDK_ENDPOINT": server.grpc,
           "OPENSPHERE_SDK_TOKEN": server.token,
           "OPENSPHERE_SDK_CA": str(server.settings.tls_cert)}
    done = subprocess.run([sys.executable, str(SCRIPT), scenario, *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sdk_creates_gets_and_lists(tls_server: RunningServer) -> None:
    out = run_sdk(tls_server, "communities_and_projects", tls_server.organization_id)
    community, project = out["community"], out["project"]
    assert community["name"] == "sdk-community"
    assert community["organizationId"] == tls_server.organization_id
    assert out["operation"]["done"] is True
    assert out["operation"]["metadata"]["communityId"] == community["id"]
    assert out["community_get"] == community
    assert community["id"] in [c["id"] for c in out["community_list"]["communities"]]
    assert project["name"] == "sdk-project" and project["communityId"] == community["id"]
    assert out["project_get"] == project
    assert [p["id"] for p in out["project_list"]["projects"]] == [project["id"]]


def test_sdk_updates_and_lists_access_bindings(tls_server: RunningServer) -> None:
    admin = tls_server.client()
    out = run_sdk(tls_server, "communities_and_projects", tls_server.organization_id)
    user = admin.call("SubjectService.Create", {"type": "userAccount", "name": "sdk-dev"})
    got = run_sdk(tls_server, "access_bindings", out["project"]["id"], user.id)
    assert got["metadata"] == {"projectId": out["project"]["id"]}
    assert got["result"]["effectiveDeltas"][0]["accessBinding"]["subject"]["id"] == user.id
    roles = {(b["roleId"], b["subject"]["id"]) for b in got["bindings"]["accessBindings"]}
    assert ("datasphere.community-projects.developer", user.id) in roles
    assert ("datasphere.community-projects.admin", out["project"]["createdById"]) in roles


def test_sdk_executes_a_notebook_and_waits(tls_server: RunningServer) -> None:
    out = run_sdk(tls_server, "communities_and_projects", tls_server.organization_id)
    project = out["project"]["id"]
    folder = tls_server.settings.data_dir / "projects" / project
    folder.mkdir(parents=True, exist_ok=True)
    source = "import os\nresult = int(os.environ['factor']) * 7"
    notebook = new_notebook(cells=[new_code_cell(source)])
    nbformat.write(notebook, folder / "sdk.ipynb")
    got = run_sdk(tls_server, "execute", project, "sdk.ipynb")
    assert got["response"]["executionStatus"] == "OK", got
    assert got["response"]["outputVariables"] == {"result": 42.0}
    assert got["metadata"] == {"projectId": project, "notebookId": "sdk.ipynb"}


def test_sdk_reads_and_sets_balance_and_restrictions(tls_server: RunningServer) -> None:
    out = run_sdk(tls_server, "communities_and_projects", tls_server.organization_id)
    got = run_sdk(tls_server, "budget", out["project"]["id"])
    assert got["balance"] == {"unitBalance": "5000"}
    assert {r["name"] for r in got["meta"]["restrictionsMeta"]} >= {"allowed_specs"}
    expected = {"restrictions": [
        {"name": "allowed_specs", "stringValue": ["c1.4", "c1.8"]},
        {"name": "max_concurrent_runs", "longValue": ["2"]}]}
    assert got["set"] == expected and got["get"] == expected
