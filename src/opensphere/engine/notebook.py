"""Reading and writing notebooks, and choosing the cells a run executes.

Validating a notebook against nbformat's schema costs more than running a small one,
so a file is validated when it is first read or has changed since (same path, size,
modification time and inode), and never when written: what the engine adds, outputs
built from kernel messages, cannot make a valid notebook invalid.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from pathlib import Path

import nbformat
import nbformat.v4
from nbformat import NotebookNode

# Reading a notebook this small inline is cheaper than handing it to a thread; bigger
# ones go to a thread so that the event loop stays responsive.
INLINE_READ_BYTES = 1 << 20
CACHED_NOTEBOOKS = 256
_Signature = tuple[int, int, int]
# path -> (file signature, the validated notebook as v4 JSON); least recently used first
_validated: OrderedDict[Path, tuple[_Signature, str]] = OrderedDict()


class InvalidNotebook(ValueError):
    """The file is not a notebook nbformat can read."""


class UnknownCell(ValueError):
    """No cell of the notebook has the requested id."""


def warm_up() -> None:
    """Compile nbformat's schema validator now, not during the first run."""
    nbformat.validator.get_validator()


async def read(path: Path) -> NotebookNode:
    """The notebook at ``path`` as nbformat v4 (a fresh copy each time); a missing file
    raises FileNotFoundError."""
    stat = path.stat()
    signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _validated.get(path)
    if cached is not None and cached[0] == signature:
        _validated.move_to_end(path)
        return nbformat.from_dict(json.loads(cached[1]))
    if stat.st_size <= INLINE_READ_BYTES:
        notebook = _load(path)
    else:
        notebook = await asyncio.to_thread(_load, path)
    _validated[path] = (signature, json.dumps(notebook))
    while len(_validated) > CACHED_NOTEBOOKS:
        _validated.popitem(last=False)
    return notebook


def _load(path: Path) -> NotebookNode:
    problems: dict[str, Exception] = {}
    try:
        notebook = nbformat.read(path, as_version=4, capture_validation_error=problems)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise InvalidNotebook(f"{path.name} is not a readable notebook: {error}") from error
    if problems:
        raise InvalidNotebook(f"{path.name} is not a valid notebook: {problems['ValidationError']}")
    return notebook


def dumps(notebook: NotebookNode) -> str:
    """The notebook as nbformat writes it (sorted keys, one-space indent), unvalidated."""
    text: str = nbformat.v4.writes(notebook)
    return text


def cells_to_run(notebook: NotebookNode, cell_id: str | None) -> list[int]:
    """Indexes of the code cells to execute: all of them, or just the one with ``cell_id``."""
    if cell_id is None:
        return [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    for i, cell in enumerate(notebook.cells):
        if cell.get("id") == cell_id:
            return [i] if cell.cell_type == "code" else []
    raise UnknownCell(f"the notebook has no cell with id {cell_id!r}")
