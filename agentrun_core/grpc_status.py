"""Rich gRPC errors: a canonical code, a message for a person, and google.rpc details a client can switch on.

Every error carries a google.rpc.ErrorInfo (reason such as RUN_NOT_FOUND, domain "agentrun.dev") and, for bad
input, a google.rpc.BadRequest naming the field. Clients that ignore details still get code + message.

Sizes are bounded whatever the message holds: the message at MAX_MESSAGE_BYTES (UTF-8), a field name or metadata
value at MAX_DETAIL_BYTES, so the trailers (grpc-message percent-encoded, grpc-status-details-bin in base64) stay
far below a client's 8 KiB metadata limit and the caller sees the real code. Values taken from a request are cut
where the message is written (agentrun_core.echo); this is the last resort.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentrun_core.echo import clipped

ERROR_DOMAIN = "agentrun.dev"
MAX_MESSAGE_BYTES = 1024
MAX_DETAIL_BYTES = 256


def rich_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    field: str | None = None,
    metadata: dict[str, str] | None = None,
    retry_after_s: float | None = None,
) -> grpc.Status:
    message = clipped(message, MAX_MESSAGE_BYTES)
    details: list[any_pb2.Any] = []
    bounded_metadata = {clipped(k, MAX_DETAIL_BYTES): clipped(v, MAX_DETAIL_BYTES) for k, v in (metadata or {}).items()}
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=bounded_metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if field is not None:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=clipped(field, MAX_DETAIL_BYTES), description=message)
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    if retry_after_s is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(int(retry_after_s * 1e9))
        packed = any_pb2.Any()
        packed.Pack(retry)
        details.append(packed)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    return rpc_status.to_status(status)


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    field: str | None = None,
    metadata: dict[str, str] | None = None,
    retry_after_s: float | None = None,
) -> NoReturn:
    await context.abort_with_status(
        rich_status(code, message, reason=reason, field=field, metadata=metadata, retry_after_s=retry_after_s)
    )
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def error_reason(error: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason of a received error, if the server sent one."""
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None
