"""Running notebooks: ``project execute``, ``project usage`` and the ``operation`` commands.

A run is followed live through ``ExecutionService.Watch``: a progress bar and the text its
cells write, both on stderr so that stdout holds the results alone. Where the server cannot
stream the run (another server process runs it) the operation is polled instead. A run's
exit code is its outcome: 0 OK, 1 ERROR, 2 ABORTED.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from types import TracebackType
from typing import Annotated, Any, NoReturn, cast

import grpc
import typer
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from opensphere import contract
from opensphere.cli import output
from opensphere.cli.iam import _argument, parse_since
from opensphere.cli.output import Column
from opensphere.cli.resources import _STATUS, Session, _command, _keyword, parse_labels
from opensphere.client import ClientError, to_dict
from opensphere.proto_gen.opensphere.v1 import execution_service_pb2 as es
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2

Operation = operation_pb2.Operation
EXIT_CODES = {ps.OK: 0, ps.ERROR: 1, ps.ABORTED: 2}
POLL = 0.5  # seconds between reads of an operation that cannot be watched
# Watch answers these where it cannot stream a run; polling still works.
UNWATCHABLE = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED)
_UNITS = Column("UNITS", "units", no_wrap=True)
_TOTAL_COLUMNS = (Column("SECONDS", "seconds", no_wrap=True), _UNITS)
_RUN_COLUMNS = (  # narrow enough for 80 columns; the subject is the one to fold
    Column("OPERATION", "operationId", no_wrap=True),
    Column("STARTED", "startedAt", output.timestamp, no_wrap=True),
    Column("SPEC", "spec", no_wrap=True),
    _UNITS,
    Column("DONE", "finished", lambda done: "yes" if done else "no", no_wrap=True),
    Column("SUBJECT", "subjectId"),
)


def _reject(constant: str) -> NoReturn:
    raise ValueError(constant)


def parse_inputs(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; a value is JSON where it parses as JSON (``3``, ``true``,
    ``[1, 2]``), else the text itself. NaN and Infinity stay text: a Struct cannot hold them."""
    values: dict[str, Any] = {}
    for name, raw in parse_labels(items, "--input").items():
        try:
            values[name] = json.loads(raw, parse_constant=_reject)
        except ValueError:
            values[name] = raw
    return values


def _metadata(operation: Operation) -> ps.ProjectExecutionMetadata | None:
    """The metadata of an Execute operation; None for other operations."""
    metadata = ps.ProjectExecutionMetadata()
    return metadata if operation.metadata.Unpack(metadata) else None


def _still_running(operation: Operation) -> ClientError:
    return ClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                       f"operation {operation.id} is still running")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class _Elapsed(ProgressColumn):
    """Time since the operation was created, not since the command started following it."""

    def render(self, task: Task) -> Text:
        seconds = max(int(time.time() - task.fields["since"]), 0)
        return Text(str(timedelta(seconds=seconds)), style="progress.elapsed")


class _Display:
    """The live view of a run on stderr: "cell i of n" with a bar and the elapsed time,
    the cells' text printed above it a whole line at a time."""

    def __init__(self, operation: Operation) -> None:
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), _Elapsed(),
                             console=output.stderr)
        self._task = self._bar.add_task("waiting for the run to start", total=None,
                                        since=operation.created_at.ToSeconds())
        self._partial = ""

    def __enter__(self) -> _Display:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._partial:
            self._bar.console.print(Text(self._partial))
        self._bar.stop()

    def cells(self, done: int, total: int) -> None:
        if total:
            self._bar.update(self._task, description=f"cell {min(done + 1, total)} of {total}",
                             completed=done, total=total)

    def text(self, text: str) -> None:
        lines, newline, self._partial = (self._partial + text).rpartition("\n")
        if newline:
            self._bar.console.print(Text(lines))

    def note(self, message: str) -> None:
        self._bar.console.print(Text(message, style="dim"))

    def follow(self, operation: Operation) -> None:
        """``Client.wait``'s hook: the cells done of a polled Execute operation."""
        metadata = _metadata(operation)
        if metadata is not None:
            self.cells(metadata.cells_done, metadata.cells_total)


def _watch(s: Session, operation: Operation, display: _Display,
           deadline: float | None) -> Operation:
    """Show the run's events until its last one; returns the operation that ends it."""
    try:
        for message in s.client.unary_stream("ExecutionService.Watch",
                                             {"operationId": operation.id},
                                             timeout=_remaining(deadline)):
            event = cast(es.ExecutionEvent, message)
            if event.dropped:
                display.note(f"[{event.dropped} pieces of output left out: the terminal "
                             "read too slowly]")
            if event.text:
                display.text(event.text)
            else:
                display.cells(event.cell_index, event.cell_count)
            if event.done:
                operation = event.operation
    except ClientError as err:
        if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise _still_running(operation) from None
        raise
    # Done unless the server failed to store the outcome in time: then it is polled.
    return s.client.wait(operation, timeout=_remaining(deadline), poll=POLL)


def _follow(s: Session, operation: Operation, timeout: float | None) -> tuple[Operation, bool]:
    """Wait for the run with a live view; returns its finished operation and whether its
    cells' text was streamed (False where it ended first, or was polled)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if operation.done:
        return operation, False
    try:
        with _Display(operation) as display:
            try:
                return _watch(s, operation, display, deadline), True
            except ClientError as err:
                if err.code not in UNWATCHABLE:
                    raise
            return s.client.wait(operation, timeout=_remaining(deadline), poll=POLL,
                                 on_update=display.follow), False
    except KeyboardInterrupt:
        output.note(f"Stopped following; the run goes on. Cancel it with: "
                    f"opensphere operation cancel {operation.id}")
        raise typer.Exit(130) from None


def _replay(s: Session, metadata: ps.ProjectExecutionMetadata, checkpoint_id: str) -> None:
    """The cells' text of a run that was not streamed, read back from its checkpoint: the
    cell ids come from the notebook, the outputs from ``GetCellOutputs``."""
    project = metadata.project_id
    if not (metadata.notebook_id and checkpoint_id):
        return
    try:
        source = b"".join(m.chunk for m in s.client.unary_stream(  # type: ignore[attr-defined]
            "ProjectFileService.Download", {"projectId": project, "path": metadata.notebook_id}))
        cells = json.loads(source).get("cells", [])
        for cell in cells:
            if cell.get("cell_type") != "code" or not cell.get("id"):
                continue
            found = s.call("ProjectService.GetCellOutputs", {
                "projectId": project, "cellId": cell["id"], "checkpointId": checkpoint_id})
            for raw in found.outputs:  # type: ignore[attr-defined]
                out = json.loads(raw)
                if out.get("output_type") == "stream":
                    text = out.get("text", "")
                    output.stderr.out("".join(text) if isinstance(text, list) else text,
                                      end="", highlight=False)
    except (ClientError, ValueError) as err:
        output.note(f"(the cells' output could not be read back: {err})")


def _fail_on_error(operation: Operation) -> None:
    """An operation that ended in an error (no response at all) fails the command."""
    if operation.HasField("error"):
        raise ClientError(_STATUS[operation.error.code], operation.error.message)


def _conclude(s: Session, operation: Operation, streamed: bool, whole: bool) -> None:
    """Print a finished run's outputs (with ``--json`` its response, or with ``whole`` its
    operation) and exit with its outcome; the error of a run that failed goes to stderr."""
    _fail_on_error(operation)
    response = ps.ProjectExecutionResponse()
    operation.response.Unpack(response)
    metadata = _metadata(operation)
    if not streamed and metadata is not None:
        _replay(s, metadata, response.checkpoint_id)
    if s.json:
        output.print_json(to_dict(operation if whole else response))
    else:
        rows = [{"name": k, "value": json.dumps(v, ensure_ascii=False)}
                for k, v in sorted(contract.struct_json(response.output_variables).items())]
        output.table("Output variables", rows,
                     (Column("NAME", "name", no_wrap=True), Column("VALUE", "value")))
        if response.missing_output_variables:
            output.note("Not defined by the notebook: "
                        + ", ".join(response.missing_output_variables))
    if response.execution_status != ps.OK:
        status = ps.ExecutionStatus.Name(response.execution_status)
        output.error(f"{status}: {response.error.message or 'the run did not finish'}")
    code = EXIT_CODES.get(response.execution_status, 1)
    if code:
        raise typer.Exit(code)


def _execute(s: Session, values: dict[str, Any]) -> None:
    request = {"projectId": values["project_id"], "notebookId": values["notebook"],
               "inputVariables": parse_inputs(values["input"] or []),
               "outputVariableNames": values["output"] or []}
    if values["spec"]:
        request["spec"] = values["spec"]
    operation: Operation = s.call("ProjectService.Execute", request)  # type: ignore[assignment]
    if values["no_wait"]:
        if s.json:
            output.print_json(to_dict(operation))
        else:
            output.print_plain(operation.id)
            output.note(f"Follow it with: opensphere operation wait {operation.id}")
        return
    operation, streamed = _follow(s, operation, None)
    _conclude(s, operation, streamed, whole=False)


def _usage(s: Session, values: dict[str, Any]) -> None:
    request: dict[str, Any] = {"projectId": values["project_id"], "pageSize": values["limit"]}
    if values["since"]:
        request["since"] = parse_since(values["since"])
    data = to_dict(s.call("UsageService.List", request))
    if s.json:
        output.print_json(data)
        return
    for title, field, key in (("Usage by day", "byDay", "DAY"),
                              ("Usage by spec", "bySpec", "SPEC")):
        output.table(title, data.get(field, []),
                     (Column(key, "key", no_wrap=True), *_TOTAL_COLUMNS))
    output.table("Latest runs", data.get("records", []), _RUN_COLUMNS)


# --- Operations ---------------------------------------------------------------------------

def _operation_id(values: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": values["operation_id"]}


def _get(s: Session, values: dict[str, Any]) -> None:
    s.show("Operation", s.call("OperationService.Get", _operation_id(values)))


def _cancel(s: Session, values: dict[str, Any]) -> None:
    s.show("Operation", s.call("OperationService.Cancel", _operation_id(values)))


def _wait(s: Session, values: dict[str, Any]) -> None:
    """An Execute operation is followed like ``project execute``; others are polled."""
    operation: Operation = s.call("OperationService.Get",  # type: ignore[assignment]
                                  _operation_id(values))
    timeout = values["timeout"]
    if _metadata(operation) is not None:
        operation, streamed = _follow(s, operation, timeout)
        _conclude(s, operation, streamed, whole=True)
        return
    operation = s.client.wait(operation, timeout=timeout, poll=POLL)
    s.show("Operation", operation)
    _fail_on_error(operation)


def register(app: typer.Typer, project: typer.Typer) -> None:
    """Add ``execute`` and ``usage`` to the ``project`` group, and the ``operation`` group."""
    project_id = _argument("project_id", "Project ID")
    _command(project, "execute",
             "Run a notebook of the project and follow it: progress and the cells' output on "
             "stderr, then the output variables. Exit code 0 OK, 1 ERROR, 2 ABORTED.",
             [project_id, _argument("notebook", "Notebook path in the project, e.g. "
                                                "train.ipynb"),
              _keyword("input", Annotated[list[str] | None, typer.Option(
                  metavar="NAME=VALUE", help="An input variable; VALUE is read as JSON where "
                  "it parses (3, true, [1, 2]), else as text. Repeat for more")]),
              _keyword("output", Annotated[list[str] | None, typer.Option(
                  metavar="NAME", help="A variable to return; repeat for more")]),
              _keyword("spec", Annotated[str | None, typer.Option(
                  help="Computing configuration, e.g. c1.8 (default: the project's)")]),
              _keyword("no_wait", Annotated[bool, typer.Option(
                  "--no-wait", help="Print the operation ID and return at once")], False)],
             _execute)
    _command(project, "usage",
             "What the project's runs consumed: totals by day and by spec, the latest runs.",
             [project_id,
              _keyword("since", Annotated[str | None, typer.Option(
                  help="Only runs started from this time on: 2026-01-01T00:00:00Z, or 7d "
                       "ago")]),
              _keyword("limit", Annotated[int, typer.Option(
                  min=1, max=1000, help="How many of the latest runs to list")], 20)],
             _usage)

    group = typer.Typer(no_args_is_help=True,
                        help="Operations: the state and outcome of long-running calls.")
    operation_id = _argument("operation_id", "Operation ID")
    _command(group, "get", "Show an operation.", [operation_id], _get)
    _command(group, "wait",
             "Wait for an operation to end and show it; a notebook run is followed like "
             "`project execute`, and exits like it.",
             [operation_id,
              _keyword("timeout", Annotated[float | None, typer.Option(
                  min=0, help="Give up (exit code 1) after this many seconds")])],
             _wait)
    _command(group, "cancel", "Stop a running operation (a notebook run ends ABORTED) and "
                              "show it.", [operation_id], _cancel)
    app.add_typer(group, name="operation")
