"""A small synchronous gRPC client over our own descriptors, used by the CLI and benchmarks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2  # noqa: F401  (to_dict reads the details errors carry)

from opensphere import contract
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.settings import Settings


class ClientError(Exception):
    """A failed call, rendered as one line: ``CODE: message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


@dataclass
class Connection:
    address: str
    token: str
    ca_file: Path | None = None
    # The Authorization scheme: "Bearer" for tokens, "Api-Key" for service-account keys.
    scheme: str = "Bearer"

    @classmethod
    def resolve(cls, address: str | None, token_file: Path | None,
                ca_file: Path | None = None) -> Connection:
        """Flags first, then ``OPENSPHERE_ADDRESS`` / ``OPENSPHERE_TOKEN`` /
        ``OPENSPHERE_API_KEY``, then the data folder."""
        settings = Settings.from_env()
        address = address or os.environ.get("OPENSPHERE_ADDRESS") or \
            f"{settings.host}:{settings.grpc_port}"
        scheme = "Bearer"
        if token_file is not None:
            token = token_file.read_text().strip()
        elif os.environ.get("OPENSPHERE_TOKEN"):
            token = os.environ["OPENSPHERE_TOKEN"].strip()
        elif os.environ.get("OPENSPHERE_API_KEY"):
            token, scheme = os.environ["OPENSPHERE_API_KEY"].strip(), "Api-Key"
        else:
            path = settings.data_dir / "admin.token"
            if not path.exists():
                raise ClientError(grpc.StatusCode.UNAUTHENTICATED,
                                  f"no token: pass --token-file, set OPENSPHERE_TOKEN or "
                                  f"OPENSPHERE_API_KEY, or create {path} by starting the "
                                  f"server once")
            token = path.read_text().strip()
        return cls(address=address, token=token, ca_file=ca_file, scheme=scheme)


class Client:
    """Calls any method of the contract by its full name, e.g. ``ProjectService.Get``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        if connection.ca_file is not None:
            creds = grpc.ssl_channel_credentials(connection.ca_file.read_bytes())
            self.channel = grpc.secure_channel(connection.address, creds)
        else:
            self.channel = grpc.insecure_channel(connection.address)
        self._methods = {f"{m.containing_service.name}.{m.name}": m for m in contract.methods()}

    def request(self, method: str, data: dict[str, Any] | None = None) -> Message:
        """``method``'s request message from its proto3 JSON form."""
        message = contract.message_class(self._methods[method].input_type)()
        json_format.ParseDict(data or {}, message)
        return message

    def _stub(self, method: str, shape: str) -> Any:
        """A callable for ``method`` from the channel's ``shape`` factory (``unary_unary``...)."""
        descriptor = self._methods[method]
        return getattr(self.channel, shape)(
            contract.grpc_path(descriptor),
            request_serializer=contract.message_class(descriptor.input_type).SerializeToString,
            response_deserializer=contract.message_class(descriptor.output_type).FromString,
        )

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"{self.connection.scheme} {self.connection.token}"),)

    def call(self, method: str, request: dict[str, Any] | None = None,
             timeout: float = 60.0) -> Message:
        try:
            return self._stub(method, "unary_unary")(
                self.request(method, request), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise ClientError(err.code(), err.details() or "") from None

    def stream_unary(self, method: str, requests: Iterable[Message],
                     timeout: float | None = None) -> Message:
        """A client-streaming call: ``requests`` is read lazily, as gRPC sends them."""
        try:
            return self._stub(method, "stream_unary")(
                iter(requests), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise ClientError(err.code(), err.details() or "") from None

    def unary_stream(self, method: str, request: dict[str, Any] | None = None,
                     timeout: float | None = None) -> Iterator[Message]:
        """A server-streaming call: its messages as they arrive."""
        try:
            yield from self._stub(method, "unary_stream")(
                self.request(method, request), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise ClientError(err.code(), err.details() or "") from None

    def wait(self, operation: operation_pb2.Operation, timeout: float | None = None,
             poll: float = 0.2,
             on_update: Callable[[operation_pb2.Operation], object] | None = None
             ) -> operation_pb2.Operation:
        """Poll ``OperationService.Get`` until the operation is done; ``on_update`` sees
        every state read (to show progress)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not operation.done:
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"operation {operation.id} is still running")
            time.sleep(poll)
            operation = self.call("OperationService.Get", {"operationId": operation.id})
            if on_update is not None:
                on_update(operation)  # type: ignore[arg-type]
        return operation  # type: ignore[return-value]

    def close(self) -> None:
        self.channel.close()


def to_dict(message: Message) -> dict[str, Any]:
    """The proto3 JSON form, as the REST API would return it."""
    return json_format.MessageToDict(message)
