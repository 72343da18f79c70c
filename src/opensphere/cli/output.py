"""How client commands print: proto3 JSON for scripts, rich tables and panels for people.

Results go to stdout and everything else (notes, errors) to stderr, so that
``--json`` output and a printed token can be piped without filtering.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def text(value: Any) -> str:
    """A scalar, list or map as short readable text (maps as ``k=v, ...``)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(text(v) for v in value)
    return str(value)


def timestamp(value: Any) -> str:
    """An RFC 3339 timestamp to the second: a table column has no room for microseconds."""
    return str(value).split(".")[0].replace("T", " ").rstrip("Z")


@dataclass(frozen=True)
class Column:
    """A table column: its header, the dotted proto3 JSON path of its value, its format."""

    header: str
    path: str
    render: Callable[[Any], str] = text
    no_wrap: bool = False


def print_json(data: Any) -> None:
    """Plain ``json.dumps``: rich would wrap long lines and colour the text."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_plain(line: str) -> None:
    """One line on stdout exactly as given (a secret must reach a pipe untouched)."""
    sys.stdout.write(line + "\n")


def note(message: str) -> None:
    """Human hints on stderr, so stdout stays the result alone."""
    stderr.print(message, markup=False)


def error(message: str) -> None:
    """One ``error: ...`` line on stderr, whatever the message carried."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or ``""`` where proto3 JSON left a default out."""
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return ""
        value = value[key]
    return value


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested messages as dotted rows; labels stay one row so a panel reads like the API."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and key != "labels":
            rows.extend(flatten(value, f"{name}."))
        else:
            rows.append((name, text(value)))
    return rows


def record(title: str, data: Mapping[str, Any]) -> None:
    """One resource as a key/value panel."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in flatten(data):
        grid.add_row(Text(key), Text(value))
    stdout.print(Panel(grid, title=Text(title), title_align="left", expand=False))


def table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> None:
    """Several resources, one per row; an empty list says so instead of printing a bare frame."""
    if not rows:
        note(f"No {title.lower()}.")
        return
    grid = Table(title=Text(title), title_justify="left")
    for column in columns:
        grid.add_column(column.header, overflow="fold", no_wrap=column.no_wrap)
    for row in rows:
        grid.add_row(*(Text(c.render(lookup(row, c.path))) for c in columns))
    stdout.print(grid)
