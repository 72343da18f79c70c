"""ExecutionService.Watch: the live events of the notebook runs this process executes.

A run's progress callback publishes into its ``Channel``; each watcher reads its own bounded
queue, and a full queue drops text instead of holding up the run (the next event it keeps
counts what was lost). A channel keeps the run's latest text, so a watcher that joins
after Execute answered still sees how the run began.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator

from opensphere.proto_gen.opensphere.v1 import execution_service_pb2 as es
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.services import operations
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, not_found
from opensphere.services.registry import rpc
from opensphere.store import models as m

SERVICE = "opensphere.v1.ExecutionService"
QUEUE_SIZE = 256  # events a watcher may fall behind before its text is dropped
BACKLOG_CHARS = 256 * 1024  # text a channel keeps for watchers that join late
CHUNK_CHARS = 64 * 1024  # the most text in one event: far below gRPC's 4 MiB message limit


def _marked(event: es.ExecutionEvent, dropped: int) -> es.ExecutionEvent:
    """``event`` saying that ``dropped`` pieces of text before it were left out; events are
    shared by every watcher, so it is a copy."""
    if not dropped:
        return event
    copy = es.ExecutionEvent()
    copy.CopyFrom(event)
    copy.dropped = dropped
    return copy


class Subscriber:
    """One watcher's queue: progress always gets in, text only while there is room."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel  # held: a watched channel outlives a failed run's callback
        self.dropped = 0  # text left out since the last queued event
        self._events: deque[es.ExecutionEvent] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, event: es.ExecutionEvent) -> None:
        if event.text and len(self._events) >= QUEUE_SIZE:
            self.dropped += 1
            return
        self._events.append(_marked(event, self.dropped))
        self.dropped = 0
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[es.ExecutionEvent]:
        """The events until the run ends (or the channel forgets this watcher)."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()


class Channel:
    """One run's events: where it is, its latest text, and who watches it."""

    def __init__(self, hub: Hub, operation_id: str) -> None:
        self.hub, self.operation_id = hub, operation_id
        self.progress = es.ExecutionEvent()
        self._backlog: deque[es.ExecutionEvent] = deque()
        self._backlog_chars = 0
        self._trimmed = 0  # text events pushed out of the backlog
        self._subscribers: set[Subscriber] = set()
        self.closed = False

    def publish(self, index: int, count: int, text: str) -> None:
        """The run's progress, as ``engine.run.ProgressCallback`` reports it."""
        if self.closed:
            return
        if not text:
            self.progress = es.ExecutionEvent(cell_index=index, cell_count=count)
            self._send(self.progress)
        for start in range(0, len(text), CHUNK_CHARS):
            event = es.ExecutionEvent(cell_index=index, cell_count=count,
                                      text=text[start:start + CHUNK_CHARS])
            self._keep(event)
            self._send(event)

    def _keep(self, event: es.ExecutionEvent) -> None:
        self._backlog.append(event)
        self._backlog_chars += len(event.text)
        while self._backlog_chars > BACKLOG_CHARS or len(self._backlog) > QUEUE_SIZE:
            self._backlog_chars -= len(self._backlog.popleft().text)
            self._trimmed += 1

    def _send(self, event: es.ExecutionEvent) -> None:
        for subscriber in self._subscribers:
            subscriber.put(event)

    def subscribe(self) -> Subscriber:
        """A new watcher, given the backlog and then where the run is now."""
        subscriber = Subscriber(self)
        subscriber.dropped = self._trimmed
        for event in self._backlog:
            subscriber.put(event)
        subscriber.put(self.progress)
        self._subscribers.add(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def close(self) -> None:
        """The run ended and its operation is stored: every watcher's stream ends."""
        self.closed = True
        if self.hub.channels.get(self.operation_id) is self:
            del self.hub.channels[self.operation_id]
        for subscriber in self._subscribers:
            subscriber.close()

    def close_after(self, completion: asyncio.Future[object]) -> None:
        """Close when ``completion`` (the work that stores the run's outcome) is over; its
        callback also keeps the channel alive until then."""
        completion.add_done_callback(lambda _: self.close())


class Hub:
    """The channels of this process's runs, by operation id.

    Weakly held: a run's progress callback and its completion keep its channel, so a run
    whose Execute failed before it answered leaves nothing behind.
    """

    def __init__(self) -> None:
        self.channels: weakref.WeakValueDictionary[str, Channel] = \
            weakref.WeakValueDictionary()

    def open(self, operation_id: str) -> Channel:
        channel = self.channels[operation_id] = Channel(self, operation_id)
        return channel

    def subscribe(self, operation_id: str) -> Subscriber | None:
        """A watcher of the run, or None when this process does not run it (now)."""
        channel = self.channels.get(operation_id)
        return None if channel is None or channel.closed else channel.subscribe()


async def _load(ctx: CallContext, operation_id: str) -> m.Operation:
    async with ctx.runtime.db.session() as session:
        row = await session.get(m.Operation, operation_id)
    if row is None:
        raise not_found("operation", operation_id)
    return row


def _final(row: m.Operation, last: es.ExecutionEvent | None, dropped: int
           ) -> es.ExecutionEvent:
    """The stream's last event; where it stood comes from the watched run, else from the
    operation's metadata."""
    event = es.ExecutionEvent(done=True, dropped=dropped, operation=operations.to_proto(row))
    metadata = ps.ProjectExecutionMetadata()
    if last is not None:
        event.cell_index, event.cell_count = last.cell_index, last.cell_count
    elif event.operation.metadata.Unpack(metadata):
        event.cell_index, event.cell_count = metadata.cells_done, metadata.cells_total
    return event


@rpc(SERVICE, "Watch")
async def watch(ctx: CallContext, request: es.WatchExecutionRequest
                ) -> AsyncIterator[es.ExecutionEvent]:
    operation_id = request.operation_id
    # The row first: a run is in the hub from before its operation is stored until after
    # it is finished, so a running row missing from the hub is run elsewhere.
    row = await _load(ctx, operation_id)
    subscriber = None if row.done else ctx.runtime.watch.subscribe(operation_id)
    if subscriber is not None:
        try:
            async for event in subscriber:
                yield event
        finally:
            subscriber.channel.leave(subscriber)
        row = await _load(ctx, operation_id)
    elif not row.done:
        row = await _load(ctx, operation_id)  # it may have ended since
        if not row.done:
            raise ApiError(Code.FAILED_PRECONDITION,
                           f"operation {operation_id} runs elsewhere (in another server "
                           "process, or it is no notebook run): poll OperationService.Get")
    yield _final(row, subscriber.channel.progress if subscriber else None,
                 subscriber.dropped if subscriber else 0)
