"""`python -m execution_service`: the `agentrun-execution-service` command (defined with `agentrun serve`, in
agentrun_cli.services)."""

from agentrun_cli.services.execution import main

if __name__ == "__main__":
    main()
