"""Starting the services: one definition behind `agentrun-runs-service`, `agentrun-execution-service` and
`agentrun serve runs|execution|all` (flags in `options`, settings and start-up in `components`, the process and its
exit codes in `launch`)."""
