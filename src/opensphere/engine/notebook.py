"""Reading a notebook and choosing the cells a run executes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nbformat
from nbformat import NotebookNode

# Reading a notebook this small inline is cheaper than handing it to a thread; bigger
# ones go to a thread so that the event loop stays responsive.
INLINE_READ_BYTES = 1 << 20


class InvalidNotebook(ValueError):
    """The file is not a notebook nbformat can read."""


class UnknownCell(ValueError):
    """No cell of the notebook has the requested id."""


def warm_up() -> None:
    """Compile nbformat's schema validator now, not during the first run."""
    nbformat.validator.get_validator()


async def read(path: Path) -> NotebookNode:
    """The notebook at ``path`` as nbformat v4; a missing file raises FileNotFoundError."""
    if path.stat().st_size <= INLINE_READ_BYTES:
        return _load(path)
    return await asyncio.to_thread(_load, path)


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


def cells_to_run(notebook: NotebookNode, cell_id: str | None) -> list[int]:
    """Indexes of the code cells to execute: all of them, or just the one with ``cell_id``."""
    if cell_id is None:
        return [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    for i, cell in enumerate(notebook.cells):
        if cell.get("id") == cell_id:
            return [i] if cell.cell_type == "code" else []
    raise UnknownCell(f"the notebook has no cell with id {cell_id!r}")
