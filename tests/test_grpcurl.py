"""The ``grpcurl`` binary against the server, with reflection and no proto files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from servers import RunningServer

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(server: RunningServer, *args: str, data: dict | None = None) -> str:
    """Run grpcurl with the token expanded from the environment, never on the command line."""
    cmd = [str(GRPCURL), "-plaintext", "-expand-headers",
           "-rpc-header", "Authorization: Bearer ${OPENSPHERE_TEST_TOKEN}"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    cmd += [server.grpc, *args]
    env = {**os.environ, "OPENSPHERE_TEST_TOKEN": server.token}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout




def test_list_services(api_server: RunningServer) -> None:
    services = grpcurl(api_server, "list").split()
    for name in ("yandex.cloud.datasphere.v2.CommunityService",
                 "yandex.cloud.datasphere.v2.ProjectService",
                 "yandex.cloud.operation.OperationService",
                 "yandex.cloud.endpoint.ApiEndpointService",
                 "grpc.health.v1.Health"):
        assert name in services


def test_describe_uses_reflection(api_server: RunningServer) -> None:
    text = grpcurl(api_server, "describe", "yandex.cloud.datasphere.v2.ProjectService")
    assert "rpc Execute ( .yandex.cloud.datasphere.v2.ProjectExecutionRequest )" in text


def test_create_community_and_list_projects(api_server: RunningServer) -> None:
    op = json.loads(grpcurl(api_server, "yandex.cloud.datasphere.v2.CommunityService/Create",
                            data={"organization_id": api_server.organization_id,
                                  "name": "grpcurl-team"}))
    assert op["done"] is True
    community = op["response"]
    assert community["@type"] == "type.googleapis.com/yandex.cloud.datasphere.v2.Community"
    project_op = json.loads(grpcurl(
        api_server, "yandex.cloud.datasphere.v2.ProjectService/Create",
        data={"community_id": community["id"], "name": "from-grpcurl"}))
    listed = json.loads(grpcurl(api_server, "yandex.cloud.datasphere.v2.ProjectService/List",
                                data={"community_id": community["id"]}))
    assert [p["id"] for p in listed["projects"]] == [project_op["response"]["id"]]
