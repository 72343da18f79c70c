"""The API contract: generated code is current and matches the official SDK's protos.

Clients written against the official ``yandexcloud`` SDK must work against
OpenSphere unchanged, so every service, method, message, field, enum value, HTTP
rule and operation annotation that both define has to be identical. OpenSphere may
add to the surface; additions are listed at the end of the run, never failed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import proto_surface

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "src" / "opensphere" / "proto_gen"
REGENERATE = ".venv/bin/python -m opensphere.codegen"
# Lines that only record which protoc produced the file.
_PROTOC_VERSION = re.compile(rb"^# Protobuf Python Version: .*$|^    \d+,$", re.MULTILINE)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh_dir = tmp_path / "proto_gen"
    subprocess.run(
        [sys.executable, "-m", "opensphere.codegen", str(fresh_dir)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    fresh, checked_in = _files(fresh_dir), _files(GENERATED)
    problems = [f"missing: {n}" for n in sorted(fresh.keys() - checked_in.keys())]
    problems += [f"not from proto/: {n}" for n in sorted(checked_in.keys() - fresh.keys())]
    stale = [n for n in sorted(fresh.keys() & checked_in.keys()) if fresh[n] != checked_in[n]]
    problems += [f"stale: {n}" for n in stale]
    hint = ""
    if stale and all(
        _PROTOC_VERSION.sub(b"", fresh[n]) == _PROTOC_VERSION.sub(b"", checked_in[n])
        for n in stale
    ):
        hint = (
            "\nThe stale files differ only in the recorded protoc version: the installed "
            "grpcio-tools is not the one the checked-in code was generated with."
        )
    assert not problems, (
        f"src/opensphere/proto_gen does not match proto/ ({len(problems)} files):\n  "
        + "\n  ".join(problems)
        + f"{hint}\nRegenerate with: {REGENERATE}"
    )


def _our_modules() -> list[str]:
    """Every generated module: the required files plus any proto OpenSphere adds later."""
    found = {
        ".".join(p.relative_to(GENERATED).with_suffix("").parts)
        for p in GENERATED.rglob("*_pb2.py")
    }
    missing = sorted(set(proto_surface.MODULES) - found)
    assert not missing, f"generated modules missing: {missing}"
    return [*proto_surface.MODULES, *sorted(found - set(proto_surface.MODULES))]


def _sdk_surface(modules: list[str]) -> dict[str, Any]:
    # The SDK's `yandex` package registers the same proto files as ours in the global
    # descriptor pool, so it may only ever be imported in a separate interpreter.
    proc = subprocess.run(
        [sys.executable, str(Path(proto_surface.__file__)), "sdk", *modules],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, f"dumping the SDK's protos failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


class _Diff:
    """Collects every finding so one run reports all of them at once."""

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.ours_only: list[str] = []
        self.sdk_only: list[str] = []

    def keyed(self, label: str, ours: dict[str, Any], sdk: dict[str, Any]) -> list[str]:
        """Record one-sided keys (``label`` formats them); return the shared ones."""
        self.ours_only += [label.format(k) for k in sorted(ours.keys() - sdk.keys())]
        self.sdk_only += [label.format(k) for k in sorted(sdk.keys() - ours.keys())]
        return sorted(ours.keys() & sdk.keys())

    def attrs(self, where: str, ours: dict[str, Any], sdk: dict[str, Any]) -> None:
        """Every attribute but the defining file must be equal."""
        for attr in sorted(ours.keys() | sdk.keys()):
            if attr != "file" and ours.get(attr) != sdk.get(attr):
                self.mismatches.append(
                    f"{where}: {attr} is {ours.get(attr)!r}, the SDK has {sdk.get(attr)!r}"
                )


def _compare(ours: dict[str, Any], sdk: dict[str, Any]) -> _Diff:
    diff = _Diff()
    diff.ours_only += [
        f"file {name.replace('.', '/').removesuffix('_pb2')}.proto"
        for name in sdk.get("missing_files", [])
    ]

    for name in diff.keyed("service {}", ours["services"], sdk["services"]):
        our_methods = ours["services"][name]["methods"]
        sdk_methods = sdk["services"][name]["methods"]
        for method in diff.keyed(f"method {name}.{{}}", our_methods, sdk_methods):
            diff.attrs(f"{name}.{method}", our_methods[method], sdk_methods[method])

    for name in diff.keyed("message {}", ours["messages"], sdk["messages"]):
        our_fields = ours["messages"][name]["fields"]
        sdk_fields = sdk["messages"][name]["fields"]
        for number in diff.keyed(f"field {name} #{{}}", our_fields, sdk_fields):
            diff.attrs(f"{name} field #{number}", our_fields[number], sdk_fields[number])
        # Fields are matched by number; a field that moved to a free number is caught here.
        sdk_numbers = {f["name"]: f["number"] for f in sdk_fields.values()}
        for field in our_fields.values():
            other = sdk_numbers.get(field["name"])
            if other is not None and other != field["number"]:
                diff.mismatches.append(
                    f"{name}.{field['name']}: number is {field['number']}, the SDK has {other}"
                )

    for name in diff.keyed("enum {}", ours["enums"], sdk["enums"]):
        our_values, sdk_values = ours["enums"][name], sdk["enums"][name]
        for value in diff.keyed(f"enum value {name}.{{}}", our_values, sdk_values):
            if our_values[value] != sdk_values[value]:
                diff.mismatches.append(
                    f"{name}.{value}: number is {our_values[value]}, "
                    f"the SDK has {sdk_values[value]}"
                )
        # A renamed value changes the JSON (REST) encoding even though the number matches.
        our_names = {number: value for value, number in our_values.items()}
        for value, number in sdk_values.items():
            mine = our_names.get(number)
            if mine is not None and value not in our_values and mine not in sdk_values:
                diff.mismatches.append(f"{name} value {number}: named {mine}, the SDK has {value}")

    for name in diff.keyed("extension {}", ours["extensions"], sdk["extensions"]):
        diff.attrs(f"extension {name}", ours["extensions"][name], sdk["extensions"][name])
    return diff


def test_matches_official_sdk(terminal_notes: dict[str, list[str]]) -> None:
    modules = _our_modules()
    sdk = _sdk_surface(modules)
    ours = proto_surface.surface(proto_surface.OURS, modules)
    diff = _compare(ours, sdk)

    counts = {kind: len(ours[kind]) for kind in ("services", "messages", "enums", "extensions")}
    methods = sum(len(s["methods"]) for s in ours["services"].values())
    notes = terminal_notes.setdefault("DataSphere API v2 contract (official SDK)", [])
    notes.append(
        f"yandexcloud {sdk['sdk_version']} vs OpenSphere ({counts['services']} services, "
        f"{methods} methods, {counts['messages']} messages, {counts['enums']} enums, "
        f"{counts['extensions']} extensions): {len(diff.mismatches)} mismatches"
    )
    if diff.ours_only:
        notes.append(f"OpenSphere additions the SDK does not define ({len(diff.ours_only)}):")
        notes += [f"  + {item}" for item in diff.ours_only]
    if diff.sdk_only:
        notes.append(f"SDK surface OpenSphere does not define ({len(diff.sdk_only)}):")
        notes += [f"  - {item}" for item in diff.sdk_only]

    assert not diff.mismatches, (
        f"{len(diff.mismatches)} differences from the official SDK's protos:\n  "
        + "\n  ".join(diff.mismatches)
    )


def test_compare_reports_every_kind_of_difference() -> None:
    """The comparison itself: a contract test that cannot fail protects nothing."""
    field = {
        "name": "name", "number": 1, "type": "TYPE_STRING", "label": "LABEL_OPTIONAL",
        "type_name": "", "oneof": None, "proto3_optional": False,
    }
    method = {
        "input_type": "p.Req", "output_type": "p.Res", "client_streaming": False,
        "server_streaming": False, "http": {"get": "/x/{id}"}, "operation": None,
    }
    sdk = {
        "services": {"p.S": {"methods": {"Get": method}}},
        "messages": {"p.Req": {"fields": {"1": field}}},
        "enums": {"p.E": {"A": 0, "B": 1}},
        "extensions": {},
    }
    ours = {
        "services": {"p.S": {"methods": {
            "Get": {**method, "http": {"get": "/y/{id}"}},
            "Extra": method,
        }}},
        "messages": {"p.Req": {"fields": {
            "1": {**field, "type": "TYPE_BYTES"},
            "7": {**field, "name": "added", "number": 7},
        }}},
        "enums": {"p.E": {"A": 0, "B": 2}},
        "extensions": {},
    }
    diff = _compare(ours, sdk)
    assert len(diff.mismatches) == 3, diff.mismatches
    assert any("http" in m for m in diff.mismatches)
    assert any("TYPE_BYTES" in m for m in diff.mismatches)
    assert any("p.E.B" in m for m in diff.mismatches)
    assert diff.ours_only == ["method p.S.Extra", "field p.Req #7"]
    assert diff.sdk_only == []
    renumbered = {**ours, "messages": {"p.Req": {"fields": {"2": {**field, "number": 2}}}}}
    assert any("number is 2" in m for m in _compare(renumbered, sdk).mismatches)


def test_our_modules_load_without_sdk() -> None:
    """Our generated code must never pull in the SDK's top-level ``yandex`` package."""
    names = [proto_surface.OURS + module for module in _our_modules()]
    proc = subprocess.run(
        [sys.executable, "-c", (
            "import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "sys.exit('yandex' in sys.modules)"
        )],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr or "generated code imported the SDK's `yandex`"
