"""Specs, project paths and inputs: the engine's rules that need no kernel."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from opensphere.engine import (
    DEFAULT_SPEC,
    SPECS,
    InsufficientGpus,
    InvalidInput,
    LocalLauncher,
    PathOutsideProject,
    UnknownSpec,
    resolve_in,
    resolve_spec,
)
from opensphere.engine.inputs import INJECTED_TAG, environment, inject_parameters, python_literal


def test_catalog_has_the_public_configurations() -> None:
    expected = {"c1.4", "c1.8", "c1.32", "c1.80", "g1.1", "g1.2", "g1.4", "g2.1", "g2.2", "g2.4"}
    assert expected | {"g2.8"} <= set(SPECS)
    assert DEFAULT_SPEC == "c1.4"
    assert resolve_spec("g2.8").gpus == 8
    assert resolve_spec("c1.80").cpus == 80
    assert all(spec.gpus == 0 and spec.gpu_type is None for n, spec in SPECS.items() if n[0] == "c")
    assert all(spec.gpus > 0 and spec.gpu_type for name, spec in SPECS.items() if name[0] == "g")
    assert resolve_spec("c1.8").unit_price_per_hour == 2 * resolve_spec("c1.4").unit_price_per_hour


def test_empty_spec_name_means_the_default() -> None:
    assert resolve_spec("") is SPECS[DEFAULT_SPEC]


def test_unknown_spec_is_refused() -> None:
    with pytest.raises(UnknownSpec, match="c9.9"):
        resolve_spec("c9.9")
    assert issubclass(UnknownSpec, ValueError)


def test_paths_inside_the_project_resolve(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nb.ipynb").touch()
    (tmp_path / "alias.ipynb").symlink_to(tmp_path / "sub" / "nb.ipynb")
    real = (tmp_path / "sub" / "nb.ipynb").resolve()
    assert resolve_in(tmp_path, "sub/nb.ipynb") == real
    assert resolve_in(tmp_path, "./sub/nb.ipynb") == real
    assert resolve_in(tmp_path, "alias.ipynb") == real
    assert resolve_in(tmp_path, "not/yet/there.ipynb") == tmp_path.resolve() / "not/yet/there.ipynb"


@pytest.mark.parametrize(
    "relative", ["", "../x.ipynb", "sub/../../x.ipynb", "/etc/passwd", "a\x00b.ipynb"]
)
def test_paths_that_could_leave_the_project_are_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(PathOutsideProject):
        resolve_in(tmp_path / "project", relative)


def test_symlinks_out_of_the_project_are_refused(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "secret.ipynb").touch()
    (project / "link.ipynb").symlink_to(outside / "secret.ipynb")
    (project / "dir").symlink_to(outside)
    (project / "passwd").symlink_to("/etc/passwd")
    for relative in ("link.ipynb", "dir/secret.ipynb", "passwd"):
        with pytest.raises(PathOutsideProject):
            resolve_in(project, relative)


def test_inputs_become_environment_variables() -> None:
    env = environment({"s": "text", "n": 5, "f": 1.5, "b": True, "o": {"k": [1, None]}})
    assert env == {"s": "text", "n": "5", "f": "1.5", "b": "true", "o": '{"k": [1, null]}'}
    for bad in ({"": 1}, {"A=B": 1}, {"A": "x\x00y"}):
        with pytest.raises(InvalidInput):
            environment(bad)


def test_python_literals_round_trip() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "quote ' \" \n"}}
    assert eval(python_literal(value)) == value
    assert math.isnan(eval(python_literal(float("nan"))))
    assert eval(python_literal([float("inf")])) == [math.inf]


def test_parameters_are_injected_after_the_parameters_cell() -> None:
    notebook = new_notebook(cells=[new_code_cell("import os"), new_code_cell("a = 1")])
    notebook.cells[1].metadata["tags"] = ["parameters"]
    inject_parameters(notebook, {"a": 2, "not an identifier": 3, "class": 4})
    inject_parameters(notebook, {"a": 5})  # a second injection replaces the first
    assert len(notebook.cells) == 3
    injected = notebook.cells[2]
    assert injected.metadata["tags"] == [INJECTED_TAG]
    assert injected.source == "# Parameters\na = 5\n"


def test_no_parameters_cell_means_no_injection() -> None:
    notebook = new_notebook(cells=[new_code_cell("a = 1")])
    inject_parameters(notebook, {"a": 2})
    assert len(notebook.cells) == 1


async def test_gpu_specs_need_enough_gpus() -> None:
    no_gpus, two_gpus = LocalLauncher(gpu_ids=[]), LocalLauncher(gpu_ids=["0", "1"])
    try:
        await no_gpus.check(SPECS["c1.4"])
        with pytest.raises(InsufficientGpus, match="g1.1"):
            await no_gpus.check(SPECS["g1.1"])
        await two_gpus.check(SPECS["g1.2"])
        with pytest.raises(InsufficientGpus, match="g1.4"):
            await two_gpus.check(SPECS["g1.4"])
    finally:
        await no_gpus.close()
        await two_gpus.close()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has GPUs")
async def test_a_machine_without_nvidia_smi_has_no_gpus() -> None:
    launcher = LocalLauncher()
    try:
        with pytest.raises(InsufficientGpus, match="has 0"):
            await launcher.check(SPECS["g1.1"])
    finally:
        await launcher.close()
