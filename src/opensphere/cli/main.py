"""Entry point of the ``opensphere`` command."""

from __future__ import annotations

import typer

from opensphere.cli import execute, files, iam, ide, resources
from opensphere.cli.serve import serve

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="OpenSphere: a self-hosted ML notebook platform (DataSphere API v2).")
app.command()(serve)
groups = resources.register(app)
files.register(groups["project"])
ide.register(groups["project"])
execute.register(app, groups["project"])
iam.register(app)

if __name__ == "__main__":
    app()
