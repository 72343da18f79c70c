"""Project file commands (``project push``, ``pull``, ``ls``) over ``ProjectFileService``.

Files travel in chunks both ways, so their size is bounded by the disks, not by memory.
A pushed file replaces the one at its path; a pulled file appears only once complete.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO

import typer
from google.protobuf.message import Message

from opensphere.cli import output
from opensphere.cli.iam import _argument, _show_items, _walk
from opensphere.cli.output import Column
from opensphere.cli.resources import CliError, Session, _command, _keyword
from opensphere.client import to_dict

CHUNK_SIZE = 1024 * 1024
SKIPPED = frozenset({".git", ".ipynb_checkpoints", "__pycache__"})
_COLUMNS = (
    Column("PATH", "path"),
    Column("TYPE", "isDir", lambda is_dir: "folder" if is_dir else "file", no_wrap=True),
    Column("SIZE", "size", no_wrap=True),
    Column("MODIFIED", "modifiedAt", output.timestamp, no_wrap=True),
)


def _local_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, sorted, outside the folders in ``SKIPPED``."""
    for parent, folders, names in os.walk(folder):
        folders[:] = sorted(f for f in folders if f not in SKIPPED)
        yield from (Path(parent) / name for name in sorted(names))


def _upload(s: Session, project_id: str, remote: str, local: Path) -> Message:
    with local.open("rb") as source:
        first = s.client.request("ProjectFileService.Upload", {
            "projectId": project_id, "path": remote, "overwrite": True,
            "size": str(os.fstat(source.fileno()).st_size)})
        return s.client.stream_unary("ProjectFileService.Upload", _chunks(first, source))


def _chunks(first: Message, source: BinaryIO) -> Iterator[Message]:
    yield first
    while chunk := source.read(CHUNK_SIZE):
        yield type(first)(chunk=chunk)


def _push(s: Session, values: dict[str, Any]) -> None:
    local, remote = Path(values["dir"]), PurePosixPath(values["to"] or "")
    if not local.is_dir():
        raise CliError(f"{local} is not a folder")
    pushed = [to_dict(_upload(s, values["project_id"],
                              (remote / path.relative_to(local).as_posix()).as_posix(), path))
              for path in _local_files(local)]
    if s.json:
        output.print_json({"files": pushed})
    else:
        total = sum(int(f.get("size", 0)) for f in pushed)
        output.print_plain(f"Pushed {len(pushed)} files ({total} bytes) to project "
                           f"{values['project_id']}.")


def _download(s: Session, project_id: str, remote: str, local: Path) -> None:
    """Write into a temporary file beside ``local``, renamed into place when complete."""
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as sink:
            for message in s.client.unary_stream("ProjectFileService.Download",
                                                 {"projectId": project_id, "path": remote}):
                sink.write(message.chunk)  # type: ignore[attr-defined]
        os.replace(temp, local)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _pull(s: Session, values: dict[str, Any]) -> None:
    *given, target = values["paths"]
    if len(given) > 1:
        raise CliError("expected PROJECT_ID [REMOTE_PATH] DIR")
    project_id, remote = values["project_id"], PurePosixPath(*given)
    local = Path(target)
    entries = _walk(s, "ProjectFileService.List",
                    {"projectId": project_id, "path": str(remote), "recursive": True}, "files")
    if [e["path"] for e in entries] == [str(remote)] and not entries[0].get("isDir"):
        destination = local / remote.name if local.is_dir() else local
        _download(s, project_id, str(remote), destination)
        count = 1
    else:
        local.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            parts = PurePosixPath(entry["path"]).relative_to(remote).parts
            if ".." in parts:
                raise CliError(f"the server listed {entry['path']!r}, outside {remote}")
            destination = local.joinpath(*parts)
            if entry.get("isDir"):
                destination.mkdir(parents=True, exist_ok=True)
            else:
                _download(s, project_id, entry["path"], destination)
        count = sum(not e.get("isDir") for e in entries)
    if s.json:
        output.print_json({"files": entries})
    else:
        output.print_plain(f"Pulled {count} files to {local}.")


def _ls(s: Session, values: dict[str, Any]) -> None:
    request = {"projectId": values["project_id"], "path": values["path"] or "",
               "recursive": values["recursive"]}
    files = _walk(s, "ProjectFileService.List", request, "files")
    _show_items(s, "Files", "files", files, _COLUMNS)


def register(project: typer.Typer) -> None:
    """Add ``push``, ``pull`` and ``ls`` to the ``project`` command group."""
    project_id = _argument("project_id", "Project ID")
    _command(project, "push",
             "Upload a local folder into the project (skipping .git, .ipynb_checkpoints and "
             "__pycache__); files already there are replaced.",
             [project_id, _argument("dir", "Local folder to upload"),
              _keyword("to", Annotated[str | None, typer.Option(
                  help="Project folder to upload into (default: the project folder)")], None)],
             _push)
    _command(project, "pull",
             "Download a file or folder of the project (all of it by default) into DIR.",
             [project_id, _keyword("paths", Annotated[list[str], typer.Argument(
                 metavar="[REMOTE_PATH] DIR", help="What to download, and where to")],
                 inspect.Parameter.empty)],
             _pull)
    _command(project, "ls", "List a project folder (the project folder by default).",
             [project_id,
              _keyword("path", Annotated[str | None, typer.Argument(
                  help="Folder or file in the project")], None),
              _keyword("recursive", Annotated[bool, typer.Option(
                  "--recursive", "-r", help="List everything below the folder")], False)],
             _ls)
