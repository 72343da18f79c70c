"""Paths that callers name relative to a project: they must stay inside its folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class PathOutsideProject(ValueError):
    """The path is empty, absolute, climbs out with ``..``, or resolves outside the root."""


def resolve_in(root: Path, relative: str) -> Path:
    """The real path of ``relative`` under ``root``; refuses anything that could leave it.

    Symlinks are followed wherever they occur, so a link inside the project that points
    out of it is refused, while one that stays inside is fine.
    """
    if not relative or "\x00" in relative:
        raise PathOutsideProject(f"invalid path {relative!r}")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise PathOutsideProject(f"path {relative!r} must be relative to the project")
    base = root.resolve()
    target = (base / pure).resolve()
    if not target.is_relative_to(base):
        raise PathOutsideProject(f"path {relative!r} resolves outside the project")
    return target
