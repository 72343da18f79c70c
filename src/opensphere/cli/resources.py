"""Client commands (``community``, ``project``, ``org``, ``token``) for a running server.

Community and project commands are near-identical CRUD, so they are generated from the
``RESOURCES`` table: each entry names its service, parent, settable fields and columns.
Every command reaches the server over gRPC through ``opensphere.client.Client``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import any_pb2, descriptor_pool
from google.protobuf.message import Message

from opensphere import contract
from opensphere.cli import output
from opensphere.cli.output import Column
from opensphere.client import Client, ClientError, Connection, to_dict
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2


class CliError(Exception):
    """A mistake the user can fix, reported as one ``error:`` line with exit code 1."""


@dataclass
class Session:
    """One command's connection and output mode."""

    client: Client
    json: bool

    def call(self, method: str, request: dict[str, Any]) -> Message:
        return self.client.call(method, request)

    def finish(self, method: str, request: dict[str, Any]) -> operation_pb2.Operation:
        """Start an operation and wait for it; one that ends in an error raises."""
        operation = self.client.wait(self.client.call(method, request))  # type: ignore[arg-type]
        if operation.HasField("error"):
            raise ClientError(_STATUS[operation.error.code], operation.error.message)
        return operation

    def show(self, title: str, message: Message) -> None:
        """One resource: JSON for scripts, a titled panel for people."""
        data = to_dict(message)
        if self.json:
            output.print_json(data)
        else:
            output.record(f"{title} {data.get('id', '')}".strip(), data)


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def unpack(packed: any_pb2.Any) -> Message:
    """The message inside an operation's ``response``, typed from our descriptors."""
    descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    message = contract.message_class(descriptor)()
    packed.Unpack(message)
    return message


# --- Option values ------------------------------------------------------------------------

def parse_labels(items: Sequence[str], option: str = "--label") -> dict[str, str]:
    """``KEY=VALUE`` pairs (of ``option``) into a map; the server checks what keys and
    values may hold."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> str:
    """``12h``, ``30m``, ``1h30m``, ``3600s`` as a proto3 JSON Duration (``"43200s"``)."""
    if not re.fullmatch(r"(\d+[smhd])+", text):
        raise CliError(f"--ttl {text!r}: expected a duration such as 3600s, 30m, 12h or 7d")
    seconds = sum(int(n) * _TTL_UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", text))
    return f"{seconds}s"


def _put(request: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted proto3 JSON path (``settings.defaultDedicatedSpec``) in a request."""
    *parents, last = path.split(".")
    for key in parents:
        request = request.setdefault(key, {})
    request[last] = value


def _keep(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Flag:
    """A create/update option and the request field it fills (a proto3 JSON path)."""

    name: str
    path: str
    help: str
    kind: Any = str
    convert: Callable[[Any], Any] = _keep
    metavar: str | None = None

    def parameter(self, required: bool = False) -> inspect.Parameter:
        kind = self.kind if required else self.kind | None
        option = typer.Option(help=self.help, metavar=self.metavar)
        return _keyword(self.name, Annotated[kind, option],
                        inspect.Parameter.empty if required else None)


def fill(request: dict[str, Any], flags: Sequence[Flag], values: Mapping[str, Any]) -> list[str]:
    """Put every option that was given into ``request``; the paths set form an update mask."""
    given = [f for f in flags if values.get(f.name) is not None]
    for flag in given:
        _put(request, flag.path, flag.convert(values[flag.name]))
    return [f.path for f in given]


# --- The resource table -------------------------------------------------------------------

@dataclass(frozen=True)
class Resource:
    """One command group: which service it calls and what its commands offer."""

    group: str
    noun: str
    plural: str
    service: str
    help: str
    columns: tuple[Column, ...]
    parent: Flag | None = None
    flags: tuple[Flag, ...] = ()
    verbs: tuple[str, ...] = ("create", "list", "get", "update", "delete")

    @property
    def title(self) -> str:
        return self.noun.capitalize()

    @property
    def id_field(self) -> str:
        return f"{self.noun}Id"

    def method(self, verb: str) -> str:
        return f"{self.service}.{verb.capitalize()}"


_COMMON_FLAGS = (
    Flag("name", "name", "Name"),
    Flag("description", "description", "Description"),
    Flag("label", "labels", "A label KEY=VALUE; repeat for more (on update: the new full set)",
         list[str], parse_labels, "KEY=VALUE"),
)
_ID = Column("ID", "id", no_wrap=True)
_NAME = Column("NAME", "name")
_CREATED = Column("CREATED", "createdAt", output.timestamp, no_wrap=True)
_LABELS = Column("LABELS", "labels")

COMMUNITY = Resource(
    group="community", noun="community", plural="communities", service="CommunityService",
    help="Communities: groups of projects inside an organization.",
    parent=Flag("org", "organizationId", "Organization ID (see `opensphere org list`)"),
    flags=_COMMON_FLAGS,
    columns=(_ID, _NAME, Column("DESCRIPTION", "description"), _LABELS, _CREATED),
)
PROJECT = Resource(
    group="project", noun="project", plural="projects", service="ProjectService",
    help="Projects: notebooks, their settings and unit limits.",
    parent=Flag("community", "communityId", "Community ID"),
    flags=(*_COMMON_FLAGS,
           Flag("spec", "settings.defaultDedicatedSpec",
                "Default computing configuration for dedicated runs, e.g. c1.4"),
           Flag("max_units_per_hour", "limits.maxUnitsPerHour", "Unit limit per hour", int),
           Flag("max_units_per_execution", "limits.maxUnitsPerExecution",
                "Unit limit per cell execution", int)),
    columns=(_ID, _NAME, Column("DESCRIPTION", "description"),
             Column("SPEC", "settings.defaultDedicatedSpec"), _LABELS, _CREATED),
)
ORGANIZATION = Resource(
    group="org", noun="organization", plural="organizations",
    service="OrganizationService", help="Organizations: where communities are created.",
    columns=(_ID, _NAME, _CREATED), verbs=("list",),
)
RESOURCES = (COMMUNITY, PROJECT, ORGANIZATION)


# --- Command plumbing ---------------------------------------------------------------------

Body = Callable[[Session, dict[str, Any]], None]


def _keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


_CONNECTION = "Connection"
_COMMON = (
    _keyword("address", Annotated[str | None, typer.Option(
        envvar="OPENSPHERE_ADDRESS", rich_help_panel=_CONNECTION,
        help="Server gRPC address, host:port (default 127.0.0.1:50051)")]),
    _keyword("token_file", Annotated[Path | None, typer.Option(
        rich_help_panel=_CONNECTION,
        help="File holding the bearer token (default: the token in $OPENSPHERE_TOKEN, "
             "else admin.token in the data folder, $OPENSPHERE_DATA_DIR or ~/.opensphere)")]),
    _keyword("ca_file", Annotated[Path | None, typer.Option(
        rich_help_panel=_CONNECTION, help="PEM CA certificate: connect with TLS")]),
    _keyword("json_", Annotated[bool, typer.Option(
        "--json", help="Print proto3 JSON (as the REST API returns it) and nothing else")],
        False),
)


def _fail(message: str) -> typer.Exit:
    output.error(message)
    return typer.Exit(1)


def _explain(exc: ClientError, address: str) -> str:
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        return f"{exc} (is `opensphere serve` running at {address}?)"
    return str(exc)


def _run(body: Body, values: dict[str, Any]) -> None:
    """Connect, run the command body, and turn every expected failure into one line."""
    address, token_file, ca_file, as_json = (values.pop(p.name) for p in _COMMON)
    try:
        connection = Connection.resolve(address, token_file, ca_file)
        client = Client(connection)
    except OSError as exc:
        raise _fail(f"{exc.filename}: {exc.strerror}") from None
    except ClientError as exc:
        raise _fail(str(exc)) from None
    try:
        body(Session(client, as_json), values)
    except ClientError as exc:
        raise _fail(_explain(exc, connection.address)) from None
    except CliError as exc:
        raise _fail(str(exc)) from None
    finally:
        client.close()


def _command(group: typer.Typer, name: str, doc: str, params: Sequence[inspect.Parameter],
             body: Body) -> None:
    """Register ``body`` under ``name`` with ``params`` plus the connection options."""
    def run(**values: Any) -> None:
        _run(body, values)

    signature = inspect.Signature([*params, *_COMMON])
    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    run.__doc__ = doc
    group.command(name)(run)


def _id_param(res: Resource) -> inspect.Parameter:
    name = f"{res.noun}_id"
    argument = typer.Argument(help=f"{res.title} ID", metavar=name.upper())
    return _keyword(name, Annotated[str, argument], inspect.Parameter.empty)


# --- Generic verbs ------------------------------------------------------------------------

def _create(group: typer.Typer, res: Resource) -> None:
    assert res.parent is not None
    parent = res.parent

    def body(s: Session, values: dict[str, Any]) -> None:
        request = {parent.path: values[parent.name]}
        fill(request, res.flags, values)
        s.show(res.title, unpack(s.finish(res.method("create"), request).response))

    _command(group, "create", f"Create a {res.noun}, wait for it and print it.",
             [parent.parameter(required=True), *(f.parameter() for f in res.flags)], body)


def _list(group: typer.Typer, res: Resource) -> None:
    params = [
        _keyword("page_size", Annotated[int | None, typer.Option(
            help="Items per page (default: the server's, 100)")]),
        _keyword("page_token", Annotated[str | None, typer.Option(
            help="Continue from a previous list's next page token")]),
        _keyword("all_", Annotated[bool, typer.Option("--all", help="Walk every page")],
                 False),
    ]
    if res.parent is not None:
        params.insert(0, res.parent.parameter(required=True))

    def body(s: Session, values: dict[str, Any]) -> None:
        request = {"pageSize": values["page_size"], "pageToken": values["page_token"]}
        if res.parent is not None:
            request[res.parent.path] = values[res.parent.name]
        request = {k: v for k, v in request.items() if v is not None}
        items, token = pages(s, res.method("list"), request, res.plural, walk=values["all_"])
        _show_list(s, res, items, token)

    _command(group, "list", f"List {res.plural} (one page unless --all).", params, body)


def pages(s: Session, method: str, request: dict[str, Any], field: str, *,
          walk: bool = True, limit: int | None = None) -> tuple[list[dict[str, Any]], str]:
    """Items of one page, or of every page with ``walk`` (at most ``limit``); and the
    token of the next page."""
    items: list[dict[str, Any]] = []
    while True:
        page = to_dict(s.call(method, request))
        items.extend(page.get(field, []))
        token = page.get("nextPageToken", "")
        if not (walk and token) or (limit is not None and len(items) >= limit):
            return items[:limit], token
        request["pageToken"] = token


def _show_list(s: Session, res: Resource, items: list[dict[str, Any]], token: str) -> None:
    if s.json:
        output.print_json({res.plural: items, **({"nextPageToken": token} if token else {})})
        return
    output.table(res.plural.capitalize(), items, res.columns)
    if token:
        output.note(f"More {res.plural} follow: pass --all, or --page-token {token}")


def _get(group: typer.Typer, res: Resource) -> None:
    def body(s: Session, values: dict[str, Any]) -> None:
        s.show(res.title, s.call(res.method("get"), {res.id_field: values[f"{res.noun}_id"]}))

    _command(group, "get", f"Show one {res.noun}.", [_id_param(res)], body)


def _update(group: typer.Typer, res: Resource) -> None:
    options = ", ".join("--" + f.name.replace("_", "-") for f in res.flags)

    def body(s: Session, values: dict[str, Any]) -> None:
        request: dict[str, Any] = {res.id_field: values[f"{res.noun}_id"]}
        paths = fill(request, res.flags, values)
        if not paths:
            raise typer.BadParameter(f"nothing to update: pass at least one of {options}")
        request["updateMask"] = ",".join(paths)
        s.show(res.title, unpack(s.finish(res.method("update"), request).response))

    _command(group, "update",
             f"Change the given fields of a {res.noun} (only those), and print it.",
             [_id_param(res), *(f.parameter() for f in res.flags)], body)


def _delete(group: typer.Typer, res: Resource) -> None:
    def body(s: Session, values: dict[str, Any]) -> None:
        resource_id = values[f"{res.noun}_id"]
        operation = s.finish(res.method("delete"), {res.id_field: resource_id})
        if s.json:
            output.print_json(to_dict(operation))
        else:
            output.print_plain(f"Deleted {res.noun} {resource_id}.")

    _command(group, "delete", f"Delete a {res.noun} (--json prints the finished operation).",
             [_id_param(res)], body)


VERBS: dict[str, Callable[[typer.Typer, Resource], None]] = {
    "create": _create, "list": _list, "get": _get, "update": _update, "delete": _delete,
}


# --- Tokens -------------------------------------------------------------------------------

TOKEN_FLAGS = (
    Flag("description", "description", "What the token is for"),
    Flag("ttl", "ttl", "Lifetime such as 3600s, 30m, 12h or 7d (default: no expiry)",
         convert=parse_ttl),
)


def _create_token(s: Session, values: dict[str, Any]) -> None:
    """The secret alone goes to stdout (``> file`` keeps it); the rest is a note on stderr."""
    request: dict[str, Any] = {}
    fill(request, TOKEN_FLAGS, values)
    data = to_dict(s.call("TokenService.Create", request))
    if s.json:
        output.print_json(data)
        return
    output.print_plain(data["token"])
    output.note(f"Token {data['tokenId']} for {data['subjectId']}, expires "
                f"{data.get('expiresAt', 'never')}. It is shown only this once.")


def _token_group() -> typer.Typer:
    group = typer.Typer(no_args_is_help=True, help="Bearer tokens for the calling subject.")
    _command(group, "create", "Issue a new token for yourself and print it (only this once).",
             [f.parameter() for f in TOKEN_FLAGS], _create_token)
    return group


def register(app: typer.Typer) -> dict[str, typer.Typer]:
    """Add the client command groups to the ``opensphere`` application; returns them by name,
    for modules that add commands of their own."""
    groups = {}
    for res in RESOURCES:
        group = groups[res.group] = typer.Typer(no_args_is_help=True, help=res.help)
        for verb in res.verbs:
            VERBS[verb](group, res)
        app.add_typer(group, name=res.group)
    app.add_typer(_token_group(), name="token")
    return groups
