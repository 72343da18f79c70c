"""What a run is asked to do, and what it produced."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from opensphere.engine.specs import DEFAULT_SPEC, SPECS, Spec

# on_progress(cell_index, cell_count, stream_text): cell_index is the running cell's
# position among the cells being run (so also the number already finished). It is
# called with empty text as each cell starts, with the text whenever the cell writes
# to stdout or stderr, and as (cell_count, cell_count, "") once the last cell is done.
ProgressCallback = Callable[[int, int, str], object]


class RunStatus(StrEnum):
    OK = "OK"
    ERROR = "ERROR"
    ABORTED = "ABORTED"


@dataclass(frozen=True)
class RunRequest:
    """Run a notebook (or one cell of it) in its kernel session.

    ``notebook_path`` is relative to ``project_dir``; ``timeout`` bounds the run's own
    time (not its wait in the queue); ``idle_timeout`` is how long the kernel may then
    sit unused before it is stopped.
    """

    run_id: str
    project_id: str
    project_dir: Path
    notebook_path: str
    cell_id: str | None = None
    input_variables: Mapping[str, Any] = field(default_factory=dict)
    output_variable_names: Sequence[str] = ()
    spec: Spec = SPECS[DEFAULT_SPEC]
    timeout: float | None = None
    idle_timeout: float = 1800.0


@dataclass(frozen=True)
class RunError:
    """Why a run did not finish: the failing cell's error, a dead kernel, or an abort.

    ``cell_index`` indexes the executed notebook's cells (an injected parameters cell
    included); it is None when no cell was running.
    """

    reason: str
    cell_index: int | None = None
    cell_id: str | None = None
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    kernel_died: bool = False


@dataclass
class RunResult:
    """The executed notebook, the requested outputs, and the checkpoint's variables."""

    run_id: str
    status: RunStatus
    notebook: NotebookNode
    started_at: datetime
    finished_at: datetime
    output_variables: dict[str, Any] = field(default_factory=dict)
    missing_outputs: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    error: RunError | None = None

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()
