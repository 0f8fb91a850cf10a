"""The `agentrun` command line: run agents with a live view and query the runs they left behind."""
