"""The IDE behind its gateway: ProjectService.Open, session tokens, cookies, origins, proxy.

One JupyterLab per backend (module-scoped), opened through the real gRPC API; the browser's
side is played by httpx and the ``websockets`` client on the REST port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from google.protobuf.message import Message
from servers import RunningServer, ServerThread
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from opensphere.cli import ide as ide_cli
from opensphere.cli import resources
from opensphere.client import Client
from opensphere.ids import new_id
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.datasphere.v2.community_pb2 import Community
from opensphere.proto_gen.yandex.cloud.datasphere.v2.project_pb2 import Project
from opensphere.proto_gen.yandex.cloud.operation.operation_pb2 import Operation
from opensphere.services import ide as ide_service
from opensphere.store import Database
from opensphere.store import models as m

Status = ps.OpenProjectMetadata.OpenProjectStatus
EVIL = "https://evil.example"
SERVER_SECRET = "OPENSPHERE_IDE_TEST_SECRET"


def unpack(packed: Any, message: Message) -> Any:
    packed.Unpack(message)
    return message


def create_project(server: RunningServer, **settings: Any) -> str:
    client = server.client()
    community = client.wait(client.call(  # type: ignore[arg-type]
        "CommunityService.Create", {"organizationId": server.organization_id,
                                    "name": "ide-tests"}))
    project = client.wait(client.call(  # type: ignore[arg-type]
        "ProjectService.Create", {"communityId": unpack(community.response, Community()).id,
                                  "name": "ide-project", "settings": settings}))
    return str(unpack(project.response, Project()).id)


def open_project(client: Client, project_id: str) -> tuple[Operation, list[int]]:
    """Open, then poll the operation closely: it, done, and the statuses seen on the way."""
    operation: Any = client.call("ProjectService.Open", {"projectId": project_id})
    statuses: list[int] = []
    while True:
        status = unpack(operation.metadata, ps.OpenProjectMetadata()).status
        if status and status not in statuses:
            statuses.append(status)
        if operation.done:
            assert not operation.HasField("error"), operation.error
            return operation, statuses
        operation = client.call("OperationService.Get", {"operationId": operation.id})


def entry(operation: Operation) -> tuple[str, str]:
    response = unpack(operation.response, ps.OpenProjectResponse())
    return response.project_url, response.session_token


def browser(url: str, token: str) -> httpx.Client:
    """A client holding the gateway cookie, as a browser has after following the link."""
    client = httpx.Client()
    answer = client.get(url, params={"sessionToken": token})
    assert answer.status_code == 303, answer.text
    return client


def origin_of(url: str) -> str:
    return re.match(r"https?://[^/]+", url).group(0)  # type: ignore[union-attr]


def lab_files(server: RunningServer, project_id: str) -> Path:
    """The running Lab's server file (``jpserver-<pid>.json``, which holds its token)."""
    runtime = server.settings.data_dir / "ide" / project_id / "runtime"
    deadline = time.monotonic() + 30  # written a moment after the Lab starts answering
    while not (found := list(runtime.glob("jpserver-*.json"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    (info,) = found
    return info


def lab_pid(server: RunningServer, project_id: str) -> int:
    return int(lab_files(server, project_id).stem.removeprefix("jpserver-"))


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kernel_message(msg_type: str, content: dict[str, Any]) -> tuple[str, str]:
    """A Jupyter message on the shell channel (the JSON WebSocket protocol); and its id."""
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test",
                   "session": uuid.uuid4().hex, "version": "5.3",
                   "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"})


@dataclass
class Ide:
    server: RunningServer
    project_id: str
    url: str
    statuses: list[int]
    http: httpx.Client  # holds the cookie

    @property
    def lab_token(self) -> str:
        return str(json.loads(lab_files(self.server, self.project_id).read_text())["token"])

    def ws(self, path: str, **headers: str) -> ClientConnection:
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        return connect(self.url.replace("http", "ws", 1) + path, proxy=None,
                       additional_headers={"Cookie": cookie, **headers}, open_timeout=30)


@pytest.fixture(scope="module")
def ide(api_server: RunningServer) -> Ide:
    project_id = create_project(api_server)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SERVER_SECRET, "the database password")  # in the server as the Lab starts
        operation, statuses = open_project(api_server.client(), project_id)
    url, token = entry(operation)
    return Ide(api_server, project_id, url, statuses, browser(url, token))


def test_open_reports_its_phases_and_returns_the_project_url(ide: Ide) -> None:
    assert ide.url == f"{ide.server.rest}/ide/{ide.project_id}/"
    assert Status.OPEN_PROJECT_STATUS_STARTING_IDE in ide.statuses
    order = [Status.OPEN_PROJECT_STATUS_CLOSING_IDE,
             Status.OPEN_PROJECT_STATUS_ALLOCATING_RESOURCES,
             Status.OPEN_PROJECT_STATUS_STARTING_IDE]
    assert ide.statuses == sorted(ide.statuses, key=order.index)


def test_opening_again_reuses_the_running_ide(ide: Ide) -> None:
    started = ide.http.get(ide.url + "api/status").json()["started"]
    operation = ide.server.client().call("ProjectService.Open", {"projectId": ide.project_id})
    assert operation.done  # type: ignore[attr-defined]
    url, token = entry(operation)  # type: ignore[arg-type]
    assert url == ide.url
    assert browser(url, token).get(url + "api/status").json()["started"] == started


def test_a_session_token_works_once(ide: Ide) -> None:
    _, token = entry(open_project(ide.server.client(), ide.project_id)[0])
    first = httpx.get(ide.url, params={"sessionToken": token})
    assert first.status_code == 303
    assert first.headers["location"] == f"/ide/{ide.project_id}/lab"
    cookie = first.headers["set-cookie"].lower()
    assert f"path=/ide/{ide.project_id.lower()}/" in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    again = httpx.get(ide.url, params={"sessionToken": token})
    assert again.status_code == 401
    assert "set-cookie" not in again.headers


def test_a_session_token_can_be_posted(ide: Ide) -> None:
    _, token = entry(open_project(ide.server.client(), ide.project_id)[0])
    assert httpx.post(ide.url, data={"sessionToken": token}).status_code == 303
    _, token = entry(open_project(ide.server.client(), ide.project_id)[0])
    assert httpx.post(ide.url, json={"sessionToken": token}).status_code == 303
    assert httpx.post(ide.url, data={"sessionToken": "made-up"}).status_code == 401


def test_tokens_and_cookies_are_bound_to_their_project(ide: Ide) -> None:
    other = create_project(ide.server)
    other_url = ide.url.replace(ide.project_id, other)
    _, token = entry(open_project(ide.server.client(), ide.project_id)[0])
    assert httpx.get(other_url, params={"sessionToken": token}).status_code == 401
    # The cookie's path keeps a browser from sending it elsewhere; the server checks anyway.
    cookie = "; ".join(f"{k}={v}" for k, v in ide.http.cookies.items())
    answer = httpx.get(other_url + "api/status", headers={"Cookie": cookie})
    assert answer.status_code == 401


def test_without_a_cookie_nothing_reaches_the_lab(ide: Ide) -> None:
    for path in ("lab", "api/status", "api/kernels", "files/anything"):
        assert httpx.get(ide.url + path).status_code == 401, path
    assert httpx.post(ide.url + "api/kernels", json={}).status_code == 401
    forged = httpx.get(ide.url + "api/status", cookies={"opensphere_ide": "forged"})
    assert forged.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        connect(ide.url.replace("http", "ws", 1) + "api/events/subscribe", proxy=None)
    assert refused.value.response.status_code == 401


def test_other_sites_cannot_change_state(ide: Ide) -> None:
    new_file = {"type": "file", "ext": ".txt"}
    refused = ide.http.post(ide.url + "api/contents", json=new_file, headers={"Origin": EVIL})
    assert refused.status_code == 403
    with pytest.raises(InvalidStatus) as denied:
        ide.ws("api/events/subscribe", Origin=EVIL)
    assert denied.value.response.status_code == 403
    own = ide.http.post(ide.url + "api/contents", json=new_file,
                        headers={"Origin": origin_of(ide.url)})
    assert own.status_code == 201, own.text
    ide.http.delete(ide.url + "api/contents/" + own.json()["path"],
                    headers={"Origin": origin_of(ide.url)})


def run_code(ws: ClientConnection, code: str) -> str:
    """Execute ``code`` over a kernel's channels WebSocket; what it printed."""
    msg_id, request = kernel_message("execute_request", {"code": code, "silent": False})
    ws.send(request)
    printed, replied, idle = [], False, False
    while not (replied and idle):  # the reply (shell) may overtake the output (iopub)
        message = json.loads(ws.recv(timeout=60))
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        elif message["msg_type"] == "execute_reply":
            assert message["content"]["status"] == "ok", message["content"]
            replied = True
        elif message["msg_type"] == "status":
            idle = message["content"]["execution_state"] == "idle"
    return "".join(printed)


def test_a_kernel_runs_code_over_the_proxied_websocket(ide: Ide) -> None:
    kernel = ide.http.post(ide.url + "api/kernels", json={"name": "python3"}).json()
    try:
        with ide.ws(f"api/kernels/{kernel['id']}/channels", Origin=origin_of(ide.url)) as ws:
            assert run_code(ws, "print(6 * 7)") == "42\n"
            names = run_code(ws, "import os; print(sorted(os.environ))")
    finally:
        ide.http.delete(ide.url + f"api/kernels/{kernel['id']}")
    # The Lab and its kernels start from a short list of the server's variables.
    assert "PATH" in names and SERVER_SECRET not in names


def test_the_lab_token_never_reaches_the_browser(ide: Ide) -> None:
    page = ide.http.get(ide.url + "lab")
    config = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                       page.text, re.S)
    assert config is not None and json.loads(config.group(1))["token"] == ""
    answers = [page, *(ide.http.get(ide.url + path) for path in (
        "lab/tree", "api/status", "api/me", "api/kernelspecs", "api/contents", "api/sessions",
        "api/terminals", "lab/api/settings", "lab/api/workspaces/default"))]
    for answer in answers:
        assert answer.status_code == 200, answer.url
        assert ide.lab_token not in answer.text, answer.url
        assert not any(ide.lab_token in v for v in answer.headers.values()), answer.url
        assert "set-cookie" not in answer.headers, answer.url


def test_cli_prints_a_working_link(ide: Ide) -> None:
    app = typer.Typer()
    ide_cli.register(resources.register(app)["project"])
    result = CliRunner().invoke(app, [
        "project", "open", ide.project_id, "--address", ide.server.grpc,
        "--token-file", str(ide.server.settings.data_dir / "admin.token")])
    assert result.exit_code == 0, result.output
    (link,) = re.findall(r"^http\S+$", result.stdout, re.M)
    assert link.startswith(ide.url + "?sessionToken=")
    assert httpx.get(link).status_code == 303


def test_an_ide_that_died_is_replaced_on_open(ide: Ide) -> None:
    started = ide.http.get(ide.url + "api/status").json()["started"]
    pid = lab_pid(ide.server, ide.project_id)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ide.http.get(ide.url + "api/status").status_code in (502, 503)
    _, statuses = open_project(ide.server.client(), ide.project_id)
    assert Status.OPEN_PROJECT_STATUS_STARTING_IDE in statuses
    # The cookie is bound to the project, not to one Lab process: it still works.
    assert ide.http.get(ide.url + "api/status").json()["started"] != started


def test_an_open_abandoned_by_a_stopped_server_fails(ide: Ide) -> None:
    """A server starting on the store fails Open operations that no worker touched for
    longer than any phase lasts, and leaves recent ones (another replica's) alone."""
    engine = create_engine(Database(ide.server.settings.effective_database_url).sync_url)
    stale, recent = new_id("ops"), new_id("ops")
    with Session(engine) as session, session.begin():
        for operation_id, at in ((stale, m.utcnow() - timedelta(hours=1)),
                                 (recent, m.utcnow())):
            session.add(m.Operation(
                id=operation_id, description=ide_service.DESCRIPTION, resource_type="project",
                resource_id=ide.project_id, created_by="", created_at=at, modified_at=at,
                done=False))
    engine.dispose()
    replica = ServerThread(ide.server.settings)
    replica.start()
    replica.stop()
    client = ide.server.client()
    failed: Any = client.call("OperationService.Get", {"operationId": stale})
    assert failed.done and failed.error.code == 10  # ABORTED
    untouched: Any = client.call("OperationService.Get", {"operationId": recent})
    assert not untouched.done
