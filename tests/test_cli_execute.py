"""Running notebooks from the CLI (``project execute``, ``operation``, ``project usage``) and
ExecutionService.Watch, against a real ``opensphere serve`` process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import grpc
import nbformat
import pytest
from cli_support import Cli, ServeProcess
from google.protobuf import any_pb2
from nbformat.v4 import new_code_cell, new_notebook
from sqlalchemy import create_engine, update

from opensphere.client import Client, ClientError, Connection
from opensphere.proto_gen.opensphere.v1 import execution_service_pb2 as es
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.services import watch
from opensphere.store import Database
from opensphere.store import models as m


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("execute-cli")) as served:
        yield served


@pytest.fixture(scope="module")
def cli(server: ServeProcess) -> Cli:
    return Cli(server.data_dir, server.grpc_address)


@pytest.fixture(scope="module")
def project(cli: Cli) -> str:
    org = cli.json("org", "list")["organizations"][0]["id"]
    community = cli.json("community", "create", "--org", org)["id"]
    return str(cli.json("project", "create", "--community", community)["id"])


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[Client]:
    token = (server.data_dir / "admin.token").read_text().strip()
    connected = Client(Connection(address=server.grpc_address, token=token))
    yield connected
    connected.close()


def write(server: ServeProcess, project: str, name: str, *sources: str,
          parameters: bool = False) -> None:
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    if parameters:
        notebook.cells[0].metadata["tags"] = ["parameters"]
    folder = server.data_dir / "projects" / project
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / name)


def test_execute_streams_the_cells_and_prints_outputs(server, cli, project) -> None:
    write(server, project, "train.ipynb", "alpha = 1\nlabel = 'default'",
          "import time\nprint('training', alpha, flush=True)\ntime.sleep(1)\n"
          "print('trained')\nresult = alpha * 2", parameters=True)
    run = cli.run("project", "execute", project, "train.ipynb", "--input", "alpha=21",
                  "--input", "label=hello", "--output", "result", "--output", "label")
    assert run.returncode == 0, run.stderr
    assert "training 21\ntrained\n" in run.stderr  # the run outlives Execute's answer
    assert "cell 3 of 3" in run.stderr  # the parameters cell, the injected one, the work
    table = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in run.stdout.splitlines() if line.count("│") == 3}
    assert table == {"label": '"hello"', "result": "42"}


def test_execute_json_of_a_quick_run_reads_its_text_back(server, cli, project) -> None:
    write(server, project, "quick.ipynb", "print('quick')\ny = [1, 2]")
    run = cli.run("project", "execute", project, "quick.ipynb", "--output", "y",
                  "--output", "nope", "--json")
    assert run.returncode == 0, run.stderr
    assert "quick" in run.stderr  # done at once: from the checkpoint, not a stream
    assert '"y": [\n      1.0,\n      2.0\n    ]' in run.stdout
    assert '"missingOutputVariables": [\n    "nope"\n  ]' in run.stdout


def test_raising_notebook_exits_1(server, cli, project) -> None:
    write(server, project, "boom.ipynb", "x = 1", "1 / 0")
    run = cli.run("project", "execute", project, "boom.ipynb")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "error: ERROR: cell 1" in run.stderr and "ZeroDivisionError" in run.stderr


def test_no_wait_then_cancel_ends_wait_with_2(server, cli, project) -> None:
    write(server, project, "loop.ipynb", "print('looping', flush=True)\nwhile True:\n    pass")
    operation = cli.ok("project", "execute", project, "loop.ipynb", "--no-wait").strip()
    waiting = cli.start("operation", "wait", operation)
    time.sleep(1.5)
    assert waiting.poll() is None
    cancelled = cli.json("operation", "cancel", operation)
    assert cancelled["done"] and cancelled["response"]["executionStatus"] == "ABORTED"
    stdout, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 2, (stdout, stderr)
    assert "looping" in stderr and "error: ABORTED: cell 0" in stderr
    assert cli.json("operation", "get", operation)["id"] == operation


def test_usage_shows_the_runs(cli, server, project) -> None:
    write(server, project, "short.ipynb", "z = 1")
    operation = cli.json("project", "execute", project, "short.ipynb", "--no-wait")["id"]
    finished = cli.json("operation", "wait", operation, "--timeout", "30")
    assert finished["done"] and finished["response"]["executionStatus"] == "OK"
    usage = cli.json("project", "usage", project)
    assert operation in {r["operationId"] for r in usage["records"]}
    assert [t["key"] for t in usage["bySpec"]] == ["c1.4"] and usage["byDay"]
    shown = cli.ok("project", "usage", project, "--since", "1h")
    assert "Usage by day" in shown and "Usage by spec" in shown and operation in shown
    assert "Latest runs" not in cli.ok("project", "usage", project, "--since", "2999-01-01")


def test_watch_streams_progress_then_one_final_event(server, client, project) -> None:
    write(server, project, "steps.ipynb", "import time\nprint('one')\ntime.sleep(1)",
          "print('two')", "print('three')")
    operation = client.call("ProjectService.Execute",
                            {"projectId": project, "notebookId": "steps.ipynb"})
    assert not operation.done
    events = list(client.unary_stream("ExecutionService.Watch",
                                      {"operationId": operation.id}, timeout=60))
    *progress, final = events
    assert "".join(e.text for e in progress) == "one\ntwo\nthree\n"  # "one" from the backlog
    assert all(not e.done for e in progress) and final.done
    started = [e.cell_index for e in progress if not e.text]
    assert started == sorted(started) and started[-1] == 3 and {1, 2} <= set(started)
    assert {e.cell_count for e in events} == {3}
    response = ps.ProjectExecutionResponse()
    assert final.operation.done and final.operation.response.Unpack(response)
    assert response.execution_status == ps.OK
    again = list(client.unary_stream("ExecutionService.Watch", {"operationId": operation.id}))
    assert len(again) == 1 and again[0].done and again[0].operation == final.operation
    with pytest.raises(ClientError) as missing:
        list(client.unary_stream("ExecutionService.Watch", {"operationId": "ops-none"}))
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_a_run_of_another_process_is_polled(server, cli, client, project) -> None:
    """Watch refuses a run this process does not execute; ``operation wait`` polls it."""
    db = create_engine(Database(f"sqlite:///{server.data_dir / 'opensphere.db'}").sync_url)
    metadata, response = any_pb2.Any(), any_pb2.Any()
    metadata.Pack(ps.ProjectExecutionMetadata(project_id=project, notebook_id="x.ipynb",
                                              cells_done=1, cells_total=2))
    done = ps.ProjectExecutionResponse(execution_status=ps.OK)
    done.output_variables.update({"answer": 42})
    response.Pack(done)
    with db.begin() as conn:
        conn.execute(m.Operation.__table__.insert().values(
            id="ops-elsewhere", description="Execute notebook", resource_type="project",
            resource_id=project, created_by="", created_at=m.utcnow(),
            modified_at=m.utcnow(), done=False, metadata_pb=metadata.SerializeToString()))
    with pytest.raises(ClientError) as refused:
        list(client.unary_stream("ExecutionService.Watch", {"operationId": "ops-elsewhere"}))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "runs elsewhere" in str(refused.value)
    waiting = cli.start("operation", "wait", "ops-elsewhere")
    time.sleep(1.5)
    assert waiting.poll() is None
    with db.begin() as conn:
        conn.execute(update(m.Operation).where(m.Operation.id == "ops-elsewhere").values(
            done=True, response_pb=response.SerializeToString()))
    db.dispose()
    stdout, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, stderr
    assert "answer" in stdout and "42" in stdout


async def test_a_slow_watcher_loses_text_not_progress() -> None:
    channel = watch.Hub().open("ops-x")
    channel.publish(0, 1, "")
    channel.publish(0, 1, "early\n")
    slow = channel.subscribe()  # queued: the backlog ("early") and where the run is
    for n in range(watch.QUEUE_SIZE + 10):
        channel.publish(0, 1, f"{n}\n")
    channel.publish(1, 1, "")
    channel.close()
    events = [e async for e in slow]
    assert events[0].text == "early\n" and events[1] == es.ExecutionEvent(cell_count=1)
    assert len(events) == watch.QUEUE_SIZE + 1  # a full queue, then the progress it kept
    assert events[-2].text == f"{watch.QUEUE_SIZE - 3}\n"
    assert events[-1] == es.ExecutionEvent(cell_index=1, cell_count=1, dropped=12)
    late = channel.hub.open("ops-y")
    late.publish(0, 1, "x" * (watch.BACKLOG_CHARS + 1))
    replayed = [e async for e in _closed(late.subscribe())]
    assert replayed[0].dropped == 1 and replayed[0].text
    assert len("".join(e.text for e in replayed)) <= watch.BACKLOG_CHARS


async def _closed(subscriber: watch.Subscriber) -> AsyncIterator[es.ExecutionEvent]:
    subscriber.channel.close()
    async for event in subscriber:
        yield event
