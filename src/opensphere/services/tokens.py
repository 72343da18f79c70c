"""TokenService: lets a subject issue further bearer tokens for itself."""

from __future__ import annotations

from opensphere.iam import tokens
from opensphere.proto_gen.opensphere.v1 import token_service_pb2 as ts
from opensphere.services.context import CallContext
from opensphere.services.registry import rpc

SERVICE = "opensphere.v1.TokenService"


@rpc(SERVICE, "Create")
async def create(ctx: CallContext, request: ts.CreateTokenRequest) -> ts.CreateTokenResponse:
    ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else tokens.DEFAULT_TTL
    async with ctx.runtime.db.session() as session:
        row, secret = await tokens.issue(session, ctx.caller.subject_id,
                                         description=request.description, ttl=ttl)
    response = ts.CreateTokenResponse(token_id=row.id, token=secret,
                                      subject_id=ctx.caller.subject_id)
    if row.expires_at is not None:
        response.expires_at.FromDatetime(row.expires_at)
    return response
