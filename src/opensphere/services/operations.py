"""Long-running operations: stored rows rendered as ``yandex.cloud.operation.Operation``."""

from __future__ import annotations

import asyncio
from datetime import datetime

from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.ids import new_id
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2, operation_service_pb2
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, not_found
from opensphere.services.registry import rpc
from opensphere.store import models as m

SERVICE = "yandex.cloud.operation.OperationService"
CANCEL_WAIT = 10.0  # seconds Cancel waits for the work to stop before it answers


def _pack(message: Message) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed.SerializeToString()


def to_proto(row: m.Operation) -> operation_pb2.Operation:
    op = operation_pb2.Operation(id=row.id, description=row.description,
                                 created_by=row.created_by, done=row.done)
    op.created_at.FromDatetime(row.created_at)
    op.modified_at.FromDatetime(row.modified_at)
    if row.metadata_pb is not None:
        op.metadata.ParseFromString(row.metadata_pb)
    if row.error_pb is not None:
        op.error.ParseFromString(row.error_pb)
    elif row.response_pb is not None:
        op.response.ParseFromString(row.response_pb)
    return op


def new(ctx: CallContext, description: str, resource_type: str, resource_id: str,
        metadata: Message, *, operation_id: str | None = None,
        at: datetime | None = None) -> m.Operation:
    """A not-yet-done operation row (a new id, created now, unless given), not in any
    session yet.

    The resource (kind and id) decides who may read and cancel the operation.
    """
    now = at or m.utcnow()
    return m.Operation(id=operation_id or new_id("ops"), description=description,
                       resource_type=resource_type, resource_id=resource_id,
                       created_by=ctx.caller.subject_id, created_at=now, modified_at=now,
                       done=False, metadata_pb=_pack(metadata))


def start(session: AsyncSession, ctx: CallContext, description: str, resource_type: str,
          resource_id: str, metadata: Message) -> m.Operation:
    """Add a not-yet-done operation to ``session`` (committed with the caller's transaction),
    with the call's audit record."""
    return add(session, ctx, new(ctx, description, resource_type, resource_id, metadata))


def add(session: AsyncSession, ctx: CallContext, row: m.Operation) -> m.Operation:
    """Add ``row`` (from ``new``) to ``session``, with the call's audit record."""
    session.add(row)
    if ctx.audit is not None:
        session.add(ctx.audit.take())
    return row


def finish(row: m.Operation, *, response: Message | None = None,
           error: ApiError | None = None) -> None:
    """Mark ``row`` done with exactly one of a response or an error."""
    row.done = True
    row.modified_at = m.utcnow()
    if error is not None:
        status = status_pb2.Status(code=int(error.code), message=error.message)
        for detail in error.details:
            status.details.add().Pack(detail)
        row.error_pb = status.SerializeToString()
    else:
        row.response_pb = _pack(response) if response is not None else None


def completed(session: AsyncSession, ctx: CallContext, description: str, resource_type: str,
              resource_id: str, metadata: Message, response: Message
              ) -> operation_pb2.Operation:
    """An operation that is done by the time the call returns (same transaction as its work)."""
    row = start(session, ctx, description, resource_type, resource_id, metadata)
    finish(row, response=response)
    return to_proto(row)


@rpc(SERVICE, "Get")
async def get(ctx: CallContext, request: operation_service_pb2.GetOperationRequest
              ) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        row = await session.get(m.Operation, request.operation_id)
        if row is None:
            raise not_found("operation", request.operation_id)
        return to_proto(row)


@rpc(SERVICE, "Cancel")
async def cancel(ctx: CallContext, request: operation_service_pb2.CancelOperationRequest
                 ) -> operation_pb2.Operation:
    """Stop the work behind a running operation and return it once it ended (or after a
    few seconds); a finished operation is returned as it is."""
    async with ctx.runtime.db.session() as session:
        row = await session.get(m.Operation, request.operation_id)
        if row is None:
            raise not_found("operation", request.operation_id)
    if row.done:
        return to_proto(row)
    stop = ctx.runtime.cancellers.get(row.description)
    if stop is None or not stop(row.id):
        raise ApiError(Code.FAILED_PRECONDITION,
                       f"operation {row.id} cannot be cancelled on this server")
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT
    while True:
        async with ctx.runtime.db.session() as session:
            row = await session.get(m.Operation, request.operation_id)
        if row is None or row.done or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    if row is None:
        raise not_found("operation", request.operation_id)
    return to_proto(row)


# --- Operations that finish after their RPC returned (the work runs in a background task) ---
# Each is one conditional UPDATE, so that whoever finishes an operation first wins and a
# finished operation is never rewritten.

async def report(session: AsyncSession, operation_id: str, metadata: Message) -> bool:
    """Replace a running operation's metadata (its progress); False if it is already done."""
    result = await session.execute(
        update(m.Operation)
        .where(m.Operation.id == operation_id, m.Operation.done.is_(False))
        .values(metadata_pb=_pack(metadata), modified_at=m.utcnow()))
    return result.rowcount == 1


def _outcome(response: Message | None, error: ApiError | None) -> dict[str, object]:
    """The columns ``finish`` sets, computed on a detached row so both share one encoding."""
    row = m.Operation()
    finish(row, response=response, error=error)
    return {"done": True, "modified_at": row.modified_at, "response_pb": row.response_pb,
            "error_pb": row.error_pb}


async def finish_running(session: AsyncSession, operation_id: str, *,
                         response: Message | None = None,
                         error: ApiError | None = None) -> operation_pb2.Operation | None:
    """``finish`` for an operation by id; returns it finished, or None if something else
    finished it first."""
    row = await session.scalar(
        update(m.Operation)
        .where(m.Operation.id == operation_id, m.Operation.done.is_(False))
        .values(**_outcome(response, error))
        .returning(m.Operation)
        .execution_options(synchronize_session=False))
    return to_proto(row) if row is not None else None


async def touch(session: AsyncSession, operation_id: str) -> None:
    """Mark a running operation as still looked after (see ``finish_abandoned``)."""
    await session.execute(
        update(m.Operation)
        .where(m.Operation.id == operation_id, m.Operation.done.is_(False))
        .values(modified_at=m.utcnow()))


async def finish_abandoned(session: AsyncSession, description: str, idle_since: datetime, *,
                           response: Message | None = None,
                           error: ApiError | None = None) -> int:
    """Finish running ``description`` operations untouched since ``idle_since``: their worker
    died with its process. Returns how many were finished."""
    result = await session.execute(
        update(m.Operation)
        .where(m.Operation.description == description, m.Operation.done.is_(False),
               m.Operation.modified_at < idle_since)
        .values(**_outcome(response, error)))
    return result.rowcount
