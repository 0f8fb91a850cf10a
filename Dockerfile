# One image for both services: `agentrun-runs-service` (default) and `agentrun-execution-service`.
#   docker build -t agentrun .
#   docker run --rm -p 50051:50051 agentrun                                  # RunsService (SQLite in /data)
#   docker run --rm -p 50052:50052 agentrun agentrun-execution-service      # ExecutionService
# docker-compose.yml wires both to PostgreSQL and Jaeger.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git: for the mcp-server-git tool server the example agents use.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin agentrun \
    && mkdir -p /data \
    && chown agentrun:agentrun /data

WORKDIR /app

# Dependencies first, pinned by constraints.txt, in a layer that only changes with pyproject.toml or the pins.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself. Installed in place (editable) because RunsService finds its Alembic migrations next to
# the package (/app/migrations, /app/alembic.ini).
COPY . .
RUN pip install --no-deps -c constraints.txt -e . \
    && python -c "import agentrun_cli.healthcheck, runs_service.server, execution_service.server"

ENV AGENTRUN_DATA_DIR=/data \
    AGENTRUN_RUNS_ADDRESS=0.0.0.0:50051 \
    AGENTRUN_EXECUTION_ADDRESS=0.0.0.0:50052 \
    AGENTRUN_AGENTS_DIR=/app/examples/agents \
    AGENTRUN_MCP_CONFIG=/app/examples/mcp.json \
    AGENTRUN_LOG_FORMAT=json \
    AGENTRUN_HEALTH_ADDRESS=127.0.0.1:50051

USER agentrun
VOLUME ["/data"]
EXPOSE 50051 50052

# Set AGENTRUN_HEALTH_ADDRESS=127.0.0.1:50052 when the container runs ExecutionService.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -m agentrun_cli.healthcheck "$AGENTRUN_HEALTH_ADDRESS"

CMD ["agentrun-runs-service"]
