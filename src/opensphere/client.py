"""A small synchronous gRPC client over our own descriptors, used by the CLI and benchmarks."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

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

    @classmethod
    def resolve(cls, address: str | None, token_file: Path | None,
                ca_file: Path | None = None) -> Connection:
        """Flags first, then ``OPENSPHERE_ADDRESS`` / ``OPENSPHERE_TOKEN``, then the data folder."""
        settings = Settings.from_env()
        address = address or os.environ.get("OPENSPHERE_ADDRESS") or \
            f"{settings.host}:{settings.grpc_port}"
        if token_file is not None:
            token = token_file.read_text().strip()
        elif os.environ.get("OPENSPHERE_TOKEN"):
            token = os.environ["OPENSPHERE_TOKEN"].strip()
        else:
            path = settings.data_dir / "admin.token"
            if not path.exists():
                raise ClientError(grpc.StatusCode.UNAUTHENTICATED,
                                  f"no token: pass --token-file, set OPENSPHERE_TOKEN or "
                                  f"create {path} by starting the server once")
            token = path.read_text().strip()
        return cls(address=address, token=token, ca_file=ca_file)


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

    def call(self, method: str, request: dict[str, Any] | None = None,
             timeout: float = 60.0) -> Message:
        descriptor = self._methods[method]
        request_msg = contract.message_class(descriptor.input_type)()
        json_format.ParseDict(request or {}, request_msg)
        response_cls = contract.message_class(descriptor.output_type)
        stub = self.channel.unary_unary(
            contract.grpc_path(descriptor),
            request_serializer=type(request_msg).SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        try:
            return stub(request_msg, timeout=timeout,
                        metadata=(("authorization", f"Bearer {self.connection.token}"),))
        except grpc.RpcError as err:
            raise ClientError(err.code(), err.details() or "") from None

    def wait(self, operation: operation_pb2.Operation, timeout: float | None = None,
             poll: float = 0.2) -> operation_pb2.Operation:
        """Poll ``OperationService.Get`` until the operation is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not operation.done:
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"operation {operation.id} is still running")
            time.sleep(poll)
            operation = self.call("OperationService.Get", {"operationId": operation.id})
        return operation  # type: ignore[return-value]

    def close(self) -> None:
        self.channel.close()


def to_dict(message: Message) -> dict[str, Any]:
    """The proto3 JSON form, as the REST API would return it."""
    return json_format.MessageToDict(message)
