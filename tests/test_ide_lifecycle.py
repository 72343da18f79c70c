"""An IDE stops after its project's inactivity timeout, but not while a kernel executes.

Nothing here depends on the store, so it runs on SQLite only.
"""

from __future__ import annotations

import json
import time

import pytest
from servers import RunningServer
from test_ide_gateway import (
    alive,
    browser,
    create_project,
    entry,
    kernel_message,
    lab_pid,
    open_project,
    origin_of,
)
from websockets.sync.client import connect

pytestmark = pytest.mark.parametrize("api_server", ["sqlite"], indirect=True, scope="module")
IDLE_TIMEOUT = 2.0
CELL_SECONDS = 6.0


def test_an_idle_ide_stops_but_not_while_a_kernel_runs(api_server: RunningServer) -> None:
    project_id = create_project(api_server, vmInactivityTimeout=f"{IDLE_TIMEOUT:.0f}s")
    url, token = entry(open_project(api_server.client(), project_id)[0])
    http = browser(url, token)
    pid = lab_pid(api_server, project_id)
    kernel = http.post(url + "api/kernels", json={"name": "python3"}).json()
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    with connect(url.replace("http", "ws", 1) + f"api/kernels/{kernel['id']}/channels",
                 proxy=None, additional_headers={"Cookie": cookie, "Origin": origin_of(url)},
                 open_timeout=30) as ws:
        msg_id, request = kernel_message(
            "execute_request", {"code": f"import time; time.sleep({CELL_SECONDS})",
                                "silent": False})
        ws.send(request)
        while True:  # until the kernel says it is busy with our cell
            message = json.loads(ws.recv(timeout=60))
            if message["parent_header"].get("msg_id") == msg_id and \
                    message["msg_type"] == "status" and \
                    message["content"]["execution_state"] == "busy":
                break
    busy_since = time.monotonic()

    time.sleep(2 * IDLE_TIMEOUT)  # no traffic at all, but the cell still runs
    assert alive(pid)
    deadline = busy_since + CELL_SECONDS + 4 * IDLE_TIMEOUT + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    assert time.monotonic() - busy_since >= CELL_SECONDS - 0.5
    answer = http.get(url + "api/status")
    assert answer.status_code == 503
    assert "open the project again" in answer.text
