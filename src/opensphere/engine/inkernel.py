"""Inside the kernel: a run's cells, its environment, and the variables read back as JSON.

The engine sends this file's source to each kernel once, as the module
``_opensphere_engine``, and never imports it itself. It imports nothing heavy: numpy
and pandas values are recognised only when the notebook has imported those libraries.

A run is one execute request: ``run`` executes the cells through IPython's own
``run_cell`` (history, execution counts, display hooks and tracebacks as for separate
requests) and marks where each cell's outputs begin with a ``opensphere_cell`` IOPub
message, so the engine files every output under its cell. The kernel's per-request
work, about three times what a small cell costs, is paid once per run. Before a cell
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

import datetime
import json
import os
import sys
from typing import Any

from IPython import get_ipython

MARKER = "opensphere_cell"
# Bigger values stay out of the per-run snapshot: converting them would slow every run.
SNAPSHOT_MAX_ITEMS = 100_000
_HIDDEN = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
_SCALARS = (str, int, float, bool, type(None))
_saved_env: dict[str, str | None] = {}
_progress_fd: int | None = None
_outcome: dict[str, Any] = {}


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


def run(env: dict[str, str], cwd: str | None, cells: list[tuple[int, str]],
        names: list[str]) -> None:
    """Execute ``cells`` (index, source) in order, stopping at the first that fails;
    ``outcome()`` then tells what happened and holds what ``finish`` collects."""
    global _outcome
    shell = get_ipython()
    _outcome = {"batched": False}
    if any(_needs_event_loop(shell, source) for _, source in cells):
        return
    _record(-1)
    begin(env, cwd)
    counts, error = [], None
    for index, source in cells:
        _starting(shell, index)
        result = shell.run_cell(source, store_history=True)
        counts.append((index, shell.execution_count - 1))
        failure = result.error_before_exec if result.error_before_exec is not None \
            else result.error_in_exec
        if failure is not None or getattr(shell, "_last_traceback_during_displayhook", False):
            error = {"index": index, "ename": type(failure).__name__ if failure else "Error",
                     "evalue": str(failure) if failure else "the display hook failed",
                     "traceback": shell._last_traceback or []}
            break
    _outcome = {"batched": True, "counts": counts, "error": error, **_collect(names)}
    _restore_env()


def outcome() -> _Json:
    """What the last ``run`` did (read once, through the request's user expressions)."""
    global _outcome
    done, _outcome = _outcome, {}
    return _Json(done)


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
