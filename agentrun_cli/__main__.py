"""`python -m agentrun_cli` is the same as the `agentrun` console script."""

from agentrun_cli.main import app

app(prog_name="agentrun")
