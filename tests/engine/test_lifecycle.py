"""Kernels dying, runs cancelled or timed out, memory limits, queues and parallel notebooks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from opensphere.engine import ExecutionEngine, RunRequest, RunResult, RunStatus, Spec

# The shapes of the conftest fixtures.
WriteNotebook = Callable[..., str]
MakeRequest = Callable[..., RunRequest]
RunNotebook = Callable[..., Awaitable[RunResult]]

LOOP = "print('looping', flush=True)\nwhile True:\n    pass"


async def _started(run: RunNotebook, request: RunRequest) -> tuple[asyncio.Task[RunResult], float]:
    """Start a run and return once its cell has printed 'looping' (and when that was)."""
    looping = asyncio.Event()

    def on_progress(_index: int, _count: int, text: str) -> None:
        if "looping" in text:
            looping.set()

    task = asyncio.create_task(run(request, on_progress=on_progress))
    await asyncio.wait_for(looping.wait(), 60)
    return task, time.monotonic()


async def test_a_kernel_that_exits_fails_the_run_and_is_replaced(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook("exits.ipynb", "x = 1", "import os\nos._exit(1)", "y = 2")
    result = await run(make_request(path, output_variable_names=["x"]))

    assert result.status == RunStatus.ERROR
    assert result.error is not None and result.error.kernel_died
    assert result.error.cell_index == 1
    assert result.notebook.cells[1].outputs[-1].ename == "KernelDied"
    assert result.missing_outputs == ["x"]

    path = write_notebook("exits.ipynb", "y = globals().get('x', 'fresh')")
    again = await run(make_request(path, output_variable_names=["y"]))
    assert again.status == RunStatus.OK
    assert again.output_variables == {"y": "fresh"}


async def test_cancelling_an_endless_loop_interrupts_it(
    engine: ExecutionEngine,
    run: RunNotebook,
    write_notebook: WriteNotebook,
    make_request: MakeRequest,
) -> None:
    path = write_notebook("loop.ipynb", "kept = 1", LOOP)
    request = make_request(path, output_variable_names=["kept"])
    task, since = await _started(run, request)
    assert engine.cancel(request.run_id)
    result = await task

    assert time.monotonic() - since < 5
    assert result.status == RunStatus.ABORTED
    assert result.error is not None and result.error.reason == "cancelled"
    assert result.error.cell_index == 1
    assert result.notebook.cells[1].outputs[-1].ename == "KeyboardInterrupt"
    assert result.output_variables == {"kept": 1}  # the interrupted kernel lives on
    assert not engine.cancel(request.run_id)


async def test_a_loop_that_ignores_interrupts_costs_its_kernel(
    engine: ExecutionEngine,
    run: RunNotebook,
    write_notebook: WriteNotebook,
    make_request: MakeRequest,
) -> None:
    path = write_notebook(
        "stubborn.ipynb",
        "lost = 1",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + LOOP,
    )
    request = make_request(path)
    task, since = await _started(run, request)
    assert engine.cancel(request.run_id)
    result = await task

    assert time.monotonic() - since < 5
    assert result.status == RunStatus.ABORTED
    path = write_notebook("stubborn.ipynb", "state = globals().get('lost', 'fresh')")
    again = await run(make_request(path, output_variable_names=["state"]))
    assert again.output_variables == {"state": "fresh"}


async def test_a_run_past_its_timeout_is_aborted(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook("slow.ipynb", "import time\ntime.sleep(30)")
    started = time.monotonic()
    result = await run(make_request(path, timeout=0.5))

    assert time.monotonic() - started < 5
    assert result.status == RunStatus.ABORTED
    assert result.error is not None and "timed out" in result.error.reason


async def test_a_memory_hog_is_stopped_by_the_spec_limit(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    small = Spec("test.small", cpus=1, memory_gb=1)
    path = write_notebook(
        "hog.ipynb",
        "import os, resource\nlimit = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
        "cores = len(os.sched_getaffinity(0))\ngpus = os.environ['CUDA_VISIBLE_DEVICES']",
        "hog = bytearray(4 * 1024**3)",
    )
    result = await run(make_request(path, spec=small, output_variable_names=["limit", "cores"]))

    assert result.status == RunStatus.ERROR
    assert result.error is not None
    assert result.error.kernel_died or result.error.ename == "MemoryError"
    if not result.error.kernel_died:
        assert result.output_variables == {"limit": 1 << 30, "cores": 1}
        assert result.variables["gpus"] == ""
    path = write_notebook("after-hog.ipynb", "fine = True")
    assert (await run(make_request(path, spec=small))).status == RunStatus.OK


async def test_runs_of_one_notebook_execute_one_at_a_time_in_order(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    path = write_notebook(
        "queue.ipynb",
        "import os, time\ntime.sleep(0.2)\n"
        "order = globals().get('order', []) + [os.environ['RUN']]",
    )
    requests = [
        make_request(path, input_variables={"RUN": name}, output_variable_names=["order"])
        for name in "abc"
    ]
    results = await asyncio.gather(*(run(request) for request in requests))

    assert [r.output_variables["order"] for r in results] == [["a"], ["a", "b"], ["a", "b", "c"]]
    for earlier, later in zip(results, results[1:], strict=False):
        assert earlier.finished_at <= later.started_at


async def test_a_queued_run_can_be_cancelled_before_it_starts(
    engine: ExecutionEngine,
    run: RunNotebook,
    write_notebook: WriteNotebook,
    make_request: MakeRequest,
) -> None:
    path = write_notebook(
        "cancel-queued.ipynb",
        "import os, time\ntime.sleep(1)\nseen = globals().get('seen', []) + [os.environ['RUN']]",
    )
    first, second = (
        make_request(path, input_variables={"RUN": name}, output_variable_names=["seen"])
        for name in ("first", "second")
    )
    running = asyncio.create_task(run(first))
    queued = asyncio.create_task(run(second))
    await asyncio.sleep(0.2)
    assert engine.cancel(second.run_id)
    aborted = await asyncio.wait_for(queued, 1)

    assert aborted.status == RunStatus.ABORTED
    assert not running.done()
    assert (await running).output_variables == {"seen": ["first"]}
    assert await engine.state_variables("project", path, ["seen"]) == {"seen": ["first"]}


async def test_different_notebooks_run_side_by_side(
    run: RunNotebook, write_notebook: WriteNotebook, make_request: MakeRequest
) -> None:
    paths = [write_notebook(f"parallel/{i}.ipynb", "import time") for i in range(8)]
    booted = await asyncio.gather(*(run(make_request(path)) for path in paths))
    assert all(result.status == RunStatus.OK for result in booted)

    code = "start = time.time()\ntime.sleep(1)\nend = time.time()"
    paths = [write_notebook(path, code) for path in paths]
    results = await asyncio.gather(
        *(run(make_request(path, output_variable_names=["start", "end"])) for path in paths)
    )

    assert all(result.status == RunStatus.OK for result in results)
    spans = [(r.output_variables["start"], r.output_variables["end"]) for r in results]
    assert max(start for start, _ in spans) < min(end for _, end in spans)


async def test_an_idle_session_stops_its_kernel(
    engine: ExecutionEngine,
    run: RunNotebook,
    write_notebook: WriteNotebook,
    make_request: MakeRequest,
) -> None:
    path = write_notebook("idle.ipynb", "x = 1")
    await run(make_request(path, idle_timeout=0.3))
    assert await engine.state_variables("project", path) == {"x": 1}
    await asyncio.sleep(0.6)
    assert await engine.state_variables("project", path) is None
