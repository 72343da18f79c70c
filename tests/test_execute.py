"""ProjectService.Execute end to end: real kernels behind real gRPC and REST."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import nbformat
import pytest
from google.protobuf import json_format
from nbformat.v4 import new_code_cell, new_notebook
from pg import FreshDatabaseUrl
from servers import RunningServer, ServerThread, settings_for

from opensphere.client import Client, ClientError
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           fresh_database_url: FreshDatabaseUrl) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("execute")
    thread = ServerThread(settings_for(folder, fresh_database_url("sqlite"),
                                       kernel_pool_size=2))
    running = thread.start()
    try:
        yield running
    finally:
        thread.stop()


def make_project(server: RunningServer, **settings: Any) -> tuple[str, Path]:
    client = server.client()
    community = community_pb2.Community()
    client.call("CommunityService.Create", {"organizationId": server.organization_id}
                ).response.Unpack(community)
    project = project_pb2.Project()
    client.call("ProjectService.Create", {"communityId": community.id, "settings": settings}
                ).response.Unpack(project)
    return project.id, server.settings.data_dir / "projects" / project.id


def write(folder: Path, name: str, *sources: str, tags: dict[int, list[str]] | None = None
          ) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=[new_code_cell(s) for s in sources])
    for index, cell_tags in (tags or {}).items():
        notebook.cells[index].metadata["tags"] = cell_tags
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / name)
    return notebook


def run(client: Client, project: str, notebook: str, timeout: float = 120, **extra: Any
        ) -> tuple[Any, ps.ProjectExecutionResponse]:
    op = client.wait(client.call("ProjectService.Execute", {
        "projectId": project, "notebookId": notebook, **extra}), timeout=timeout, poll=0.05)
    response = ps.ProjectExecutionResponse()
    assert op.response.Unpack(response), op
    return op, response


@pytest.fixture(scope="module")
def project(server: RunningServer) -> tuple[str, Path]:
    return make_project(server)


def test_inputs_outputs_and_state(server, project) -> None:
    pid, folder = project
    write(folder, "params.ipynb",
          "alpha = 1\nlabel = 'default'",
          "import os, numpy as np, pandas as pd\n"
          "env_alpha = os.environ['alpha']\nenv_cfg = os.environ['cfg']\n"
          "doubled = alpha * 2\narr = np.arange(3)\nscalar = np.float64(1.5)\n"
          "frame = pd.DataFrame({'a': [1, 2]})\nobj = object()\nprint('ran', doubled)",
          tags={0: ["parameters"]})
    client = server.client()
    op, response = run(client, pid, "params.ipynb",
                       inputVariables={"alpha": 21, "label": "x", "cfg": {"k": [1, 2]}},
                       outputVariableNames=["doubled", "label", "env_alpha", "env_cfg", "arr",
                                            "scalar", "frame", "obj", "undefined_name"])
    assert response.execution_status == ps.OK, response
    out = json_format.MessageToDict(response.output_variables)
    assert out["doubled"] == 42 and out["label"] == "x"
    assert out["env_alpha"] == "21" and json.loads(out["env_cfg"]) == {"k": [1, 2]}
    assert out["arr"] == [0, 1, 2] and out["scalar"] == 1.5
    assert "object object at" in out["obj"]
    assert out["frame"]
    assert list(response.missing_output_variables) == ["undefined_name"]
    state = client.call("ProjectService.GetStateVariables", {
        "projectId": pid, "notebookId": "params.ipynb", "variableNames": ["doubled"]})
    assert dict(state.variables) == {"doubled": 42}
    executed = nbformat.read(folder / "params.executed.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_state_persists_between_runs(server, project) -> None:
    pid, folder = project
    write(folder, "counter.ipynb", "counter = globals().get('counter', 0) + 1")
    client = server.client()
    run(client, pid, "counter.ipynb")
    _, response = run(client, pid, "counter.ipynb", outputVariableNames=["counter"])
    assert response.output_variables["counter"] == 2


def test_raising_cell_is_error_with_traceback_in_checkpoint(server, project) -> None:
    pid, folder = project
    notebook = write(folder, "boom.ipynb", "x = 1", "1 / 0", "never = True")
    client = server.client()
    _, response = run(client, pid, "boom.ipynb")
    assert response.execution_status == ps.ERROR
    assert "ZeroDivisionError" in response.error.message
    assert "cell 1" in response.error.message
    outputs = client.call("ProjectService.GetCellOutputs", {
        "projectId": pid, "cellId": notebook.cells[1].id,
        "checkpointId": response.checkpoint_id}).outputs
    assert json.loads(outputs[0])["ename"] == "ZeroDivisionError"
    assert json.loads(outputs[0])["traceback"]


def test_dead_kernel_is_error_and_next_run_works(server, project) -> None:
    pid, folder = project
    write(folder, "die.ipynb", "import os\nos._exit(1)")
    write(folder, "fine.ipynb", "ok = True")
    client = server.client()
    _, response = run(client, pid, "die.ipynb")
    assert response.execution_status == ps.ERROR
    assert "KERNEL_DIED" in str(response.error.details[0].value)
    write(folder, "die.ipynb", "ok = 'again'")
    _, response = run(client, pid, "die.ipynb", outputVariableNames=["ok"])
    assert response.execution_status == ps.OK and response.output_variables["ok"] == "again"


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_endless_loop_cancelled_is_aborted(server, project, transport) -> None:
    pid, folder = project
    write(folder, f"loop-{transport}.ipynb", "while True:\n    pass")
    client = server.client()
    op = client.call("ProjectService.Execute", {"projectId": pid,
                                                "notebookId": f"loop-{transport}.ipynb"})
    assert not op.done
    started = time.monotonic()
    if transport == "grpc":
        client.call("OperationService.Cancel", {"operationId": op.id})
    else:
        with httpx.Client(base_url=server.rest, headers={
                "Authorization": f"Bearer {server.token}"}) as http:
            assert http.post(f"/operations/{op.id}:cancel").status_code == 200
    op = client.wait(op, timeout=30)
    assert time.monotonic() - started < 15
    response = ps.ProjectExecutionResponse()
    op.response.Unpack(response)
    assert response.execution_status == ps.ABORTED


def test_eight_notebooks_at_once(server, project) -> None:
    pid, folder = project
    for i in range(8):
        write(folder, f"par{i}.ipynb", f"import time\ntime.sleep(1)\nvalue = {i}")
    client = server.client()
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: run(client, pid, f"par{i}.ipynb",
                                              outputVariableNames=["value"])[1], range(8)))
    assert [r.output_variables["value"] for r in results] == list(range(8))
    assert time.monotonic() - started < 30  # side by side, not 8 kernels in a row


@pytest.mark.parametrize(("request_", "field"), [
    ({"notebookId": "../outside.ipynb"}, "notebook_id"),
    ({"notebookId": "/etc/passwd"}, "notebook_id"),
    ({"notebookId": "missing.ipynb"}, "notebook_id"),
    ({"notebookId": "fine.ipynb", "spec": "c9.99"}, "spec"),
    ({"notebookId": "fine.ipynb", "spec": "g2.8"}, "spec"),
    ({"cellId": "no-such-cell"}, "cell_id"),
    ({}, "target"),
])
def test_bad_requests_are_invalid_arguments(server, project, request_, field) -> None:
    pid, folder = project
    write(folder, "fine.ipynb", "ok = True")
    with pytest.raises(ClientError) as info:
        server.client().call("ProjectService.Execute", {"projectId": pid, **request_})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in str(info.value)


def test_symlink_out_of_the_project_is_refused(server, project, tmp_path) -> None:
    pid, folder = project
    outside = tmp_path / "secret.ipynb"
    write(tmp_path, "secret.ipynb", "x = 1")
    (folder / "link.ipynb").symlink_to(outside)
    with pytest.raises(ClientError) as info:
        server.client().call("ProjectService.Execute", {"projectId": pid,
                                                        "notebookId": "link.ipynb"})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_cell_id_target_runs_one_cell(server, project) -> None:
    pid, folder = project
    notebook = write(folder, "cells.ipynb", "a = 1", "b = 2")
    client = server.client()
    op = client.wait(client.call("ProjectService.Execute", {
        "projectId": pid, "cellId": notebook.cells[1].id, "outputVariableNames": ["b"]}))
    response = ps.ProjectExecutionResponse()
    op.response.Unpack(response)
    assert response.output_variables["b"] == 2
    assert op.metadata.value  # ProjectExecutionMetadata names the cell


def test_execute_over_rest(server, project) -> None:
    pid, folder = project
    write(folder, "rest.ipynb", "answer = 6 * 7")
    with httpx.Client(base_url=server.rest, headers={
            "Authorization": f"Bearer {server.token}"}) as http:
        op = http.post(f"/datasphere/v2/projects/{pid}:execute", json={
            "notebookId": "rest.ipynb", "outputVariableNames": ["answer"]}).json()
        while not op["done"]:
            time.sleep(0.05)
            op = http.get(f"/operations/{op['id']}").json()
    assert op["response"]["executionStatus"] == "OK"
    assert op["response"]["outputVariables"] == {"answer": 42}
    assert op["metadata"]["notebookId"] == "rest.ipynb"


def test_restart_ends_a_running_execution_aborted(tmp_path: Path,
                                                   fresh_database_url: FreshDatabaseUrl) -> None:
    settings = settings_for(tmp_path, fresh_database_url("sqlite"))
    first = ServerThread(settings)
    running = first.start()
    pid, folder = make_project(running)
    write(folder, "long.ipynb", "import time\ntime.sleep(600)")
    op = running.client().call("ProjectService.Execute", {"projectId": pid,
                                                          "notebookId": "long.ipynb"})
    first.stop()
    second = ServerThread(settings)
    again = second.start()
    try:
        op = again.client().call("OperationService.Get", {"operationId": op.id})
        response = ps.ProjectExecutionResponse()
        assert op.done and op.response.Unpack(response)
        assert response.execution_status == ps.ABORTED
    finally:
        second.stop()
