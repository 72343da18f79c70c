"""SubjectService and AuditService: the installation administrator's view of identity."""

from __future__ import annotations

from datetime import UTC, timedelta

from google.protobuf import empty_pb2
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam import tokens
from opensphere.ids import new_id
from opensphere.proto_gen.opensphere.v1 import iam_service_pb2 as iam
from opensphere.services import paging
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, invalid_argument, not_found
from opensphere.services.registry import rpc
from opensphere.store import models as m

SUBJECTS = "opensphere.v1.SubjectService"
AUDIT = "opensphere.v1.AuditService"
CREATABLE = {"userAccount": "aje", "serviceAccount": "ajs", "group": "ajg"}


def _subject(row: m.Subject, members: list[str]) -> iam.Subject:
    msg = iam.Subject(id=row.id, type=row.type, name=row.name, member_ids=members)
    msg.created_at.FromDatetime(row.created_at)
    return msg


def _credential(row: m.Token, secret: str) -> iam.Credential:
    msg = iam.Credential(id=row.id, subject_id=row.subject_id, kind=row.kind, secret=secret)
    if row.expires_at is not None:
        msg.expires_at.FromDatetime(row.expires_at)
    return msg


@rpc(SUBJECTS, "Create")
async def create(ctx: CallContext, request: iam.CreateSubjectRequest) -> iam.Subject:
    if request.type not in CREATABLE:
        raise invalid_argument("type", f"must be one of {', '.join(CREATABLE)}")
    row = m.Subject(id=new_id(CREATABLE[request.type]), type=request.type, name=request.name,
                    created_at=m.utcnow())
    try:
        async with ctx.runtime.db.session() as session:
            session.add(row)
    except IntegrityError:
        raise ApiError(Code.ALREADY_EXISTS, f"a subject named {request.name!r} exists") from None
    return _subject(row, [])


@rpc(SUBJECTS, "List")
async def list_(ctx: CallContext, request: iam.ListSubjectsRequest) -> iam.ListSubjectsResponse:
    query = select(m.Subject)
    if request.type:
        query = query.where(m.Subject.type == request.type)
    query = paging.keyset(query, m.Subject.id, request.page_token, request.page_size)
    async with ctx.runtime.db.session() as session:
        rows = (await session.scalars(query)).all()
        page, token = paging.split_page(rows, request.page_size, lambda r: r.id)
        members = (await session.execute(select(m.GroupMember.group_id, m.GroupMember.subject_id)
                                          .where(m.GroupMember.group_id.in_([r.id for r in page]))
                                          .order_by(m.GroupMember.subject_id))).all()
    by_group: dict[str, list[str]] = {}
    for group_id, subject_id in members:
        by_group.setdefault(group_id, []).append(subject_id)
    return iam.ListSubjectsResponse(
        subjects=[_subject(r, by_group.get(r.id, [])) for r in page], next_page_token=token)


@rpc(SUBJECTS, "Delete")
async def delete_(ctx: CallContext, request: iam.DeleteSubjectRequest) -> empty_pb2.Empty:
    if request.subject_id == ctx.caller.subject_id:
        raise ApiError(Code.FAILED_PRECONDITION, "a subject cannot delete itself")
    async with ctx.runtime.db.session() as session:
        row = await session.get(m.Subject, request.subject_id)
        if row is None:
            raise not_found("subject", request.subject_id)
        await session.execute(delete(m.AccessBinding).where(
            m.AccessBinding.subject_id == row.id))
        await session.execute(delete(m.GroupMember).where(
            (m.GroupMember.subject_id == row.id) | (m.GroupMember.group_id == row.id)))
        await session.execute(delete(m.Token).where(m.Token.subject_id == row.id))
        await session.delete(row)
    return empty_pb2.Empty()


async def _group_and_member(session: AsyncSession, request: iam.GroupMemberRequest) -> None:
    group = await session.get(m.Subject, request.group_id)
    if group is None or group.type != "group":
        raise not_found("group", request.group_id)
    member = await session.get(m.Subject, request.subject_id)
    if member is None or member.type == "group":
        raise invalid_argument("subject_id", "must be an existing user or service account")


@rpc(SUBJECTS, "AddGroupMember")
async def add_member(ctx: CallContext, request: iam.GroupMemberRequest) -> empty_pb2.Empty:
    async with ctx.runtime.db.session() as session:
        await _group_and_member(session, request)
        if await session.get(m.GroupMember, (request.group_id, request.subject_id)) is None:
            session.add(m.GroupMember(group_id=request.group_id, subject_id=request.subject_id))
    return empty_pb2.Empty()


@rpc(SUBJECTS, "RemoveGroupMember")
async def remove_member(ctx: CallContext, request: iam.GroupMemberRequest) -> empty_pb2.Empty:
    async with ctx.runtime.db.session() as session:
        await _group_and_member(session, request)
        await session.execute(delete(m.GroupMember).where(
            m.GroupMember.group_id == request.group_id,
            m.GroupMember.subject_id == request.subject_id))
    return empty_pb2.Empty()


async def _issue(ctx: CallContext, subject_id: str, kinds: tuple[str, ...], kind: str,
                 description: str, ttl: timedelta | None) -> iam.Credential:
    async with ctx.runtime.db.session() as session:
        subject = await session.get(m.Subject, subject_id)
        if subject is None:
            raise not_found("subject", subject_id)
        if subject.type not in kinds:
            raise invalid_argument("subject_id", f"must be a {' or '.join(kinds)}")
        row, secret = await tokens.issue(session, subject_id, kind=kind,
                                         description=description, ttl=ttl)
    return _credential(row, secret)


@rpc(SUBJECTS, "IssueToken")
async def issue_token(ctx: CallContext, request: iam.IssueTokenRequest) -> iam.Credential:
    ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else tokens.DEFAULT_TTL
    return await _issue(ctx, request.subject_id, ("userAccount", "serviceAccount"),
                        tokens.BEARER, request.description, ttl)


@rpc(SUBJECTS, "CreateApiKey")
async def create_api_key(ctx: CallContext, request: iam.CreateApiKeyRequest) -> iam.Credential:
    return await _issue(ctx, request.subject_id, ("serviceAccount",), tokens.API_KEY,
                        request.description, None)


@rpc(SUBJECTS, "RevokeCredential")
async def revoke(ctx: CallContext, request: iam.RevokeCredentialRequest) -> empty_pb2.Empty:
    async with ctx.runtime.db.session() as session:
        done = await session.execute(update(m.Token).where(
            m.Token.id == request.credential_id, m.Token.revoked_at.is_(None),
        ).values(revoked_at=m.utcnow()))
        if done.rowcount == 0 and await session.get(m.Token, request.credential_id) is None:
            raise not_found("credential", request.credential_id)
    return empty_pb2.Empty()


@rpc(AUDIT, "List")
async def audit_list(ctx: CallContext, request: iam.ListAuditRecordsRequest
                     ) -> iam.ListAuditRecordsResponse:
    """Newest first: the page token carries the last id seen, and ids grow with time."""
    query = select(m.AuditRecord)
    for column, value in ((m.AuditRecord.subject_id, request.subject_id),
                          (m.AuditRecord.method, request.method),
                          (m.AuditRecord.resource_id, request.resource_id),
                          (m.AuditRecord.result, request.result)):
        if value:
            query = query.where(column == value)
    if request.HasField("since"):
        query = query.where(m.AuditRecord.time >= request.since.ToDatetime(tzinfo=UTC))
    after = paging.decode_token(request.page_token)
    if after is not None:
        query = query.where(m.AuditRecord.id < after)
    size = paging.page_size(request.page_size)
    async with ctx.runtime.db.session() as session:
        rows = (await session.scalars(query.order_by(m.AuditRecord.id.desc())
                                      .limit(size + 1))).all()
    page, token = paging.split_page(rows, request.page_size, lambda r: r.id)
    records = []
    for r in page:
        rec = iam.AuditRecord(id=r.id, subject_id=r.subject_id, method=r.method,
                              resource_id=r.resource_id, result=r.result, message=r.message)
        rec.time.FromDatetime(r.time)
        records.append(rec)
    return iam.ListAuditRecordsResponse(records=records, next_page_token=token)
