"""Notebook execution on Jupyter kernels, as a library the API layer calls."""

from opensphere.engine.engine import ExecutionEngine
from opensphere.engine.inputs import InvalidInput
from opensphere.engine.launcher import InsufficientGpus, KernelLauncher, LocalLauncher
from opensphere.engine.notebook import InvalidNotebook, UnknownCell
from opensphere.engine.paths import PathOutsideProject, resolve_in
from opensphere.engine.run import ProgressCallback, RunError, RunRequest, RunResult, RunStatus
from opensphere.engine.specs import DEFAULT_SPEC, SPECS, Spec, UnknownSpec, resolve_spec

__all__ = [
    "DEFAULT_SPEC",
    "SPECS",
    "ExecutionEngine",
    "InsufficientGpus",
    "InvalidInput",
    "InvalidNotebook",
    "KernelLauncher",
    "LocalLauncher",
    "PathOutsideProject",
    "ProgressCallback",
    "RunError",
    "RunRequest",
    "RunResult",
    "RunStatus",
    "Spec",
    "UnknownCell",
    "UnknownSpec",
    "resolve_in",
    "resolve_spec",
]
