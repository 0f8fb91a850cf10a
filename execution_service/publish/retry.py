"""What the sender does with a failed RecordRun call, and how long it waits before the next attempt."""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits initial * multiplier**n, capped, then scaled by a random
    factor in [1 - jitter, 1] so that records failing together do not retry together."""

    initial_backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial_backoff_s <= 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need multiplier >= 1 and 0 <= jitter <= 1")

    def delay(self, failed_attempts: int, server_hint_s: float | None = None) -> float:
        """Seconds to wait after `failed_attempts` failures (0 for the first). A server's RetryInfo is a floor."""
        exponent = min(failed_attempts, 64)
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**exponent)
        delay = base * (1 - self.jitter * random.random())
        if server_hint_s is not None:
            delay = max(delay, min(server_hint_s, self.max_backoff_s))
        return delay


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
