"""The `agentrun` command line: run agents with a live view and query the runs they left behind."""

from agentrun_core.grpc_process import prepare_grpc_environment

prepare_grpc_environment()
