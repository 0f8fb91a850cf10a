"""The agentrun web console (`agentrun web`): runs, run details with a waterfall, live runs, starting runs and stats,
as server-rendered pages. A client of both services through the stubs in gen/; it holds no data of its own."""

from agentrun_core.grpc_process import prepare_grpc_environment

prepare_grpc_environment()
