"""Running notebooks on real kernels: inputs, outputs, state, errors and single cells."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from opensphere.engine import (
    SPECS,
    ExecutionEngine,
    InsufficientGpus,
    PathOutsideProject,
    RunRequest,
    RunResult,
    RunStatus,
    Spec,
    UnknownCell,
)
from opensphere.engine.inputs import INJECTED_TAG

# The shapes of the conftest fixtures.
WriteNotebook = Callable[..., str]
MakeRequest = Callable[..., RunRequest]
RunNotebook = Callable[..., Awaitable[RunResult]]


async def test_inputs_arrive_as_environment_and_as_parameters(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "inputs.ipynb",
        "count = 1\nlabel = 'default'",
        "import os\nfrom_env = os.environ['count']\nobj_env = os.environ['obj']",
        tags={0: ["parameters"]},
    )
    inputs = {"count": 5, "label": "given", "obj": {"k": [1, 2]}}
    names = ["count", "label", "from_env", "obj_env", "obj"]
    result = await run(make_request(path, input_variables=inputs, output_variable_names=names))

    assert result.status == RunStatus.OK, result.error
    assert result.output_variables == {
        "count": 5,
        "label": "given",
        "from_env": "5",
        "obj_env": '{"k": [1, 2]}',
        "obj": {"k": [1, 2]},
    }
    injected = result.notebook.cells[1]
    assert injected.metadata["tags"] == [INJECTED_TAG]
    assert injected.execution_count is not None

    # The environment is restored after the run; the kernel's state is not.
    again = write_notebook("inputs.ipynb", "import os\nafter = os.environ.get('count')")
    result = await run(make_request(again, output_variable_names=["after", "label"]))
    assert result.output_variables == {"after": None, "label": "given"}


async def test_outputs_of_every_kind(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "outputs.ipynb",
        "import numpy as np\nimport pandas as pd\n"
        "class Thing:\n    def __repr__(self):\n        return 'Thing()'\n",
        "i = 7\ns = 'text'\nl = [1, 'a', (2, 3)]\nd = {'a': 1, 2: [None]}\n"
        "n = np.float64(2.5)\nk = np.int32(3)\narr = np.arange(6).reshape(2, 3)\n"
        "df = pd.DataFrame({'x': [1, 2], 'y': ['a', 'b']})\nser = pd.Series([0.5, 1.5])\n"
        "t = Thing()",
    )
    names = ["i", "s", "l", "d", "n", "k", "arr", "df", "ser", "t", "nope"]
    result = await run(make_request(path, output_variable_names=names))

    assert result.status == RunStatus.OK, result.error
    outputs = result.output_variables
    assert outputs == {
        "i": 7,
        "s": "text",
        "l": [1, "a", [2, 3]],
        "d": {"a": 1, "2": [None]},
        "n": 2.5,
        "k": 3,
        "arr": [[0, 1, 2], [3, 4, 5]],
        "df": {"x": [1, 2], "y": ["a", "b"]},
        "ser": [0.5, 1.5],
        "t": "Thing()",
    }
    assert type(outputs["k"]) is int
    assert result.missing_outputs == ["nope"]
    # The checkpoint's snapshot keeps what has a JSON form and nothing else.
    snapshot = result.variables
    assert snapshot["df"] == {"x": [1, 2], "y": ["a", "b"]}
    assert snapshot["i"] == 7
    assert not {"t", "Thing", "np", "pd", "In", "Out"} & set(snapshot)
    assert not any(name.startswith("_") for name in snapshot)


async def test_state_survives_between_runs_and_can_be_read(
    engine: ExecutionEngine,
    run: RunNotebook,
    write_notebook: WriteNotebook,
    make_request: MakeRequest,
) -> None:
    path = write_notebook("state.ipynb", "counter = globals().get('counter', 0) + 1")
    assert await engine.state_variables("project", path) is None
    first = await run(make_request(path, output_variable_names=["counter"]))
    second = await run(make_request(path, output_variable_names=["counter"]))

    assert first.output_variables == {"counter": 1}
    assert second.output_variables == {"counter": 2}
    assert await engine.state_variables("project", path) == {"counter": 2}
    assert await engine.state_variables("project", "./state.ipynb", ["counter", "x"]) == {
        "counter": 2
    }
    assert await engine.state_variables("other-project", path) is None


async def test_a_raising_cell_stops_the_run(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "raises.ipynb", "x = 1", "print('before')\n1 / 0", "y = 2", ids=["a", "b", "c"]
    )
    result = await run(make_request(path, output_variable_names=["x", "y"]))

    assert result.status == RunStatus.ERROR
    error = result.error
    assert error is not None
    assert (error.cell_index, error.cell_id, error.ename) == (1, "b", "ZeroDivisionError")
    assert error.traceback and not error.kernel_died
    failed = result.notebook.cells[1]
    assert [output.output_type for output in failed.outputs] == ["stream", "error"]
    assert failed.outputs[1].ename == "ZeroDivisionError"
    assert result.notebook.cells[2].execution_count is None
    assert result.output_variables == {"x": 1}
    assert result.missing_outputs == ["y"]
    assert result.variables == {"x": 1}


async def test_a_cell_asking_for_input_fails_instead_of_waiting(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook("asks.ipynb", "import getpass", "name = input('name? ')")
    result = await run(make_request(path))

    assert result.status == RunStatus.ERROR
    assert result.error is not None
    assert (result.error.cell_index, result.error.ename) == (1, "StdinNotImplementedError")
    # The same kernel runs on, and a password prompt fails the same way.
    write_notebook("asks.ipynb", "secret = getpass.getpass()")
    again = await run(make_request(path))
    assert again.error is not None
    assert (again.error.cell_index, again.error.ename) == (0, "StdinNotImplementedError")


async def test_a_single_cell_runs_by_id(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook("cells.ipynb", "a = 1", "b = 2", ids=["first", "second"])
    result = await run(make_request(path, cell_id="second", output_variable_names=["a", "b"]))

    assert result.status == RunStatus.OK
    assert result.output_variables == {"b": 2}
    assert result.missing_outputs == ["a"]
    assert result.notebook.cells[0].execution_count is None
    assert result.notebook.cells[1].execution_count is not None
    with pytest.raises(UnknownCell, match="third"):
        await run(make_request(path, cell_id="third"))


async def test_progress_reports_cells_and_their_output(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook("progress.ipynb", "print('one')", "#md text", "print('two')")
    calls: list[tuple[int, int, str]] = []

    def on_progress(index: int, count: int, text: str) -> None:
        calls.append((index, count, text))
        raise RuntimeError("a broken callback must not break the run")

    result = await run(make_request(path), on_progress=on_progress)

    assert result.status == RunStatus.OK
    assert calls == [(0, 2, ""), (0, 2, "one\n"), (1, 2, ""), (1, 2, "two\n"), (2, 2, "")]
    assert result.notebook.cells[2].outputs[0].text == "two\n"


async def test_each_cell_keeps_its_own_outputs_and_execution_count(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "cells.ipynb",
        "print('a')",
        "%%capture hidden\nprint('captured')",
        "x = 1\nx + 1",
        "import sys\nprint('to stderr', file=sys.stderr)\n!echo shell",
    )
    result = await run(make_request(path))

    assert result.status == RunStatus.OK, result.error
    cells = result.notebook.cells
    assert [output.text for output in cells[0].outputs] == ["a\n"]
    assert cells[1].outputs == []
    assert cells[2].outputs[0].data["text/plain"] == "2"
    assert cells[2].outputs[0].execution_count == cells[2].execution_count
    streams = sorted((output.name, output.text.strip()) for output in cells[3].outputs)
    assert streams == [("stderr", "to stderr"), ("stdout", "shell")]
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(counts[0], counts[0] + 4))


async def test_a_notebook_with_top_level_await_runs_cell_by_cell(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "awaits.ipynb",
        "import asyncio\nimport os\nprint('before', os.environ['GIVEN'])",
        "await asyncio.sleep(0)\nvalue = 3\nprint('awaited')",
        "print(value + 1)",
    )
    request = make_request(path, input_variables={"GIVEN": "yes"}, output_variable_names=["value"])
    result = await run(request)

    assert result.status == RunStatus.OK, result.error
    texts = [[output.text for output in cell.outputs] for cell in result.notebook.cells]
    assert texts == [["before yes\n"], ["awaited\n"], ["4\n"]]
    assert result.output_variables == {"value": 3}
    assert all(cell.execution_count is not None for cell in result.notebook.cells)


async def test_display_updates_and_clear_output_follow_jupyter(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "display.ipynb",
        "from IPython.display import clear_output, display\n"
        "handle = display('first', display_id=True)\n"
        "print('gone')\nclear_output()\nprint('kept')",
        "handle.update('updated')\n'result'",
    )
    result = await run(make_request(path))

    first, second = result.notebook.cells
    assert [output.get("text") for output in first.outputs] == ["kept\n"]
    assert second.outputs[0].output_type == "execute_result"
    assert second.outputs[0].data["text/plain"] == "'result'"

    path = write_notebook(
        "display.ipynb",
        "from IPython.display import display\nhandle = display('first', display_id=True)",
        "handle.update('updated')",
    )
    result = await run(make_request(path))
    assert result.notebook.cells[0].outputs[0].data["text/plain"] == "'updated'"


async def test_requests_that_cannot_run_are_refused_before_queueing(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest, project: Path
) -> None:
    outside = project.parent / "outside.ipynb"
    write_notebook("here.ipynb", "x = 1")
    outside.write_text((project / "here.ipynb").read_text())
    (project / "link.ipynb").symlink_to(outside)
    for path in ("../outside.ipynb", "/etc/passwd", "link.ipynb"):
        with pytest.raises(PathOutsideProject):
            await run(make_request(path))
    with pytest.raises(FileNotFoundError):
        await run(make_request("missing.ipynb"))
    many_gpus = Spec("test.gpus", cpus=1, memory_gb=1, gpus=64, gpu_type="any")
    with pytest.raises(InsufficientGpus):
        await run(make_request("here.ipynb", spec=many_gpus))
    assert (await run(make_request("here.ipynb", spec=SPECS["c1.4"]))).status == RunStatus.OK
