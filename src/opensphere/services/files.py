"""ProjectFileService: files in a project's storage folder, streamed both ways.

Every path goes through ``engine.paths.resolve_in``, so nothing outside the folder is read
or written, through ``..`` or through a symbolic link. Reads follow links that stay inside;
writes (upload, move, delete) act on the named entry itself, so deleting a link never
deletes what it points to. Blocking file work runs in threads (``fs_ops``).
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from google.protobuf import empty_pb2

from opensphere.engine.paths import PathOutsideProject, resolve_in
from opensphere.proto_gen.opensphere.v1 import file_service_pb2 as fs
from opensphere.services import disk, fs_ops, paging
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, invalid_argument
from opensphere.services.registry import rpc

SERVICE = "opensphere.v1.ProjectFileService"
CHUNK_SIZE = 256 * 1024  # well under gRPC's 4 MiB message limit


def _root(ctx: CallContext, project_id: str) -> Path:
    return ctx.runtime.project_dir(project_id).resolve()


def _resolve(root: Path, relative: str, field: str) -> Path:
    """``resolve_in``, its refusal an INVALID_ARGUMENT that names ``field``."""
    try:
        return resolve_in(root, relative)
    except PathOutsideProject as err:
        raise invalid_argument(field, str(err)) from None


def _entry(root: Path, relative: str, field: str) -> Path:
    """The entry ``relative`` names, not what a final link points to, in a folder inside
    ``root``; the project folder itself is refused."""
    _resolve(root, relative, field)
    pure = PurePosixPath(relative)
    if not pure.name:
        raise invalid_argument(field, "names the project folder itself")
    return _resolve(root, str(pure.parent), field) / pure.name


def _info(shown: str, stat: fs_ops.Stat) -> fs.FileInfo:
    info = fs.FileInfo(path=shown, size=0 if stat.is_dir else stat.size, is_dir=stat.is_dir)
    info.modified_at.FromNanoseconds(stat.mtime_ns)
    return info


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


@rpc(SERVICE, "Upload")
async def upload(ctx: CallContext, first: fs.UploadFileRequest,
                 rest: AsyncIterator[fs.UploadFileRequest]) -> fs.FileInfo:
    root = _root(ctx, first.project_id)
    target = _entry(root, first.path, "path")
    room = await disk.free_bytes(ctx.runtime, first.project_id)
    if first.HasField("size") and first.size > room:
        raise ApiError(Code.RESOURCE_EXHAUSTED, f"{first.size} bytes do not fit: project "
                       f"{first.project_id} has {room} bytes of storage left")
    begun = asyncio.ensure_future(
        asyncio.to_thread(fs_ops.Upload.begin, target, first.overwrite, first.path))
    try:
        part = await asyncio.shield(begun)
    except asyncio.CancelledError:  # the thread still creates the file: remove it after
        begun.add_done_callback(_discard_begun)
        raise
    try:
        await asyncio.to_thread(part.write, first.chunk)
        async for message in rest:
            await asyncio.to_thread(part.write, message.chunk)
            if part.written > room:
                raise ApiError(Code.RESOURCE_EXHAUSTED, f"the upload passed the {room} "
                               f"bytes of storage left in project {first.project_id}")
        if first.HasField("size") and part.written != first.size:
            raise invalid_argument("size", f"{first.size} bytes were announced but "
                                           f"{part.written} came")
        if _entry(root, first.path, "path") != target:
            raise invalid_argument("path", "a folder on it changed during the upload")
        stat = await asyncio.to_thread(part.commit)
    except BaseException:
        part.discard()  # at once, even when cancelled: nothing partial may stay
        raise
    return _info(_relative(root, target), stat)


def _discard_begun(begun: asyncio.Future[fs_ops.Upload]) -> None:
    if not begun.cancelled() and begun.exception() is None:
        begun.result().discard()


@rpc(SERVICE, "Download")
async def download(ctx: CallContext,
                   request: fs.DownloadFileRequest) -> AsyncIterator[fs.FileChunk]:
    path = _resolve(_root(ctx, request.project_id), request.path, "path")
    reader = await asyncio.to_thread(fs_ops.Reader.open, path, request.path)
    try:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        yield fs.FileChunk(content_type=content_type, size=reader.size)
        while chunk := await asyncio.to_thread(reader.read, CHUNK_SIZE):
            yield fs.FileChunk(chunk=chunk)
    finally:
        reader.close()


@rpc(SERVICE, "List")
async def list_(ctx: CallContext, request: fs.ListFilesRequest) -> fs.ListFilesResponse:
    root = _root(ctx, request.project_id)
    folder = _resolve(root, request.path or ".", "path")
    prefix = PurePosixPath(request.path)
    after = paging.decode_token(request.page_token)
    size = paging.page_size(request.page_size)
    found = await asyncio.to_thread(fs_ops.walk, root, folder, request.recursive,
                                    request.path or ".")
    entries = sorted(((prefix / name).as_posix(), stat) for name, stat in found)
    page = [e for e in entries if after is None or e[0] > after][:size + 1]
    kept, token = paging.split_page(page, request.page_size, lambda e: e[0])
    return fs.ListFilesResponse(files=[_info(p, s) for p, s in kept],
                                next_page_token=token)


@rpc(SERVICE, "Move")
async def move(ctx: CallContext, request: fs.MoveFileRequest) -> fs.FileInfo:
    root = _root(ctx, request.project_id)
    source = _entry(root, request.source, "source")
    destination = _entry(root, request.destination, "destination")
    stat = await asyncio.to_thread(fs_ops.move, source, destination, request.overwrite,
                                   request.source)
    return _info(_relative(root, destination), stat)


@rpc(SERVICE, "Delete")
async def delete(ctx: CallContext, request: fs.DeleteFileRequest) -> empty_pb2.Empty:
    target = _entry(_root(ctx, request.project_id), request.path, "path")
    await asyncio.to_thread(fs_ops.delete, target, request.recursive, request.path)
    return empty_pb2.Empty()
