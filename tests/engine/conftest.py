"""Fixtures for the engine's tests: real kernels, one engine per module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from opensphere.engine import ExecutionEngine, RunRequest, RunResult

# A guard against hangs, not a speed check: eight kernels booting at once on a busy
# two-core machine can take tens of seconds.
RUN_LIMIT = 120.0

WriteNotebook = Callable[..., str]
MakeRequest = Callable[..., RunRequest]
RunNotebook = Callable[..., Awaitable[RunResult]]


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[ExecutionEngine]:
    engine = ExecutionEngine(interrupt_grace=1.0)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="module")
def write_notebook(project: Path) -> WriteNotebook:
    """``write_notebook(name, *sources, tags={index: [...]}, ids=[...])`` -> relative path.

    A source starting with ``#md`` becomes a markdown cell.
    """

    def write(
        name: str,
        *sources: str,
        tags: dict[int, list[str]] | None = None,
        ids: list[str] | None = None,
    ) -> str:
        cells = [
            new_markdown_cell(source[3:]) if source.startswith("#md") else new_code_cell(source)
            for source in sources
        ]
        for index, cell_tags in (tags or {}).items():
            cells[index].metadata["tags"] = cell_tags
        for cell, cell_id in zip(cells, ids or [], strict=False):
            cell.id = cell_id
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(new_notebook(cells=cells), path)
        return name

    return write


@pytest.fixture(scope="module")
def make_request(project: Path) -> MakeRequest:
    """``make_request(notebook_path, **fields)`` with a fresh run id and the module's project."""

    def make(notebook_path: str, **fields: Any) -> RunRequest:
        fields.setdefault("run_id", uuid.uuid4().hex)
        return RunRequest(
            project_id="project", project_dir=project, notebook_path=notebook_path, **fields
        )

    return make


@pytest.fixture(scope="module")
def run(engine: ExecutionEngine) -> RunNotebook:
    """``await run(request, on_progress=...)``: the module engine's execute, bounded in time
    so that a hung kernel fails its test instead of the whole suite."""

    async def run(request: RunRequest, **kwargs: Any) -> RunResult:
        return await asyncio.wait_for(engine.execute(request, **kwargs), RUN_LIMIT)

    return run
