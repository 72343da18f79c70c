"""The blocking file-system side of ``ProjectFileService``, run in threads by ``files``.

Paths arrive already confined to the project folder; these functions only turn what the
file system says into the API's errors. ``shown`` is the path as the caller wrote it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as st
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from opensphere.services.errors import ApiError, Code, not_found


@dataclass(frozen=True)
class Stat:
    size: int
    mtime_ns: int
    is_dir: bool

    @classmethod
    def of(cls, result: os.stat_result) -> Stat:
        return cls(result.st_size, result.st_mtime_ns, st.S_ISDIR(result.st_mode))


def _lstat(path: Path, shown: str) -> os.stat_result:
    try:
        return path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        raise not_found("file", shown) from None


def _precondition(message: str) -> ApiError:
    return ApiError(Code.FAILED_PRECONDITION, message)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those it made, outermost first."""
    missing: list[Path] = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except NotADirectoryError:
            raise _precondition(f"{path.parent.name} is a file, not a folder") from None
        made.append(path)
    return made


@dataclass
class Upload:
    """A file written under a hidden temporary name beside its target: ``commit`` puts it
    in place in one rename, ``discard`` removes it and the folders made for it."""

    target: Path
    overwrite: bool
    temp: Path
    file: BinaryIO
    made: list[Path] = field(default_factory=list)
    written: int = 0

    @classmethod
    def begin(cls, target: Path, overwrite: bool, shown: str) -> Upload:
        if os.path.lexists(target):
            if target.is_dir():
                raise _precondition(f"{shown} is a folder")
            if not overwrite:
                raise ApiError(Code.ALREADY_EXISTS, f"{shown} already exists; pass overwrite")
        made = _make_folders(target.parent)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".part")
        return cls(target, overwrite, Path(temp), os.fdopen(fd, "wb"), made)

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.written += len(data)

    def commit(self) -> Stat:
        self.file.close()
        if self.overwrite:
            try:
                os.replace(self.temp, self.target)
            except IsADirectoryError:
                raise _precondition(f"{self.target.name} became a folder") from None
        else:
            try:  # a hard link never replaces what appeared meanwhile
                os.link(self.temp, self.target)
            except FileExistsError:
                raise ApiError(Code.ALREADY_EXISTS, f"{self.target.name} appeared meanwhile"
                               ) from None
            self.temp.unlink()
        return Stat.of(self.target.stat())

    def discard(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)
        for folder in reversed(self.made):
            try:
                folder.rmdir()
            except OSError:
                break


@dataclass
class Reader:
    """An open regular file and the bytes still due: exactly its size at opening."""

    file: BinaryIO
    size: int
    remaining: int

    @classmethod
    def open(cls, path: Path, shown: str) -> Reader:
        try:  # O_NONBLOCK: opening a FIFO must not hang; it is refused below
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise not_found("file", shown) from None
        mode = os.fstat(fd)
        if not st.S_ISREG(mode.st_mode):
            os.close(fd)
            kind = "a folder" if st.S_ISDIR(mode.st_mode) else "not a regular file"
            raise _precondition(f"{shown} is {kind}")
        return cls(os.fdopen(fd, "rb"), mode.st_size, mode.st_size)

    def read(self, size: int) -> bytes:
        if not self.remaining:
            return b""
        data = self.file.read(min(size, self.remaining))
        if not data:
            raise ApiError(Code.DATA_LOSS, "the file shrank while it was read")
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.file.close()


def _visible(root: Path, entry: os.DirEntry[str]) -> Stat | None:
    """An entry's stat; a link counts as what it points to, and is hidden when that is
    outside ``root`` or missing."""
    try:
        if not entry.is_symlink():
            return Stat.of(entry.stat(follow_symlinks=False))
        target = Path(entry.path).resolve()
        return Stat.of(target.stat()) if target.is_relative_to(root) else None
    except OSError:  # gone meanwhile, or a link to nothing
        return None


def walk(root: Path, folder: Path, recursive: bool, shown: str) -> list[tuple[str, Stat]]:
    """``(name relative to folder, stat)`` of its entries (of a file: ``("", stat)``).
    Links to folders are listed but never entered, so a walk cannot loop or leave ``root``."""
    try:
        own = folder.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise not_found("file", shown) from None
    if not st.S_ISDIR(own.st_mode):
        return [("", Stat.of(own))]
    found: list[tuple[str, Stat]] = []
    pending = [(folder, "")]
    while pending:
        current, prefix = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                stat = _visible(root, entry)
                if stat is None:
                    continue
                found.append((prefix + entry.name, stat))
                if recursive and stat.is_dir and not entry.is_symlink():
                    pending.append((Path(entry.path), f"{prefix}{entry.name}/"))
    return found


def move(source: Path, destination: Path, overwrite: bool, shown: str) -> Stat:
    """Rename an entry (a link moves as a link); a file may replace a file, never a folder."""
    is_dir = st.S_ISDIR(_lstat(source, shown).st_mode)
    if is_dir and destination.is_relative_to(source):
        raise ApiError(Code.INVALID_ARGUMENT, "destination: is inside the source folder")
    if os.path.lexists(destination):
        if not overwrite:
            raise ApiError(Code.ALREADY_EXISTS, f"{destination.name} already exists; "
                                                "pass overwrite")
        if is_dir or destination.is_dir():
            raise _precondition("only a file may replace another file")
    _make_folders(destination.parent)
    os.replace(source, destination)
    return Stat.of(destination.lstat())


def delete(target: Path, recursive: bool, shown: str) -> None:
    """Remove a file or link, an empty folder, or with ``recursive`` a whole folder."""
    if not st.S_ISDIR(_lstat(target, shown).st_mode):
        target.unlink()
    elif recursive:
        shutil.rmtree(target)
    else:
        try:
            target.rmdir()
        except OSError as err:
            if err.errno != errno.ENOTEMPTY:
                raise
            raise _precondition(f"{shown} is not empty; pass recursive") from None
