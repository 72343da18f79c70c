"""``opensphere project open``: start (or reuse) a project's IDE and print the way in.

The printed URL carries a single-use session token valid for two minutes; the gateway
trades it for a browser cookie. Reuses the connection options and error handling of
``opensphere.cli.resources``.
"""

from __future__ import annotations

import inspect
import webbrowser
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from opensphere.cli import output
from opensphere.cli.resources import Session, _command, _keyword, unpack
from opensphere.client import to_dict


def _open(s: Session, values: dict[str, Any]) -> None:
    response = unpack(s.finish("ProjectService.Open", {"projectId": values["project_id"]})
                      .response)
    data = to_dict(response)
    url = f"{data['projectUrl']}?{urlencode({'sessionToken': data['sessionToken']})}"
    if s.json:
        output.print_json({**data, "url": url})
    else:
        output.print_plain(url)
        output.note("The link works once, within 2 minutes.")
    if values["browser"]:
        webbrowser.open(url)


def register(group: typer.Typer) -> None:
    """Add ``open`` to the ``project`` command group."""
    _command(group, "open",
             "Start the project's IDE (JupyterLab), or reuse it, and print a link to it.",
             [_keyword("project_id", Annotated[str, typer.Argument(
                  help="Project ID", metavar="PROJECT_ID")], inspect.Parameter.empty),
              _keyword("browser", Annotated[bool, typer.Option(
                  "--browser", help="Open the link in the default web browser")], False)],
             _open)
