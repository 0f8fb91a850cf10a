"""What the sender does with a failed RecordRun call, and how long it waits before the next attempt."""

from __future__ import annotations

import enum
import logging

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from agentrun_core.backoff import Backoff

log = logging.getLogger(__name__)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Disposition(enum.Enum):
    RETRY = "retry"  # transient: back off and send again
    RETRY_CONFIG = "retry_config"  # our credentials or RunsService's policy: back off, send again, log at ERROR
    PARK = "park"  # RunsService will never accept this record as it is: dead-letter it


# UNAUTHENTICATED / PERMISSION_DENIED are retried, not parked. They say nothing about the record: a missing or
# expired token, a wrong service account or a policy not rolled out yet fails every record alike. Parking would
# move the whole backlog into the dead-letter state on a config blip and need a manual requeue; retrying with
# capped backoff costs one call per record per max_backoff_s and delivers everything as soon as the config (or the
# token returned by the call_metadata hook) is fixed. They are logged at ERROR and counted (config_errors).
# UNIMPLEMENTED (RunsService without RecordRun: a deployment mismatch or rollout) is treated the same way.
_DISPOSITIONS: dict[grpc.StatusCode, Disposition] = {
    grpc.StatusCode.UNAVAILABLE: Disposition.RETRY,
    grpc.StatusCode.DEADLINE_EXCEEDED: Disposition.RETRY,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Disposition.RETRY,
    grpc.StatusCode.INTERNAL: Disposition.RETRY,
    grpc.StatusCode.UNKNOWN: Disposition.RETRY,
    grpc.StatusCode.ABORTED: Disposition.RETRY,
    grpc.StatusCode.CANCELLED: Disposition.RETRY,
    grpc.StatusCode.DATA_LOSS: Disposition.RETRY,
    grpc.StatusCode.UNAUTHENTICATED: Disposition.RETRY_CONFIG,
    grpc.StatusCode.PERMISSION_DENIED: Disposition.RETRY_CONFIG,
    grpc.StatusCode.UNIMPLEMENTED: Disposition.RETRY_CONFIG,
    grpc.StatusCode.INVALID_ARGUMENT: Disposition.PARK,
    grpc.StatusCode.FAILED_PRECONDITION: Disposition.PARK,
    grpc.StatusCode.OUT_OF_RANGE: Disposition.PARK,
    grpc.StatusCode.NOT_FOUND: Disposition.PARK,
    grpc.StatusCode.ALREADY_EXISTS: Disposition.PARK,
}


def classify(code: grpc.StatusCode | None) -> Disposition:
    """Unlisted or missing codes are retried: a record is only parked on an explicit, permanent rejection."""
    if code is None:
        return Disposition.RETRY
    return _DISPOSITIONS.get(code, Disposition.RETRY)


# How long a record waits after failed attempts: 0.2 s after the first, doubling up to 30 s, scaled by a random factor
# in [0.5, 1] so that records failing together do not retry together; RunsService's RetryInfo is a floor.
DELIVERY_BACKOFF = Backoff(initial_s=0.2, multiplier=2.0, max_s=30.0, jitter=0.5)


def delivery_delay_s(backoff: Backoff, failed_attempts_before: int, server_hint_s: float | None = None) -> float:
    """Seconds a record waits after its attempt number `failed_attempts_before + 1` failed."""
    return backoff.delay_s(failed_attempts_before + 1, server_hint_s)


def server_retry_delay_s(error: grpc.aio.AioRpcError) -> float | None:
    """The google.rpc.RetryInfo delay the server attached to the error, if any."""
    try:
        trailers = error.trailing_metadata() or ()
        for key, value in trailers:
            if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return info.retry_delay.ToTimedelta().total_seconds()
    except (DecodeError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable status details on a RecordRun error", extra={"error": repr(exc)})
    return None
