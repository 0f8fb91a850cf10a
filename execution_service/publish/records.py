"""The bytes the outbox stores: a serialized agentrun.runs.v1.RecordRunRequest per record."""

from __future__ import annotations

from agentrun.runs.v1 import runs_service_pb2

from agentrun_core.domain import Run
from agentrun_core.proto_convert import run_to_pb


def encode_run(run: Run) -> bytes:
    """The RecordRunRequest for `run`, serialized (what the outbox stores and the sender sends unchanged)."""
    return runs_service_pb2.RecordRunRequest(run=run_to_pb(run)).SerializeToString()


def decode_request(payload: bytes) -> runs_service_pb2.RecordRunRequest:
    """Parses stored bytes; raises google.protobuf.message.DecodeError when they are not a RecordRunRequest."""
    return runs_service_pb2.RecordRunRequest.FromString(payload)
