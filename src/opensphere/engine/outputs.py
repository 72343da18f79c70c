"""A cell's outputs, built from the kernel's IOPub messages the way Jupyter front ends do.

Outputs are built as nbformat's ``output_from_msg`` builds them, without its schema
check per output: each message comes from the kernel's own protocol code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbformat import NotebookNode, from_dict

# The content fields each output type keeps (nbformat v4).
FIELDS = {
    "stream": ("name", "text"),
    "display_data": ("data", "metadata"),
    "execute_result": ("data", "metadata", "execution_count"),
    "error": ("ename", "evalue", "traceback"),
}
# Outputs shown with a display id, across the run, so later cells can update them.
Displays = dict[str, list[NotebookNode]]


class CellOutputs:
    """Collects one cell's outputs; ``on_stream`` sees stdout/stderr text as it arrives."""

    def __init__(
        self, cell: NotebookNode, displays: Displays, on_stream: Callable[[str], None]
    ) -> None:
        cell.outputs = []
        self._outputs: list[NotebookNode] = cell.outputs
        self._displays = displays
        self._on_stream = on_stream
        self._clear_on_next = False

    def __call__(self, message: dict[str, Any]) -> None:
        kind, content = message["msg_type"], message["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self._clear_on_next = True
            else:
                self._outputs.clear()
        elif kind == "update_display_data":
            for output in self._displays.get(content.get("transient", {}).get("display_id"), []):
                output.data = content["data"]
                output.metadata = content["metadata"]
        elif kind in FIELDS:
            if self._clear_on_next:
                self._outputs.clear()
                self._clear_on_next = False
            self._add(kind, message)

    def _add(self, kind: str, message: dict[str, Any]) -> None:
        content = message["content"]
        if kind == "stream":
            self._on_stream(content["text"])
            last = self._outputs[-1] if self._outputs else None
            if last is not None and last.output_type == "stream" and last.name == content["name"]:
                last.text += content["text"]
                return
        output = from_dict(
            {"output_type": kind, **{name: content[name] for name in FIELDS[kind]}}
        )
        self._outputs.append(output)
        display_id = content.get("transient", {}).get("display_id")
        if display_id:
            self._displays.setdefault(display_id, []).append(output)
