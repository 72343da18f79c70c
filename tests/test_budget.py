"""Unit balances, limits, restrictions and disk size: metered on real kernels, enforced."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import nbformat
import pytest
from cli_support import ServeProcess
from nbformat.v4 import new_code_cell, new_notebook
from pg import FreshDatabaseUrl
from servers import RunningServer, ServerThread, settings_for
from sqlalchemy import create_engine, select

from opensphere.client import Client, ClientError, Connection
from opensphere.engine.specs import SPECS
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.store import Database
from opensphere.store import models as m

PER_SECOND = SPECS["c1.4"].unit_price_per_hour // 3600  # units a c1.4 run costs each second
LOOP = "while True:\n    pass"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           fresh_database_url: FreshDatabaseUrl) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp(f"budget-{request.param}")
    thread = ServerThread(settings_for(folder, fresh_database_url(request.param),
                                       kernel_pool_size=1))
    running = thread.start()
    try:
        yield running
    finally:
        thread.stop()


def new_project(server: RunningServer | Any, client: Client, org: str,
                **fields: Any) -> str:
    community = community_pb2.Community()
    client.call("CommunityService.Create", {"organizationId": org}).response.Unpack(community)
    project = project_pb2.Project()
    client.call("ProjectService.Create", {"communityId": community.id, **fields}
                ).response.Unpack(project)
    return project.id


def notebook(data_dir: Path, project: str, name: str, source: str) -> None:
    folder = data_dir / "projects" / project
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_code_cell(source)]), folder / name)


def execute(client: Client, project: str, name: str, **extra: Any
            ) -> tuple[Any, ps.ProjectExecutionResponse]:
    op = client.wait(client.call("ProjectService.Execute", {
        "projectId": project, "notebookId": name, **extra}), timeout=120, poll=0.1)
    response = ps.ProjectExecutionResponse()
    assert op.response.Unpack(response), op
    return op, response


def usage(client: Client, project: str) -> Any:
    return client.call("UsageService.List", {"projectId": project})


def ran_seconds(op: Any) -> float:
    return (op.modified_at.ToDatetime() - op.created_at.ToDatetime()).total_seconds()


def test_balance_stops_an_endless_run_and_usage_matches(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id)
    client.call("ProjectService.SetUnitBalance", {"projectId": pid,
                                                  "unitBalance": str(3 * PER_SECOND)})
    notebook(server.settings.data_dir, pid, "loop.ipynb", LOOP)
    op, response = execute(client, pid, "loop.ipynb")
    assert response.execution_status == ps.ABORTED
    assert "insufficient balance" in response.error.message
    record = usage(client, pid).records[0]
    assert record.finished and record.spec == "c1.4"
    assert abs(record.seconds - ran_seconds(op)) <= 1.5
    assert record.units == record.seconds * PER_SECOND
    balance = client.call("ProjectService.GetUnitBalance", {"projectId": pid}).unit_balance
    assert balance.value == 3 * PER_SECOND - record.units <= 0
    with pytest.raises(ClientError) as info:  # nothing left: the next run does not start
        client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "loop.ipynb"})
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "balance" in str(info.value)


def test_max_units_per_execution_stops_the_run(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id,
                      limits={"maxUnitsPerExecution": str(2 * PER_SECOND)})
    notebook(server.settings.data_dir, pid, "loop.ipynb", LOOP)
    op, response = execute(client, pid, "loop.ipynb")
    assert response.execution_status == ps.ABORTED
    assert "max_units_per_execution" in response.error.message
    record = usage(client, pid).records[0]
    assert 3 <= record.seconds <= 5 and abs(record.seconds - ran_seconds(op)) <= 1.5


def test_max_units_per_hour_refuses_an_expensive_spec(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id,
                      limits={"maxUnitsPerHour": "100"})
    notebook(server.settings.data_dir, pid, "one.ipynb", "x = 1")
    with pytest.raises(ClientError) as info:
        client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "one.ipynb"})
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "max_units_per_hour" in str(info.value)


def test_max_units_per_hour_stops_a_running_run(server: RunningServer) -> None:
    client = server.client()
    cap = SPECS["c1.4"].unit_price_per_hour + 100
    pid = new_project(server, client, server.organization_id,
                      limits={"maxUnitsPerHour": str(cap)})
    earlier = cap - 3 * PER_SECOND  # what an earlier run spent in the last hour
    db = create_engine(Database(server.settings.effective_database_url).sync_url)
    with db.begin() as conn:
        now = datetime.now(UTC)
        conn.execute(m.Usage.__table__.insert().values(
            operation_id="earlier-run", project_id=pid, subject_id="x", spec="c1.4",
            started_at=now, updated_at=now, seconds=earlier // PER_SECOND, units=earlier,
            finished=True))
    db.dispose()
    notebook(server.settings.data_dir, pid, "loop.ipynb", LOOP)
    _, response = execute(client, pid, "loop.ipynb")
    assert response.execution_status == ps.ABORTED
    assert "max_units_per_hour" in response.error.message


def restrict(client: Client, project: str, **values: list[Any]) -> None:
    field = {str: "stringValue", int: "longValue", bool: "boolValue"}
    client.call("ProjectService.SetRestrictions", {"projectId": project, "restrictions": [
        {"name": name, field[type(items[0])]: [str(v) if isinstance(v, int)
                                               and not isinstance(v, bool) else v
                                               for v in items]}
        for name, items in values.items()]})


def test_restrictions_meta_and_allowed_specs(server: RunningServer) -> None:
    client = server.client()
    meta = client.call("ProjectService.GetRestrictionsMeta", {})
    assert {r.name for r in meta.restrictions_meta} == {
        "allowed_specs", "max_concurrent_runs", "ide_allowed", "max_disk_size_gb"}
    pid = new_project(server, client, server.organization_id)
    notebook(server.settings.data_dir, pid, "one.ipynb", "x = 1")
    restrict(client, pid, allowed_specs=["c1.8"])
    got = client.call("ProjectService.GetRestrictions", {"projectId": pid})
    assert [(r.name, list(r.string_value)) for r in got.restrictions] == [
        ("allowed_specs", ["c1.8"])]
    with pytest.raises(ClientError) as info:
        client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "one.ipynb",
                                               "spec": "c1.4"})
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    _, response = execute(client, pid, "one.ipynb", spec="c1.8")
    assert response.execution_status == ps.OK
    with pytest.raises(ClientError) as info:
        restrict(client, pid, no_such_thing=["x"])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_community_restriction_bounds_its_projects(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id)
    project = client.call("ProjectService.Get", {"projectId": pid})
    client.call("CommunityService.SetRestrictions", {
        "communityId": project.community_id,
        "restrictions": [{"name": "allowed_specs", "stringValue": ["c1.32"]}]})
    restrict(client, pid, allowed_specs=["c1.4", "c1.32"])
    notebook(server.settings.data_dir, pid, "one.ipynb", "x = 1")
    with pytest.raises(ClientError) as info:
        client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "one.ipynb",
                                               "spec": "c1.4"})
    assert "c1.32" in str(info.value)


def test_concurrent_runs_past_the_limit_are_refused(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id)
    restrict(client, pid, max_concurrent_runs=[1])
    notebook(server.settings.data_dir, pid, "a.ipynb", LOOP)
    notebook(server.settings.data_dir, pid, "b.ipynb", "x = 1")
    first = client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "a.ipynb"})
    with pytest.raises(ClientError) as info:
        client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "b.ipynb"})
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    client.call("OperationService.Cancel", {"operationId": first.id})
    _, response = execute(client, pid, "b.ipynb")
    assert response.execution_status == ps.OK


def test_disk_size_is_enforced_and_readable(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id)
    op = client.call("ProjectService.ResizeDisk", {"projectId": pid, "newDiskSizeGb": 1})
    info = ps.DiskInfo()
    assert op.response.Unpack(info) and info.disk_size_gb == 1
    folder = server.settings.data_dir / "projects" / pid
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "big.bin", "wb") as fh:  # a sparse file that counts as 1.1 GB
        fh.truncate(int(1.1 * 1024**3))
    info = client.call("ProjectService.GetDiskInfo", {"projectId": pid})
    assert info.disk_used_gb > 1 and info.detailed_usage.free_space_gb == 0
    notebook(server.settings.data_dir, pid, "one.ipynb", "x = 1")
    time.sleep(5.5)  # past the admission check's cached folder size
    with pytest.raises(ClientError) as err:
        client.call("ProjectService.Execute", {"projectId": pid, "notebookId": "one.ipynb"})
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    restrict(client, pid, max_disk_size_gb=[5])
    with pytest.raises(ClientError) as err:
        client.call("ProjectService.ResizeDisk", {"projectId": pid, "newDiskSizeGb": 10})
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_a_killed_server_loses_no_charge_and_the_run_ends_aborted(tmp_path: Path) -> None:
    initial = 1000 * PER_SECOND
    with ServeProcess(tmp_path) as serve:
        token = (tmp_path / "admin.token").read_text().strip()
        client = Client(Connection(address=serve.grpc_address, token=token))
        org = client.call("OrganizationService.List").organizations[0].id
        pid = new_project(None, client, org)
        client.call("ProjectService.SetUnitBalance", {"projectId": pid,
                                                      "unitBalance": str(initial)})
        notebook(tmp_path, pid, "loop.ipynb", LOOP)
        op = client.call("ProjectService.Execute", {"projectId": pid,
                                                    "notebookId": "loop.ipynb"})
        time.sleep(4)
        serve.stop(signal.SIGKILL)
    db = create_engine(Database(f"sqlite:///{tmp_path / 'opensphere.db'}").sync_url)
    with db.begin() as conn:
        charged = conn.execute(select(m.Usage.units).where(
            m.Usage.operation_id == op.id)).scalar_one()
        balance = conn.execute(select(m.ProjectBudget.unit_balance).where(
            m.ProjectBudget.project_id == pid)).scalar_one()
    db.dispose()
    assert charged >= 2 * PER_SECOND and balance + charged == initial
    with ServeProcess(tmp_path) as serve:
        client = Client(Connection(address=serve.grpc_address, token=token))
        op = client.call("OperationService.Get", {"operationId": op.id})
        response = ps.ProjectExecutionResponse()
        assert op.done and op.response.Unpack(response)
        assert response.execution_status == ps.ABORTED
        record = usage(client, pid).records[0]
        assert record.finished and record.units == charged
        left = client.call("ProjectService.GetUnitBalance", {"projectId": pid})
        assert left.unit_balance.value == initial - charged


def test_uploads_past_the_disk_size_are_refused(server: RunningServer) -> None:
    client = server.client()
    pid = new_project(server, client, server.organization_id)
    client.call("ProjectService.ResizeDisk", {"projectId": pid, "newDiskSizeGb": 1})
    head = client.request("ProjectFileService.Upload", {
        "projectId": pid, "path": "huge.bin", "size": str(2 * 1024**3)})
    with pytest.raises(ClientError) as err:
        client.stream_unary("ProjectFileService.Upload", [head])
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = client.request("ProjectFileService.Upload", {"projectId": pid, "path": "ok.txt"})
    client.stream_unary("ProjectFileService.Upload", [small, type(small)(chunk=b"fits")])
    assert not (server.settings.data_dir / "projects" / pid / "huge.bin").exists()
