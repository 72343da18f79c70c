"""A running kernel and the engine's one connection to it.

Runs go to the engine's helper inside the kernel on a socket of their own (see
``inkernel``); everything else is an execute request. Two reader tasks route every
shell reply and IOPub message to the request it answers, so waiting costs nothing and
nothing polls. They read the sockets directly and decode only what the engine uses:
the signature is checked as jupyter_client checks it, but no date in the headers is
parsed (jupyter_client's way costs more than a small cell). The process's exit is
watched through a pidfd: a kernel that dies fails its waiting requests at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from hmac import compare_digest
from pathlib import Path
from typing import Any

import zmq
from jupyter_client import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from opensphere.engine.launcher import KernelLauncher
from opensphere.engine.specs import Spec

log = logging.getLogger(__name__)

HELPER = "_opensphere_engine"
MARKER = "opensphere_cell"  # the IOPub message the helper sends as each cell of a run starts
DONE = "opensphere_done"  # the IOPub message that ends a run, with its outcome
READY_TIMEOUT = 120.0
_INSTALL = (
    f"exec(compile({Path(__file__).with_name('inkernel.py').read_text()!r}, '<opensphere>',"
    f" 'exec'), __import__('sys').modules.setdefault({HELPER!r},"
    f" __import__('types').ModuleType({HELPER!r})).__dict__)"
)
# Right after an error the kernel drops requests that were already on their way.
_ABORTED_RETRIES = 3

Message = dict[str, Any]
OutputHandler = Callable[[Message], None]


class KernelDied(RuntimeError):
    """The kernel process exited, or its connection broke, while a request waited."""


class KernelError(RuntimeError):
    """Code the engine itself sent to the kernel failed there."""


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[Message]
    on_output: OutputHandler | None
    reply: Message | None = None
    idle: bool = False


class Kernel:
    """A kernel with the engine's helper module installed, ready to execute."""

    def __init__(
        self, launcher: KernelLauncher, manager: AsyncKernelManager, spec: Spec, cwd: Path
    ) -> None:
        self.spec = spec
        self.cwd = cwd
        self.exit_code: int | None = None
        self._launcher = launcher
        self._manager = manager
        self._client = manager.client()
        self._pending: dict[str, _Pending] = {}
        self._exited = False
        self._abandoned = False
        self._pidfd: int | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._progress = Path(manager.connection_file).with_suffix(".progress")
        # Runs go to the helper on a socket of its own (see inkernel), in the kernel's
        # private folder like the kernel's own sockets, and signed like their messages.
        self._runs_address = f"ipc://{Path(manager.connection_file).with_suffix('.runs')}"
        self._runs: zmq.Socket[bytes] | None = None

    @classmethod
    async def start(
        cls, launcher: KernelLauncher, *, cwd: Path, env: dict[str, str], spec: Spec
    ) -> Kernel:
        manager = await launcher.launch(cwd=cwd, env=env, spec=spec)
        kernel = cls(launcher, manager, spec, cwd)
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await kernel._connect()
        except BaseException:
            await kernel.shutdown()
            raise
        return kernel

    @property
    def usable(self) -> bool:
        return not self._exited and not self._abandoned

    def abandon(self) -> None:
        """Mark the kernel as beyond saving (stuck after an interrupt): its owner replaces it."""
        self._abandoned = True

    def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        user_expressions: dict[str, str] | None = None,
        on_output: OutputHandler | None = None,
    ) -> asyncio.Future[Message]:
        """Send an execute request; the future gets the reply once the kernel is idle again."""
        msg_id = self._client.execute(
            code,
            silent=silent,
            store_history=not silent,
            user_expressions=user_expressions or {},
            allow_stdin=False,
        )
        return self._track(msg_id, on_output)

    def run(self, request: dict[str, Any], on_output: OutputHandler) -> asyncio.Future[Message]:
        """Send a run to the helper (``inkernel.run``'s arguments); the future gets its
        outcome once the kernel published it, after every output of the run."""
        msg_id = uuid.uuid4().hex
        payload = json.dumps({**request, "id": msg_id}).encode()
        future = self._track(msg_id, on_output)
        if not future.done():  # else the kernel is dead, and the future says so
            assert self._runs is not None, "a Kernel is connected once started"
            self._runs.send_multipart([self._client.session.sign([payload]), payload])
        return future

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a helper call, evaluated without touching the history."""
        for _ in range(_ABORTED_RETRIES):
            reply = await self.execute("", silent=True, user_expressions={"value": expression})
            if reply["status"] != "aborted":
                break
        return expression_value(reply, "value")

    def running_cell(self) -> int | None:
        """The cell the helper last started (see ``inkernel.run``); None before any."""
        try:
            index = int(self._progress.read_bytes() or b"-1")
        except (OSError, ValueError):
            return None
        return index if index >= 0 else None

    async def interrupt(self) -> None:
        await self._manager.interrupt_kernel()

    async def shutdown(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._runs is not None:
            self._runs.close(linger=0)
        self._client.stop_channels()
        try:
            await self._launcher.stop(self._manager)
        finally:
            self._on_exit()
            self._progress.unlink(missing_ok=True)

    async def _connect(self) -> None:
        self._watch_exit()
        self._client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        self._readers = [
            asyncio.create_task(self._read(self._client.shell_channel.socket, self._on_reply)),
            asyncio.create_task(self._read(self._client.iopub_channel.socket, self._on_iopub)),
        ]
        # IOPub drops messages until its subscription lands, so the first request
        # whose idle status arrives is the proof that the connection is complete.
        while True:
            msg_id = self._client.kernel_info()
            info = self._track(msg_id, None)
            done, _ = await asyncio.wait({info}, timeout=1.0)
            if done:
                info.result()
                break
            self._pending.pop(msg_id, None)
        helper = f"__import__({HELPER!r})"
        reply = await self.execute(
            f"{_INSTALL}\n{helper}.track({str(self._progress)!r})\n"
            f"{helper}.listen({self._runs_address!r})", silent=True)
        if reply["status"] != "ok":
            raise KernelError(f"installing the helper failed: {reply['ename']}: {reply['evalue']}")
        self._runs = zmq.Context.instance().socket(zmq.PUSH)
        self._runs.connect(self._runs_address)

    def _track(self, msg_id: str, on_output: OutputHandler | None) -> asyncio.Future[Message]:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        if self._exited:
            future.set_exception(KernelDied(self._death()))
        else:
            self._pending[msg_id] = _Pending(future, on_output)
        return future

    async def _read(self, socket: Any, handle: Callable[[Message, _Pending], None]) -> None:
        try:
            while True:
                message = self._decode(await socket.recv_multipart())
                msg_id = message["parent_header"].get("msg_id")
                pending = self._pending.get(msg_id)
                if pending is not None:
                    handle(message, pending)
                    if pending.reply is not None and pending.idle:
                        del self._pending[msg_id]
                        if not pending.future.done():
                            pending.future.set_result(pending.reply)
        except Exception:
            log.exception("lost the connection to a kernel")
            self.abandon()
            self._fail_pending(KernelDied("lost the connection to the kernel"))

    def _decode(self, frames: list[bytes]) -> Message:
        """A kernel message from its wire frames: header, parent header and content."""
        session = self._client.session
        _, parts = session.feed_identities(frames)
        if not compare_digest(parts[0], session.sign(parts[1:5])):
            raise ValueError("a kernel message with an invalid signature")
        header = json.loads(parts[1])
        return {"header": header, "msg_type": header["msg_type"],
                "parent_header": json.loads(parts[2]), "content": json.loads(parts[4])}

    @staticmethod
    def _on_reply(message: Message, pending: _Pending) -> None:
        pending.reply = message["content"]

    @staticmethod
    def _on_iopub(message: Message, pending: _Pending) -> None:
        if message["msg_type"] == "status":
            pending.idle = pending.idle or message["content"]["execution_state"] == "idle"
        elif message["msg_type"] == DONE:
            pending.reply, pending.idle = json.loads(message["content"]["outcome"]), True
        elif pending.on_output is not None:
            try:
                pending.on_output(message)
            except Exception:
                log.exception("could not record a %s message", message["msg_type"])

    def _watch_exit(self) -> None:
        provisioner = self._manager.provisioner
        if not isinstance(provisioner, LocalProvisioner) or provisioner.pid is None:
            raise TypeError("a Kernel needs a local process to watch")
        try:
            self._pidfd = os.pidfd_open(provisioner.pid)
        except ProcessLookupError:
            self._on_exit()
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._exited:
            return
        self._exited = True
        provisioner = self._manager.provisioner
        if isinstance(provisioner, LocalProvisioner) and provisioner.process is not None:
            self.exit_code = provisioner.process.poll()
        self._fail_pending(KernelDied(self._death()))

    def _fail_pending(self, error: KernelDied) -> None:
        pending, self._pending = self._pending, {}
        for request in pending.values():
            if not request.future.done():
                request.future.set_exception(error)
                # Whoever sent it may have stopped waiting (a cancelled start, say).
                request.future.exception()

    def _death(self) -> str:
        code = "" if self.exit_code is None else f" (exit code {self.exit_code})"
        return f"the kernel died{code}"


def expression_value(reply: Message, key: str) -> Any:
    """Decode what a helper call in ``user_expressions`` returned."""
    if reply["status"] != "ok":
        raise KernelError(f"{reply.get('ename')}: {reply.get('evalue')}")
    result = reply["user_expressions"][key]
    if result["status"] != "ok":
        raise KernelError(f"{result['ename']}: {result['evalue']}")
    return json.loads(result["data"]["text/plain"])
