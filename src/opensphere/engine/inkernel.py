"""Inside the kernel: a run's environment, and the user's variables read back as JSON.

The engine sends this file's source to each kernel once, as the module
``_opensphere_engine``, and never imports it itself. Runs call it through
``user_expressions`` on an execute request they send anyway, so setting up and
collecting cost no extra round trips. It imports nothing heavy: numpy and pandas
values are recognised only when the notebook has imported those libraries.

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

# Bigger values stay out of the per-run snapshot: converting them would slow every run.
SNAPSHOT_MAX_ITEMS = 100_000
_HIDDEN = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
_SCALARS = (str, int, float, bool, type(None))
_saved_env: dict[str, str | None] = {}


class _NotJson(Exception):
    """The value has no JSON form."""


class _Json:
    """Its repr is the JSON text, so IPython's text/plain rendering carries it unchanged."""

    def __init__(self, value: Any) -> None:
        self._text = json.dumps(value)

    def __repr__(self) -> str:
        return self._text


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
        namespace = get_ipython().user_ns
        outputs = {name: _by_name(namespace[name]) for name in names if name in namespace}
        missing = [name for name in names if name not in namespace]
        return _Json({"outputs": outputs, "missing": missing, "variables": _snapshot(namespace)})
    finally:
        _restore_env()


def variables(names: list[str] | None) -> _Json:
    """The live kernel's variables: the snapshot, or the named ones converted as outputs."""
    namespace = get_ipython().user_ns
    if names is None:
        return _Json(_snapshot(namespace))
    return _Json({name: _by_name(namespace[name]) for name in names if name in namespace})


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
