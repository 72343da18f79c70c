"""Administration commands (``iam``, ``audit``): subjects, credentials, access bindings, audit.

Subjects and credentials need the administrator role on the installation; access bindings
need ``setAccessBindings`` on the resource. Commands reuse the connection options, output
modes and error handling of ``opensphere.cli.resources``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.message import Message

from opensphere import contract
from opensphere.cli import output
from opensphere.cli.output import Column
from opensphere.cli.resources import (
    _CREATED,
    _ID,
    _NAME,
    Body,
    CliError,
    Flag,
    Session,
    _command,
    _keyword,
    fill,
    pages,
    parse_ttl,
)
from opensphere.client import to_dict

# --- Shared pieces ------------------------------------------------------------------------


def _argument(name: str, help: str) -> inspect.Parameter:
    """A required positional argument, shown as ``NAME`` in the usage line."""
    return _keyword(name, Annotated[str, typer.Argument(help=help, metavar=name.upper())],
                    inspect.Parameter.empty)


def _walk(s: Session, method: str, request: dict[str, Any], field: str,
          limit: int | None = None) -> list[dict[str, Any]]:
    """The items of every page (or the first ``limit``): these lists are read whole."""
    return pages(s, method, request, field, limit=limit)[0]


def _show_items(s: Session, title: str, field: str, items: list[dict[str, Any]],
                columns: Sequence[Column]) -> None:
    if s.json:
        output.print_json({field: items})
    else:
        output.table(title, items, columns)


def _done(s: Session, response: Message, line: str) -> None:
    """Calls that return nothing to show: ``--json`` prints the response, people get a line."""
    if s.json:
        output.print_json(to_dict(response))
    else:
        output.print_plain(line)


# --- Subjects -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SubjectKind:
    """One ``iam`` subject group: its command name, API type and wording."""

    command: str
    type: str
    noun: str
    help: str


USER = SubjectKind("user", "userAccount", "user",
                   "Users: people, who call with tokens issued for them.")
SERVICE_ACCOUNT = SubjectKind("sa", "serviceAccount", "service account",
                              "Service accounts: programs, which call with tokens or API keys.")
GROUP = SubjectKind("group", "group", "group",
                    "Groups: roles granted to a group apply to each of its members.")
SUBJECT_KINDS = (USER, SERVICE_ACCOUNT, GROUP)

_SUBJECT_COLUMNS = (_ID, Column("TYPE", "type"), _NAME, _CREATED)
_MEMBERS = Column("MEMBERS", "memberIds")


def _subject_group(kind: SubjectKind) -> typer.Typer:
    group = typer.Typer(no_args_is_help=True, help=kind.help)
    plural = f"{kind.noun}s"

    def create(s: Session, values: dict[str, Any]) -> None:
        created = s.call("SubjectService.Create", {"type": kind.type, "name": values["name"]})
        s.show(kind.noun.capitalize(), created)

    def list_(s: Session, values: dict[str, Any]) -> None:
        items = _walk(s, "SubjectService.List", {"type": kind.type}, "subjects")
        columns = (*_SUBJECT_COLUMNS, _MEMBERS) if kind is GROUP else _SUBJECT_COLUMNS
        _show_items(s, plural.capitalize(), "subjects", items, columns)

    def delete(s: Session, values: dict[str, Any]) -> None:
        subject_id = values["subject_id"]
        _done(s, s.call("SubjectService.Delete", {"subjectId": subject_id}),
              f"Deleted {kind.noun} {subject_id}.")

    _command(group, "create", f"Create a {kind.noun} and print it.",
             [_argument("name", "Name, unique among all subjects")], create)
    _command(group, "list", f"List all {plural}.", [], list_)
    _command(group, "delete", f"Delete a {kind.noun} with its credentials and bindings.",
             [_argument("subject_id", f"{kind.noun.capitalize()} ID")], delete)
    if kind is GROUP:
        _member_command(group, "add-member", "AddGroupMember",
                        "Make a user or service account a member of a group.",
                        "Added {member} to group {group}.")
        _member_command(group, "remove-member", "RemoveGroupMember",
                        "Take a member out of a group.", "Removed {member} from group {group}.")
    return group


def _member_command(group: typer.Typer, name: str, method: str, doc: str, line: str) -> None:
    def body(s: Session, values: dict[str, Any]) -> None:
        request = {"groupId": values["group_id"], "subjectId": values["subject_id"]}
        _done(s, s.call(f"SubjectService.{method}", request),
              line.format(member=values["subject_id"], group=values["group_id"]))

    _command(group, name, doc, [_argument("group_id", "Group ID"),
                                _argument("subject_id", "User or service account ID")], body)


# --- Credentials --------------------------------------------------------------------------

@dataclass(frozen=True)
class CredentialKind:
    """``iam token`` or ``iam key``: which method issues the secret, and its options."""

    command: str
    noun: str
    method: str
    help: str
    flags: tuple[Flag, ...]


_DESCRIPTION = Flag("description", "description", "What the credential is for")
TOKEN = CredentialKind(
    "token", "token", "SubjectService.IssueToken",
    "Bearer tokens for users and service accounts (sent as OPENSPHERE_TOKEN).",
    (Flag("subject", "subjectId", "User or service account ID"), _DESCRIPTION,
     Flag("ttl", "ttl", "Lifetime such as 3600s, 30m, 12h or 7d (default 12h)",
          convert=parse_ttl)))
API_KEY = CredentialKind(
    "key", "API key", "SubjectService.CreateApiKey",
    "API keys for service accounts: no expiry (sent as OPENSPHERE_API_KEY).",
    (Flag("subject", "subjectId", "Service account ID"), _DESCRIPTION))


def _credential_group(kind: CredentialKind) -> typer.Typer:
    group = typer.Typer(no_args_is_help=True, help=kind.help)

    def create(s: Session, values: dict[str, Any]) -> None:
        """The secret alone goes to stdout (``> file`` keeps it); the rest is a note."""
        request: dict[str, Any] = {}
        fill(request, kind.flags, values)
        data = to_dict(s.call(kind.method, request))
        if s.json:
            output.print_json(data)
            return
        output.print_plain(data["secret"])
        output.note(f"Issued {kind.noun} {data['id']} for {data['subjectId']}, expires "
                    f"{data.get('expiresAt', 'never')}. It is shown only this once.")

    def revoke(s: Session, values: dict[str, Any]) -> None:
        credential_id = values["credential_id"]
        _done(s, s.call("SubjectService.RevokeCredential", {"credentialId": credential_id}),
              f"Revoked {kind.noun} {credential_id}.")

    subject, *rest = kind.flags
    _command(group, "create", f"Issue a {kind.noun} and print it (only this once).",
             [subject.parameter(required=True), *(f.parameter() for f in rest)], create)
    _command(group, "revoke", f"Revoke a {kind.noun}: refused from the next call on.",
             [_argument("credential_id", f"ID of the {kind.noun}, as printed on creation")],
             revoke)
    return group


# --- Access bindings ----------------------------------------------------------------------

class ResourceKind(StrEnum):
    """What bindings are set on; each kind's service has the access-binding methods."""

    ORGANIZATION = "organization"
    COMMUNITY = "community"
    PROJECT = "project"

    def method(self, name: str) -> str:
        return f"{self.value.capitalize()}Service.{name}"


def parse_subject(text: str) -> dict[str, str]:
    """``TYPE:ID`` (``userAccount:<id>``, ``system:allAuthenticatedUsers``) as an API subject."""
    kind, sep, subject_id = text.partition(":")
    if not (sep and kind and subject_id):
        raise CliError(f"subject {text!r}: expected TYPE:ID such as userAccount:<id>, "
                       "serviceAccount:<id>, group:<id> or system:allAuthenticatedUsers")
    return {"type": kind, "id": subject_id}


_RESOURCE_PARAMS = (
    _keyword("resource_kind", Annotated[ResourceKind, typer.Argument(
        help="Kind of the resource", metavar="RESOURCE_KIND")], inspect.Parameter.empty),
    _argument("resource_id", "Resource ID"),
)
_BINDING_PARAMS = (
    *_RESOURCE_PARAMS,
    _argument("role", "Role, e.g. viewer, editor or admin"),
    _argument("subject", "SUBJECT_TYPE:SUBJECT_ID, e.g. userAccount:<id>"),
)


def _change_binding(action: str, line: str) -> Body:
    """``iam grant`` (ADD) and ``iam revoke`` (REMOVE): one delta, applied as an operation."""
    def body(s: Session, values: dict[str, Any]) -> None:
        kind: ResourceKind = values["resource_kind"]
        binding = {"roleId": values["role"], "subject": parse_subject(values["subject"])}
        operation = s.finish(kind.method("UpdateAccessBindings"), {
            "resourceId": values["resource_id"],
            "accessBindingDeltas": [{"action": action, "accessBinding": binding}]})
        _done(s, operation, line.format(role=values["role"], kind=kind.value,
                                        id=values["resource_id"], subject=values["subject"]))

    return body


def _bindings(s: Session, values: dict[str, Any]) -> None:
    kind: ResourceKind = values["resource_kind"]
    items = _walk(s, kind.method("ListAccessBindings"), {"resourceId": values["resource_id"]},
                  "accessBindings")
    _show_items(s, "Access bindings", "accessBindings", items,
                (Column("ROLE", "roleId"), Column("SUBJECT TYPE", "subject.type"),
                 Column("SUBJECT ID", "subject.id", no_wrap=True)))


# --- Audit --------------------------------------------------------------------------------

def full_method(name: str) -> str:
    """``CommunityService.Create`` as the full name the audit log keeps; full names pass."""
    for method in contract.methods():
        if name in (method.full_name, f"{method.containing_service.name}.{method.name}"):
            return method.full_name
    raise CliError(f"--method {name!r}: no such method, expected e.g. CommunityService.Create")


def _short_method(name: Any) -> str:
    """Table cells keep ``Service.Method``: the package adds width, not information."""
    return ".".join(str(name).split(".")[-2:])


def parse_result(text: str) -> str:
    """``OK`` or a gRPC status name, in any case."""
    code = text.upper()
    if code not in grpc.StatusCode.__members__:
        raise CliError(f"--result {text!r}: expected OK or a gRPC status such as "
                       "PERMISSION_DENIED, NOT_FOUND or UNAUTHENTICATED")
    return code


def parse_since(text: str, now: datetime | None = None) -> str:
    """An RFC 3339 time (UTC when it has no offset), or a duration back from now (``1h``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            ago = timedelta(seconds=int(parse_ttl(text).removesuffix("s")))
        except CliError:
            raise CliError(f"--since {text!r}: expected a time such as 2026-01-01T00:00:00Z "
                           "or a duration such as 30m, 1h or 7d") from None
        moment = (now or datetime.now(UTC)) - ago
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


AUDIT_FLAGS = (
    Flag("subject", "subjectId", "Only calls made by this subject ID"),
    Flag("method", "method", "Only this method, e.g. CommunityService.Create",
         convert=full_method),
    Flag("resource", "resourceId", "Only calls on this resource ID"),
    Flag("result", "result", "Only this outcome: OK, PERMISSION_DENIED, NOT_FOUND, ...",
         convert=parse_result),
    Flag("since", "since", "Only records from this time on: 2026-01-01T00:00:00Z, or 1h ago",
         convert=parse_since),
)
_AUDIT_COLUMNS = (
    Column("TIME", "time", output.timestamp, no_wrap=True),
    Column("SUBJECT", "subjectId", no_wrap=True),
    Column("METHOD", "method", _short_method),
    Column("RESOURCE", "resourceId", no_wrap=True),
    Column("RESULT", "result"),
    Column("MESSAGE", "message"),
)
_MAX_PAGE = 1000


def _audit_list(s: Session, values: dict[str, Any]) -> None:
    limit: int = values["limit"]
    request: dict[str, Any] = {"pageSize": min(limit, _MAX_PAGE)}
    fill(request, AUDIT_FLAGS, values)
    records = _walk(s, "AuditService.List", request, "records", limit)
    _show_items(s, "Audit records", "records", records, _AUDIT_COLUMNS)


def register(app: typer.Typer) -> None:
    """Add the ``iam`` and ``audit`` command groups to the ``opensphere`` application."""
    iam = typer.Typer(no_args_is_help=True,
                      help="Users, service accounts, groups, their credentials and roles.")
    for kind in SUBJECT_KINDS:
        iam.add_typer(_subject_group(kind), name=kind.command)
    for credential in (TOKEN, API_KEY):
        iam.add_typer(_credential_group(credential), name=credential.command)
    _command(iam, "grant", "Grant a role on an organization, community or project.",
             _BINDING_PARAMS, _change_binding("ADD", "Granted {role} on {kind} {id} to "
                                                     "{subject}."))
    _command(iam, "revoke", "Take back a role granted with `iam grant`.",
             _BINDING_PARAMS, _change_binding("REMOVE", "Revoked {role} on {kind} {id} from "
                                                        "{subject}."))
    _command(iam, "bindings", "List every access binding on a resource.",
             _RESOURCE_PARAMS, _bindings)
    app.add_typer(iam, name="iam")

    audit = typer.Typer(no_args_is_help=True,
                        help="The audit log: every change and every refused call.")
    limit = _keyword("limit", Annotated[int, typer.Option(
        min=1, help="At most this many records, newest first")], 50)
    _command(audit, "list", "List audit records, newest first.",
             [*(f.parameter() for f in AUDIT_FLAGS), limit], _audit_list)
    app.add_typer(audit, name="audit")
