"""Inside the kernel: a run's cells, its environment, and the variables read back as JSON.

The engine sends this file's source to each kernel once, as the module
``_opensphere_engine``, and never imports it itself. It imports nothing heavy: numpy
and pandas values are recognised only when the notebook has imported those libraries.

A run does not go through an execute request: ipykernel's work per request (thread
hand-offs, status messages, the request's own cell) costs several times what small
cells do. The engine sends the run, signed with the kernel's key, on a socket of its
own that ``listen`` reads on the kernel's event loop. ``run`` executes the cells through
IPython's own ``run_cell`` (history, execution counts, display hooks and tracebacks as
for separate requests) and marks where each cell's outputs begin with an
``opensphere_cell`` IOPub message, so the engine files every output under its cell;
an ``opensphere_done`` message, after every output, carries the outcome. Before a cell
starts, its index is also written to a file: a message sent just before the kernel
dies can be lost, the file cannot. A notebook with a cell that needs the kernel's
event loop (top-level ``await``) is not run here; the engine sends it cell by cell.

Conversion to JSON: JSON values stay as they are (tuples become lists, NaN and
infinities stay floats), numpy scalars become Python scalars, arrays nested lists, a
pandas DataFrame ``{column: [values]}`` and a Series ``[values]`` (indexes are
dropped), dates and times ISO 8601 text. Any other value is its ``repr`` when asked
for by name, and left out of the snapshot.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime
import getpass
import json
import os
import signal
import sys
from hmac import compare_digest
from typing import Any

import zmq
from IPython import get_ipython
from IPython.core.error import StdinNotImplementedError

MARKER = "opensphere_cell"
DONE = "opensphere_done"
# Bigger values stay out of the per-run snapshot: converting them would slow every run.
SNAPSHOT_MAX_ITEMS = 100_000
_HIDDEN = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
_SCALARS = (str, int, float, bool, type(None))
_saved_env: dict[str, str | None] = {}
_progress_fd: int | None = None
_runs: zmq.Socket[bytes] | None = None


class _NotJson(Exception):
    """The value has no JSON form."""


class _Json:
    """Its repr is the JSON text, so IPython's text/plain rendering carries it unchanged."""

    def __init__(self, value: Any) -> None:
        self._text = json.dumps(value)

    def __repr__(self) -> str:
        return self._text


def track(path: str) -> None:
    """Record in ``path`` the index of the cell each run is about to execute."""
    global _progress_fd
    _progress_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def listen(address: str) -> None:
    """Take runs from ``address`` on the kernel's event loop (see the module's doc)."""
    global _runs
    _runs = zmq.Context.instance().socket(zmq.PULL)
    _runs.bind(address)
    asyncio.get_running_loop().add_reader(_runs.getsockopt(zmq.FD), _take_runs)
    _take_runs()  # what arrived before the reader was added signals nothing


def _take_runs() -> None:
    assert _runs is not None
    # The socket's descriptor signals edges: read until nothing is left.
    while _runs.getsockopt(zmq.EVENTS) & zmq.POLLIN:
        frames = _runs.recv_multipart()
        kernel = get_ipython().kernel
        if len(frames) == 2 and compare_digest(frames[0], kernel.session.sign(frames[1:])):
            _serve(json.loads(frames[1]))  # unsigned or malformed: not the engine's, dropped


def _serve(request: dict[str, Any]) -> None:
    """One run: its outputs carry the run's id as their parent, Ctrl-C (the engine's
    interrupt) stops it as it stops a request, and its outcome follows its outputs."""
    shell = get_ipython()
    kernel, previous = shell.kernel, shell.parent_header
    parent = {"header": {"msg_id": request["id"], "msg_type": "opensphere_run"}}
    shell.set_parent(parent)
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    # Outside a request, input() would read the kernel's own stdin and wait forever.
    reads = builtins.input, getpass.getpass
    builtins.input = getpass.getpass = _no_input
    try:
        done = run(request["env"], request["cwd"], request["cells"], request["names"])
    except BaseException as err:  # the helper's own failure: the run still ends
        done = {"failed": f"{type(err).__name__}: {err}"}
    finally:
        builtins.input, getpass.getpass = reads
        signal.signal(signal.SIGINT, interrupt)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        shell.set_parent(previous)
    # JSON text, as ``_Json``: the kernel's own packer would turn NaN into text.
    kernel.session.send(kernel.iopub_socket, DONE, {"outcome": json.dumps(done)}, parent)


def _no_input(prompt: str = "", *_args: Any, **_kwargs: Any) -> str:
    raise StdinNotImplementedError("a notebook run through the API cannot ask for input")


def run(env: dict[str, str], cwd: str | None, cells: list[tuple[int, str]],
        names: list[str]) -> dict[str, Any]:
    """Execute ``cells`` (index, source) in order, stopping at the first that fails;
    returns what happened and what ``finish`` collects."""
    shell = get_ipython()
    if any(_needs_event_loop(shell, source) for _, source in cells):
        return {"batched": False}
    _record(-1)
    begin(env, cwd)
    counts, error = [], None
    index = cells[0][0] if cells else -1
    try:
        for index, source in cells:
            _starting(shell, index)
            result = shell.run_cell(source, store_history=True)
            counts.append((index, shell.execution_count - 1))
            failure = result.error_before_exec if result.error_before_exec is not None \
                else result.error_in_exec
            if failure is not None or getattr(shell, "_last_traceback_during_displayhook",
                                              False):
                error = {"index": index,
                         "ename": type(failure).__name__ if failure else "Error",
                         "evalue": str(failure) if failure else "the display hook failed",
                         "traceback": shell._last_traceback or []}
                break
    except KeyboardInterrupt:  # between cells: run_cell reports one inside a cell itself
        error = {"index": index, "ename": "KeyboardInterrupt", "evalue": "", "traceback": []}
    try:
        return {"batched": True, "counts": counts, "error": error, **_collect(names)}
    finally:
        _restore_env()


def begin(env: dict[str, str], cwd: str | None) -> None:
    """Enter a run: move to the notebook's folder and set its input variables."""
    if cwd is not None:
        os.chdir(cwd)
    for name, value in env.items():
        _saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value


def finish(names: list[str]) -> _Json:
    """Leave a run: read the requested outputs and the snapshot, restore the environment."""
    try:
        return _Json(_collect(names))
    finally:
        _restore_env()


def variables(names: list[str] | None) -> _Json:
    """The live kernel's variables: the snapshot, or the named ones converted as outputs."""
    namespace = get_ipython().user_ns
    if names is None:
        return _Json(_snapshot(namespace))
    return _Json({name: _by_name(namespace[name]) for name in names if name in namespace})


def _collect(names: list[str]) -> dict[str, Any]:
    namespace = get_ipython().user_ns
    outputs = {name: _by_name(namespace[name]) for name in names if name in namespace}
    missing = [name for name in names if name not in namespace]
    return {"outputs": outputs, "missing": missing, "variables": _snapshot(namespace)}


def _needs_event_loop(shell: Any, source: str) -> bool:
    if "await" not in source and "async" not in source:
        return False  # the cheap test first: only these can make a cell asynchronous
    try:
        transformed, failure = shell.transform_cell(source), None
    except Exception:
        transformed, failure = source, sys.exc_info()
    return bool(shell.should_run_async(source, transformed_cell=transformed,
                                       preprocessing_exc_tuple=failure))


def _starting(shell: Any, index: int) -> None:
    """Mark the start of a cell: in the file, then on IOPub after what earlier cells wrote."""
    _record(index)
    for stream in (sys.stdout, sys.stderr):
        # ipykernel's streams buffer what is written until a flush, which waits for the
        # IOPub thread; with nothing buffered the marker cannot overtake any output.
        if stream is not None and getattr(stream, "_buffers", True):
            stream.flush()
    hook = shell.displayhook
    hook.session.send(hook.pub_socket, MARKER, {"index": index}, hook.parent_header)


def _record(index: int) -> None:
    if _progress_fd is not None:
        os.pwrite(_progress_fd, b"%12d" % index, 0)


def _restore_env() -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _saved_env.clear()


def _by_name(value: Any) -> Any:
    try:
        return _to_json(value, strict=False)
    except RecursionError:
        return repr(value)


def _snapshot(namespace: dict[str, Any]) -> dict[str, Any]:
    snapshot = {}
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in _HIDDEN or _too_big(value):
            continue
        try:
            snapshot[name] = _to_json(value, strict=True)
        except (_NotJson, RecursionError):
            continue
    return snapshot


def _too_big(value: Any) -> bool:
    if isinstance(value, str | list | tuple | dict):
        return len(value) > SNAPSHOT_MAX_ITEMS
    numpy, pandas = sys.modules.get("numpy"), sys.modules.get("pandas")
    arrays = (numpy.ndarray,) if numpy else ()
    if pandas:
        arrays += (pandas.DataFrame, pandas.Series)
    return isinstance(value, arrays) and value.size > SNAPSHOT_MAX_ITEMS


def _to_json(value: Any, *, strict: bool) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return [_to_json(item, strict=strict) for item in value]
    if isinstance(value, dict) and all(isinstance(key, _SCALARS) for key in value):
        return {_key(key): _to_json(item, strict=strict) for key, item in value.items()}
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return _to_json(value.tolist(), strict=strict)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return _to_json(value.to_dict(orient="list"), strict=strict)
    if pandas is not None and isinstance(value, pandas.Series):
        return _to_json(value.tolist(), strict=strict)
    if strict:
        raise _NotJson
    return repr(value)


def _key(key: str | int | float | bool | None) -> str:
    # The key as json.dumps would write it.
    return json.dumps(key) if not isinstance(key, str) else key
