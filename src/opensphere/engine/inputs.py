"""How a run's input variables reach the notebook.

Every input becomes an environment variable of the kernel for that run (the public
API's contract). A notebook with a cell tagged ``parameters`` also gets them as
Python values in a cell injected right after it, as papermill does, so
papermill-style notebooks run unchanged.
"""

from __future__ import annotations

import json
import keyword
import math
from collections.abc import Mapping
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


class InvalidInput(ValueError):
    """An input variable cannot be an environment variable."""


def environment(inputs: Mapping[str, Any]) -> dict[str, str]:
    """The inputs as environment variables: strings as they are, other values as JSON."""
    env = {}
    for name, value in inputs.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if not name or "=" in name or "\x00" in name or "\x00" in text:
            raise InvalidInput(f"input variable {name!r} cannot be an environment variable")
        env[name] = text
    return env


def inject_parameters(notebook: NotebookNode, inputs: Mapping[str, Any]) -> None:
    """Put the inputs after the ``parameters`` cell, replacing an earlier injection."""
    notebook.cells = [cell for cell in notebook.cells if INJECTED_TAG not in _tags(cell)]
    anchor = next(
        (i for i, cell in enumerate(notebook.cells) if PARAMETERS_TAG in _tags(cell)), None
    )
    names = [name for name in inputs if name.isidentifier() and not keyword.iskeyword(name)]
    if anchor is None or not names:
        return
    lines = ["# Parameters", *(f"{name} = {python_literal(inputs[name])}" for name in names)]
    cell = new_code_cell("\n".join(lines) + "\n", metadata={"tags": [INJECTED_TAG]})
    if notebook.nbformat_minor < 5:
        del cell["id"]
    notebook.cells.insert(anchor + 1, cell)


def python_literal(value: Any) -> str:
    """Python source for a JSON value (``repr`` cannot write NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{python_literal(key)}: {python_literal(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def _tags(cell: NotebookNode) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])
