"""`python -m runs_service`: the `agentrun-runs-service` command (defined with `agentrun serve`, in
agentrun_cli.services)."""

from agentrun_cli.services.runs import main

if __name__ == "__main__":
    main()
