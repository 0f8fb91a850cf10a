"""Benchmarks (they print figures; they are not tests)."""

from agentrun_core.grpc_process import prepare_grpc_environment

# Before any benchmark imports grpc, as the services' own packages do (uvloop + gRPC fork handlers: see there).
prepare_grpc_environment()
