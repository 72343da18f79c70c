"""Project files over real gRPC, REST and the CLI, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from cli_support import Cli
from servers import RunningServer

from opensphere.client import Client, ClientError
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2

UPLOAD, DOWNLOAD = "ProjectFileService.Upload", "ProjectFileService.Download"
LIST, MOVE, DELETE = "ProjectFileService.List", "ProjectFileService.Move", \
    "ProjectFileService.Delete"
MB = 1024 * 1024


# --- Helpers ------------------------------------------------------------------------------

def upload(client: Client, project: str, path: str, chunks: Iterable[bytes],
           **first: Any) -> Any:
    """Upload ``chunks`` to ``path``: the first message names the file, the others carry bytes."""
    head = client.request(UPLOAD, {"projectId": project, "path": path, **first})

    def messages() -> Iterator[Any]:
        yield head
        for chunk in chunks:
            yield type(head)(chunk=chunk)

    return client.stream_unary(UPLOAD, messages())


def download(client: Client, project: str, path: str) -> bytes:
    stream = client.unary_stream(DOWNLOAD, {"projectId": project, "path": path})
    return b"".join(m.chunk for m in stream)  # type: ignore[attr-defined]


def listed(client: Client, project: str, path: str = "", recursive: bool = False
           ) -> list[tuple[str, bool]]:
    reply = client.call(LIST, {"projectId": project, "path": path, "recursive": recursive})
    return [(f.path, f.is_dir) for f in reply.files]  # type: ignore[attr-defined]


def refused(call: Any, *args: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value


def pieces(data: bytes, size: int = MB) -> Iterator[bytes]:
    return (data[i:i + size] for i in range(0, len(data), size))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str] | None:
    """Temporary upload files anywhere under ``folder``; None when the walk met a folder
    the server was removing at that moment (look again)."""
    try:
        return [str(p) for p in folder.rglob("*.part")]
    except FileNotFoundError:
        return None


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --- Fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def admin(api_server: RunningServer) -> Iterator[Client]:
    client = api_server.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def community(admin: Client, api_server: RunningServer) -> str:
    created = community_pb2.Community()
    admin.call("CommunityService.Create", {
        "organizationId": api_server.organization_id, "name": "files-team"}
    ).response.Unpack(created)  # type: ignore[attr-defined]
    return created.id


@pytest.fixture
def project(admin: Client, community: str) -> str:
    """A fresh project per test, so listings see only what the test made."""
    created = project_pb2.Project()
    admin.call("ProjectService.Create", {"communityId": community}).response.Unpack(
        created)  # type: ignore[attr-defined]
    return created.id


@pytest.fixture
def folder(api_server: RunningServer, project: str) -> Path:
    """The project's storage folder on the server's disk."""
    path = api_server.settings.data_dir / "projects" / project
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def big() -> bytes:
    return os.urandom(20 * MB + 12345)


@pytest.fixture(scope="module")
def http(api_server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_server.token}"}
    with httpx.Client(base_url=api_server.rest, headers=headers, timeout=60) as client:
        yield client


def files_url(project: str, path: str = "") -> str:
    return f"/opensphere/v1/projects/{project}/files" + (f"/{path}" if path else "")


def subject_client(api_server: RunningServer, admin: Client, name: str) -> tuple[str, Client]:
    user = admin.call("SubjectService.Create", {"type": "userAccount", "name": name})
    token = admin.call("SubjectService.IssueToken", {"subjectId": user.id}).secret
    return user.id, api_server.client(token=token)  # type: ignore[attr-defined]


# --- Round trips --------------------------------------------------------------------------

def test_grpc_round_trip_of_20_mb(admin: Client, project: str, folder: Path,
                                  big: bytes) -> None:
    info = upload(admin, project, "data/big.bin", pieces(big), size=str(len(big)))
    assert (info.path, info.size, info.is_dir) == ("data/big.bin", len(big), False)
    assert info.modified_at.seconds > 0
    assert sha256((folder / "data" / "big.bin").read_bytes()) == sha256(big)
    stream = admin.unary_stream(DOWNLOAD, {"projectId": project, "path": "data/big.bin"})
    head = next(stream)
    assert (head.content_type, head.size, head.chunk) == (  # type: ignore[attr-defined]
        "application/octet-stream", len(big), b"")
    assert sha256(b"".join(m.chunk for m in stream)) == sha256(big)  # type: ignore[attr-defined]
    assert leftovers(folder) == []


def test_the_first_message_may_carry_bytes(admin: Client, project: str) -> None:
    head = admin.request(UPLOAD, {"projectId": project, "path": "ab.txt"})
    head.chunk = b"A"  # type: ignore[attr-defined]
    admin.stream_unary(UPLOAD, [head, type(head)(chunk=b"B"), type(head)(chunk=b"C")])
    assert download(admin, project, "ab.txt") == b"ABC"


def test_rest_round_trip_of_20_mb(http: httpx.Client, admin: Client, project: str,
                                  folder: Path, big: bytes) -> None:
    # A generator body goes out chunked: the server never sees it whole.
    response = http.put(files_url(project, "rest/big.bin"), content=pieces(big, 256 * 1024))
    assert response.status_code == 200, response.text
    assert response.json()["size"] == str(len(big))
    assert sha256(download(admin, project, "rest/big.bin")) == sha256(big)
    digest = hashlib.sha256()
    with http.stream("GET", files_url(project, "rest/big.bin")) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["content-length"] == str(len(big))
        assert streamed.headers["content-type"] == "application/octet-stream"
        for chunk in streamed.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == sha256(big)
    assert leftovers(folder) == []


def test_rest_content_type_and_small_files(http: httpx.Client, project: str) -> None:
    put = http.put(files_url(project, "notes/table.csv"), content=b"a,b\n1,2\n")
    assert put.status_code == 200, put.text
    got = http.get(files_url(project, "notes/table.csv"))
    assert got.content == b"a,b\n1,2\n"
    assert got.headers["content-type"].startswith("text/csv")
    empty = http.put(files_url(project, "empty.txt"), content=b"")
    assert empty.json()["path"] == "empty.txt" and empty.json()["size"] == "0"
    assert http.get(files_url(project, "empty.txt")).content == b""
    again = http.put(files_url(project, "empty.txt"), content=b"x")
    assert again.status_code == 409, again.text
    replaced = http.put(files_url(project, "empty.txt"), content=b"x",
                        params={"overwrite": "true"})
    assert replaced.status_code == 200 and http.get(files_url(project, "empty.txt")).content \
        == b"x"
    colon = http.put(files_url(project, "a%3Ab.txt"), content=b"colon")
    assert colon.json()["path"] == "a:b.txt"
    assert http.get(files_url(project, "a%3Ab.txt")).content == b"colon"


# --- List, move, delete -------------------------------------------------------------------

def test_list_move_delete_over_grpc(admin: Client, project: str, folder: Path) -> None:
    for path in ("a/b/c.txt", "a/d.txt", "e.txt"):
        upload(admin, project, path, [path.encode()])
    assert listed(admin, project) == [("a", True), ("e.txt", False)]
    assert listed(admin, project, recursive=True) == [
        ("a", True), ("a/b", True), ("a/b/c.txt", False), ("a/d.txt", False), ("e.txt", False)]
    assert listed(admin, project, "a") == [("a/b", True), ("a/d.txt", False)]
    assert listed(admin, project, "a/d.txt") == [("a/d.txt", False)]

    pages, token = [], ""
    while True:
        page = admin.call(LIST, {"projectId": project, "recursive": True, "pageSize": 2,
                                 "pageToken": token})
        pages.append([f.path for f in page.files])  # type: ignore[attr-defined]
        token = page.next_page_token  # type: ignore[attr-defined]
        if not token:
            break
    assert pages == [["a", "a/b"], ["a/b/c.txt", "a/d.txt"], ["e.txt"]]

    moved = admin.call(MOVE, {"projectId": project, "source": "a/d.txt",
                              "destination": "z/y/d.txt"})
    assert (moved.path, moved.size) == ("z/y/d.txt", len(b"a/d.txt"))  # type: ignore
    assert download(admin, project, "z/y/d.txt") == b"a/d.txt"
    clash = refused(admin.call, MOVE, {"projectId": project, "source": "e.txt",
                                       "destination": "a/b/c.txt"})
    assert clash.code == grpc.StatusCode.ALREADY_EXISTS
    admin.call(MOVE, {"projectId": project, "source": "e.txt", "destination": "a/b/c.txt",
                      "overwrite": True})
    assert download(admin, project, "a/b/c.txt") == b"e.txt"
    into_itself = refused(admin.call, MOVE, {"projectId": project, "source": "a",
                                             "destination": "a/b/a"})
    assert into_itself.code == grpc.StatusCode.INVALID_ARGUMENT

    not_empty = refused(admin.call, DELETE, {"projectId": project, "path": "a"})
    assert not_empty.code == grpc.StatusCode.FAILED_PRECONDITION
    admin.call(DELETE, {"projectId": project, "path": "a", "recursive": True})
    admin.call(DELETE, {"projectId": project, "path": "z/y/d.txt"})
    assert listed(admin, project, recursive=True) == [("z", True), ("z/y", True)]
    missing = refused(admin.call, DELETE, {"projectId": project, "path": "z/y/d.txt"})
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert refused(download, admin, project, "z").code == grpc.StatusCode.FAILED_PRECONDITION
    root = refused(admin.call, DELETE, {"projectId": project, "path": ".", "recursive": True})
    assert root.code == grpc.StatusCode.INVALID_ARGUMENT
    assert folder.is_dir()


def test_list_move_delete_over_rest(http: httpx.Client, project: str) -> None:
    for path in ("docs/one.md", "docs/two.md"):
        assert http.put(files_url(project, path), content=b"#").status_code == 200
    page = http.get(files_url(project), params={"path": "docs", "recursive": "true"}).json()
    assert [f["path"] for f in page["files"]] == ["docs/one.md", "docs/two.md"]
    assert page["files"][0]["isDir"] is False and page["nextPageToken"] == ""
    moved = http.post(files_url(project) + ":move",
                      json={"source": "docs/one.md", "destination": "docs/three.md"})
    assert moved.status_code == 200 and moved.json()["path"] == "docs/three.md"
    assert http.delete(files_url(project, "docs/two.md")).status_code == 200
    busy = http.delete(files_url(project, "docs"))
    assert busy.status_code == 400 and busy.json()["code"] == 9
    assert http.delete(files_url(project, "docs"), params={"recursive": "true"}
                       ).status_code == 200
    assert http.get(files_url(project)).json()["files"] == []
    assert http.get(files_url(project, "docs/one.md")).status_code == 404


# --- Confinement --------------------------------------------------------------------------

ESCAPES = ["../x", "/etc/passwd", "a/../../x", "a\x00b"]


@pytest.mark.parametrize("path", ESCAPES)
def test_paths_outside_the_project_are_refused(admin: Client, project: str, folder: Path,
                                               path: str) -> None:
    calls = [
        lambda: upload(admin, project, path, [b"evil"], overwrite=True),
        lambda: download(admin, project, path),
        lambda: admin.call(LIST, {"projectId": project, "path": path}),
        lambda: admin.call(DELETE, {"projectId": project, "path": path, "recursive": True}),
        lambda: admin.call(MOVE, {"projectId": project, "source": path,
                                  "destination": "in.txt"}),
    ]
    for call in calls:
        err = refused(call)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
        assert "path" in str(err) or "source" in str(err)
    upload(admin, project, "in.txt", [b"inside"])
    err = refused(admin.call, MOVE, {"projectId": project, "source": "in.txt",
                                     "destination": path})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "destination" in str(err)
    assert not (folder.parent / "x").exists() and not (folder.parent.parent / "x").exists()


def test_rest_traversal_is_refused(http: httpx.Client, project: str) -> None:
    for encoded in ("%2E%2E/%2E%2E/%2E%2E/etc/passwd", "a/%2E%2E/%2E%2E/x", "%2Fetc%2Fpasswd"):
        got = http.get(files_url(project, encoded))
        assert got.status_code == 400, (encoded, got.text)
        assert got.json()["message"].startswith("path:")
        put = http.put(files_url(project, encoded), content=b"evil")
        assert put.status_code == 400, (encoded, put.text)


def test_symlinks_out_of_the_project_are_never_followed(
        admin: Client, project: str, folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (folder / "out").symlink_to(outside)
    (folder / "pw").symlink_to(outside / "secret.txt")
    upload(admin, project, "real.txt", [b"real"])
    (folder / "alias.txt").symlink_to(folder / "real.txt")

    for path in ("out/secret.txt", "pw"):
        assert refused(download, admin, project, path).code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(admin.call, LIST, {"projectId": project, "path": "out"}).code == \
        grpc.StatusCode.INVALID_ARGUMENT
    for path in ("out/new.txt", "pw", "out/deeper/new.txt"):
        err = refused(upload, admin, project, path, [b"evil"], overwrite=True)
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "path" in str(err)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    # Links out are not even listed; a link that stays inside reads as its target.
    assert listed(admin, project, recursive=True) == [("alias.txt", False), ("real.txt", False)]
    assert download(admin, project, "alias.txt") == b"real"
    # Deleting a link removes the link, never what it points to.
    admin.call(DELETE, {"projectId": project, "path": "alias.txt"})
    assert download(admin, project, "real.txt") == b"real"


# --- Access -------------------------------------------------------------------------------

def test_a_stranger_sees_nothing(api_server: RunningServer, admin: Client,
                                 project: str) -> None:
    upload(admin, project, "private.txt", [b"mine"])
    _, stranger = subject_client(api_server, admin, f"stranger-{project}")
    calls = [
        lambda: download(stranger, project, "private.txt"),
        lambda: upload(stranger, project, "x.txt", [b"x"]),
        lambda: stranger.call(LIST, {"projectId": project}),
        lambda: stranger.call(DELETE, {"projectId": project, "path": "private.txt"}),
    ]
    for call in calls:
        assert refused(call).code == grpc.StatusCode.NOT_FOUND


def test_a_viewer_reads_but_cannot_write(api_server: RunningServer, admin: Client,
                                         project: str, folder: Path) -> None:
    upload(admin, project, "shared.txt", [b"shared"])
    viewer_id, viewer = subject_client(api_server, admin, f"viewer-{project}")
    admin.call("ProjectService.UpdateAccessBindings", {
        "resourceId": project, "accessBindingDeltas": [{"action": "ADD", "accessBinding": {
            "roleId": "datasphere.community-projects.viewer",
            "subject": {"type": "userAccount", "id": viewer_id}}}]})
    assert download(viewer, project, "shared.txt") == b"shared"
    assert listed(viewer, project) == [("shared.txt", False)]
    err = refused(upload, viewer, project, "new.txt", [b"nope"])
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused(viewer.call, DELETE, {"projectId": project, "path": "shared.txt"}).code \
        == grpc.StatusCode.PERMISSION_DENIED
    token = viewer.connection.token
    put = httpx.put(api_server.rest + files_url(project, "new.txt"), content=b"nope",
                    headers={"Authorization": f"Bearer {token}"})
    assert put.status_code == 403, put.text
    assert not (folder / "new.txt").exists() and leftovers(folder) == []


# --- Failed uploads -----------------------------------------------------------------------

def test_wrong_size_leaves_nothing(admin: Client, project: str, folder: Path) -> None:
    err = refused(upload, admin, project, "deep/short.bin", [b"abc"], size="10")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "size" in str(err)
    assert not (folder / "deep").exists() and leftovers(folder) == []


def test_later_message_cannot_change_the_project(admin: Client, project: str,
                                                 community: str) -> None:
    other = project_pb2.Project()
    admin.call("ProjectService.Create", {"communityId": community}).response.Unpack(
        other)  # type: ignore[attr-defined]
    head = admin.request(UPLOAD, {"projectId": project, "path": "x.txt"})
    sneaky = admin.request(UPLOAD, {"projectId": other.id})
    err = refused(admin.stream_unary, UPLOAD, iter([head, sneaky]))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "project_id" in str(err)


def test_cancelled_grpc_upload_leaves_nothing(admin: Client, project: str,
                                              folder: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield from pieces(os.urandom(3 * MB))
        raise RuntimeError("the client gives up")

    err = refused(upload, admin, project, "cancelled/file.bin", chunks())
    assert err.code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    assert wait_until(lambda: leftovers(folder) == [] and not (folder / "cancelled").exists())


def test_cut_rest_upload_leaves_nothing(api_server: RunningServer, project: str,
                                        folder: Path) -> None:
    """The body stops short of its Content-Length and the connection closes."""
    url = urlsplit(api_server.rest)
    head = (f"PUT {files_url(project, 'cut/file.bin')} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {api_server.token}\r\nContent-Length: {10 * MB}\r\n\r\n")
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head.encode() + os.urandom(2 * MB))
        assert wait_until(lambda: leftovers(folder) != [])  # the upload is under way
    assert wait_until(lambda: leftovers(folder) == [] and not (folder / "cut").exists())


# --- The CLI ------------------------------------------------------------------------------

def test_cli_push_ls_pull(api_server: RunningServer, project: str, tmp_path: Path) -> None:
    cli = Cli(api_server.settings.data_dir, api_server.grpc)
    source = tmp_path / "src"
    tree = {"train.py": b"print('hi')\n", "data/big.bin": os.urandom(3 * MB + 7),
            "data/nested/x.csv": b"a,b\n", ".git/HEAD": b"ref", "pkg/__pycache__/m.pyc": b"c",
            ".ipynb_checkpoints/n.ipynb": b"{}"}
    for name, data in tree.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    kept = {k: v for k, v in tree.items()
            if not any(part in k for part in (".git/", "__pycache__", ".ipynb_checkpoints"))}

    env = {"OPENSPHERE_TOKEN": api_server.token}
    assert "Pushed 3 files" in cli.ok("project", "push", project, str(source), "--to", "work",
                                      **env)
    listing = cli.json("project", "ls", project, "work", "-r", **env)["files"]
    assert sorted(f["path"] for f in listing if not f.get("isDir")) == sorted(
        f"work/{k}" for k in kept)
    table = cli.ok("project", "ls", project, "work/data", **env)
    assert "work/data/big.bin" in table and "folder" in table

    target = tmp_path / "back"
    assert "Pulled 3 files" in cli.ok("project", "pull", project, "work", str(target), **env)
    pulled = {str(p.relative_to(target)): p.read_bytes()
              for p in target.rglob("*") if p.is_file()}
    assert pulled == kept
    one = tmp_path / "one"
    one.mkdir()
    cli.ok("project", "pull", project, "work/data/big.bin", str(one), **env)
    assert (one / "big.bin").read_bytes() == tree["data/big.bin"]
    whole = json.loads(cli.ok("project", "pull", project, str(tmp_path / "all"), "--json",
                              **env))
    assert {f["path"] for f in whole["files"]} >= {"work", "work/train.py"}
    assert (tmp_path / "all" / "work" / "train.py").read_bytes() == tree["train.py"]
    error = cli.fails("project", "pull", project, "nothing/here", str(tmp_path / "x"), **env)
    assert "NOT_FOUND" in error
