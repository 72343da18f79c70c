"""Unit balances, limits and metering: what a project may spend, and what it spent.

A run is charged while it runs, once a second, rounded up to whole seconds at its spec's
price; the balance is charged in the same transaction as the run's usage record, so a
crash loses at most the current second. A run stops (ABORTED) when the balance reaches 0,
when it passes ``max_units_per_execution``, or when the project's consumption in the last
hour passes ``max_units_per_hour``.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta

from google.protobuf import empty_pb2
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.engine.specs import Spec
from opensphere.proto_gen.opensphere.v1 import usage_service_pb2 as us
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_pb2
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.runtime import Runtime
from opensphere.services import operations, paging, projects
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, invalid_argument
from opensphere.services.registry import rpc
from opensphere.services.restrictions import Effective
from opensphere.store import models as m

SERVICE = "yandex.cloud.datasphere.v2.ProjectService"
TICK = 1.0  # seconds between charges of a running run
HOUR = timedelta(hours=1)


def units_for(spec: Spec, seconds: int) -> int:
    """The price of ``seconds`` of ``spec``, in whole units, rounded up."""
    return math.ceil(seconds * spec.unit_price_per_hour / 3600)


_BALANCE = select(m.ProjectBudget.unit_balance).where(
    m.ProjectBudget.project_id == bindparam("project"))


async def balance_of(session: AsyncSession, project_id: str) -> int | None:
    """The unit balance (None: unlimited), read as a plain statement: every run asks."""
    return await (await session.connection()).scalar(_BALANCE, {"project": project_id})


async def spent_last_hour(session: AsyncSession, project_id: str) -> int:
    since = datetime.now(UTC) - HOUR
    total = await session.scalar(select(func.coalesce(func.sum(m.Usage.units), 0)).where(
        m.Usage.project_id == project_id, m.Usage.updated_at >= since))
    return int(total or 0)


async def admit(session: AsyncSession, project: project_pb2.Project, spec: Spec,
                limits: Effective, running: int) -> None:
    """Refuse a run before it starts when the project may not afford or host it."""
    if limits.allowed_specs is not None and spec.name not in limits.allowed_specs:
        allowed = ", ".join(sorted(limits.allowed_specs)) or "none"
        raise ApiError(Code.FAILED_PRECONDITION, f"spec {spec.name} is not allowed in "
                       f"project {project.id} (allowed: {allowed})")
    if limits.max_concurrent_runs is not None and running >= limits.max_concurrent_runs:
        raise ApiError(Code.RESOURCE_EXHAUSTED, f"project {project.id} already runs "
                       f"{running} notebooks, its limit (max_concurrent_runs)")
    balance = await balance_of(session, project.id)
    if balance is not None and balance <= 0:
        raise ApiError(Code.FAILED_PRECONDITION, f"project {project.id} has a unit balance "
                       f"of {balance}: set a positive balance to run notebooks")
    per_hour = project.limits
    if per_hour.HasField("max_units_per_hour"):
        cap = per_hour.max_units_per_hour.value
        if spec.unit_price_per_hour > cap:
            raise ApiError(Code.FAILED_PRECONDITION, f"spec {spec.name} costs "
                           f"{spec.unit_price_per_hour} units per hour, more than the "
                           f"project's max_units_per_hour of {cap}")
        spent = await spent_last_hour(session, project.id)
        if spent >= cap:
            raise ApiError(Code.FAILED_PRECONDITION, f"project {project.id} spent {spent} "
                           f"units in the last hour, its max_units_per_hour is {cap}")


# Built once: a run's charge is on its critical path, and building a statement costs
# more than running it.
_INSERT_USAGE = insert(m.Usage)
_UPDATE_USAGE = update(m.Usage).where(m.Usage.operation_id == bindparam("id")).values(
    seconds=bindparam("seconds"), units=bindparam("units"),
    updated_at=bindparam("updated_at"), finished=bindparam("finished"),
)
_CHARGE = update(m.ProjectBudget).where(
    m.ProjectBudget.project_id == bindparam("project"),
    m.ProjectBudget.unit_balance.is_not(None),
).values(unit_balance=m.ProjectBudget.unit_balance - bindparam("cost")).returning(
    m.ProjectBudget.unit_balance)


class Meter:
    """Charges one run every second from its first cell on, and stops it at a limit."""

    def __init__(self, runtime: Runtime, operation_id: str, project: project_pb2.Project,
                 spec: Spec, subject_id: str) -> None:
        self.runtime, self.operation_id, self.spec = runtime, operation_id, spec
        self.project_id, self.subject_id = project.id, subject_id
        limits = project.limits
        self.per_execution = limits.max_units_per_execution.value \
            if limits.HasField("max_units_per_execution") else None
        self.per_hour = limits.max_units_per_hour.value \
            if limits.HasField("max_units_per_hour") else None
        self.started: float | None = None
        self.started_at = datetime.now(UTC)
        self.seconds = 0
        self._recorded = False  # whether the usage record exists yet
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The run's first cell began: charging starts now."""
        if self.started is None:
            self.started = time.monotonic()
            self.started_at = datetime.now(UTC)
            self._ticker = self.runtime.spawn(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            assert self.started is not None
            # Shielded: a charge is never cut between the usage record and the balance.
            await asyncio.shield(self.charge(math.ceil(time.monotonic() - self.started)))

    async def charge(self, seconds: int, *, finished: bool = False,
                     session: AsyncSession | None = None) -> None:
        """Bring the recorded usage to ``seconds`` and charge the difference (in
        ``session`` when given, else in a transaction of its own); stop the run when a
        limit is passed."""
        async with self._lock:
            total = max(seconds, self.seconds)
            if total == self.seconds and not finished:
                return
            if session is None:
                async with self.runtime.db.session() as own:
                    balance, hour = await self._record(own, total, finished)
            else:
                balance, hour = await self._record(session, total, finished)
            self.seconds, self._recorded = total, True
        if not finished:
            self._enforce(balance, hour)

    async def _record(self, session: AsyncSession, total: int, finished: bool
                      ) -> tuple[int | None, int]:
        """Write the usage record and charge the balance; returns (balance, last hour)."""
        cost = units_for(self.spec, total) - units_for(self.spec, self.seconds)
        values = {"seconds": total, "units": units_for(self.spec, total),
                  "updated_at": datetime.now(UTC), "finished": finished}
        connection = await session.connection()  # plain statements: no ORM bookkeeping
        if self._recorded:
            await connection.execute(_UPDATE_USAGE, {"id": self.operation_id, **values})
        else:
            await connection.execute(_INSERT_USAGE, {
                "operation_id": self.operation_id, "project_id": self.project_id,
                "subject_id": self.subject_id, "spec": self.spec.name,
                "started_at": self.started_at, **values})
        balance = None
        if cost:
            balance = await connection.scalar(_CHARGE, {"project": self.project_id,
                                                        "cost": cost})
        hour = await spent_last_hour(session, self.project_id) \
            if self.per_hour is not None and not finished else 0
        return balance, hour

    def _enforce(self, balance: int | None, hour: int) -> None:
        reason = None
        if balance is not None and balance <= 0:
            reason = "insufficient balance: the project's unit balance reached 0"
        elif self.per_execution is not None and \
                units_for(self.spec, self.seconds) > self.per_execution:
            reason = f"the run passed max_units_per_execution ({self.per_execution} units)"
        elif self.per_hour is not None and hour > self.per_hour:
            reason = f"the project passed max_units_per_hour ({self.per_hour} units)"
        if reason is not None:
            self.runtime.engine.cancel(self.operation_id, reason)

    async def finish(self, duration: float | None, session: AsyncSession | None = None) -> None:
        """Stop charging; the last charge covers the run's measured duration."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self.started is None:
            return
        seconds = math.ceil(duration) if duration is not None else \
            math.ceil(time.monotonic() - self.started)
        await self.charge(max(seconds, self.seconds), finished=True, session=session)


@rpc(SERVICE, "GetUnitBalance")
async def get_unit_balance(ctx: CallContext, request: ps.GetUnitBalanceRequest
                           ) -> ps.GetUnitBalanceResponse:
    async with ctx.runtime.db.session() as session:
        await projects.load(session, request.project_id)
        balance = await balance_of(session, request.project_id)
    response = ps.GetUnitBalanceResponse()
    if balance is not None:
        response.unit_balance.value = balance
    return response


async def budget_row(session: AsyncSession, project_id: str) -> m.ProjectBudget:
    row = await session.get(m.ProjectBudget, project_id)
    if row is None:
        row = m.ProjectBudget(project_id=project_id)
        session.add(row)
    return row


@rpc(SERVICE, "SetUnitBalance")
async def set_unit_balance(ctx: CallContext, request: ps.SetUnitBalanceRequest
                           ) -> operation_pb2.Operation:
    """An unset ``unit_balance`` makes the project's balance unlimited."""
    if request.HasField("unit_balance") and request.unit_balance.value < 0:
        raise invalid_argument("unit_balance", "must not be negative")
    async with ctx.runtime.db.session() as session:
        await projects.load(session, request.project_id)
        row = await budget_row(session, request.project_id)
        row.unit_balance = request.unit_balance.value \
            if request.HasField("unit_balance") else None
        return operations.completed(
            session, ctx, "Set unit balance", "project", request.project_id,
            ps.SetUnitBalanceMetadata(project_id=request.project_id), empty_pb2.Empty())


@rpc("opensphere.v1.UsageService", "List")
async def list_usage(ctx: CallContext, request: us.ListUsageRequest) -> us.ListUsageResponse:
    where = [m.Usage.project_id == request.project_id]
    if request.HasField("since"):
        where.append(m.Usage.started_at >= request.since.ToDatetime(tzinfo=UTC))
    after = paging.decode_token(request.page_token)
    page_query = select(m.Usage).where(*where)
    if after is not None:
        page_query = page_query.where(m.Usage.operation_id < after)
    size = paging.page_size(request.page_size)
    async with ctx.runtime.db.session() as session:
        await projects.load(session, request.project_id)
        rows = (await session.scalars(page_query.order_by(m.Usage.operation_id.desc())
                                      .limit(size + 1))).all()
        everything = (await session.execute(select(
            m.Usage.started_at, m.Usage.spec, m.Usage.seconds, m.Usage.units).where(*where))).all()
    page, token = paging.split_page(rows, request.page_size, lambda r: r.operation_id)
    response = us.ListUsageResponse(next_page_token=token)
    for r in page:
        record = response.records.add(operation_id=r.operation_id, subject_id=r.subject_id,
                                      spec=r.spec, seconds=r.seconds, units=r.units,
                                      finished=r.finished)
        record.started_at.FromDatetime(r.started_at)
    for target, key in ((response.by_day, lambda r: r.started_at.date().isoformat()),
                        (response.by_spec, lambda r: r.spec)):
        totals: dict[str, list[int]] = {}
        for r in everything:
            total = totals.setdefault(key(r), [0, 0])
            total[0] += r.seconds
            total[1] += r.units
        target.extend(us.UsageTotal(key=k, seconds=s, units=u)
                      for k, (s, u) in sorted(totals.items()))
    return response

