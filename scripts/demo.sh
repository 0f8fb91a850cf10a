#!/usr/bin/env bash
# The README demo: start RunsService (SQLite) and ExecutionService, run the `clock` example agent against the real
# mcp-server-time with its steps streamed live, then show the run as RunsService stored it.
# Uses the offline TestModel unless GEMINI_API_KEY is set (then the agent's own Gemini model).
# Authentication is off in the demo (local development); see docs/security.md to switch it on.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_BIN=.venv/bin
DEMO_DIR=${AGENTRUN_DEMO_DIR:-data/demo}
TASK=${AGENTRUN_DEMO_TASK:-"What time is it in Paris right now?"}
mkdir -p "$DEMO_DIR"

free_port() { "$VENV_BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RUNS_PORT=${AGENTRUN_DEMO_RUNS_PORT:-$(free_port)}
EXEC_PORT=${AGENTRUN_DEMO_EXECUTION_PORT:-$(free_port)}
WEB_PORT=${AGENTRUN_DEMO_WEB_PORT:-$(free_port)}
WEB_URL="http://127.0.0.1:$WEB_PORT"
export AGENTRUN_RUNS_TARGET="127.0.0.1:$RUNS_PORT" AGENTRUN_EXECUTION_TARGET="127.0.0.1:$EXEC_PORT"
# Local development only: every caller is the local admin. Production: AGENTRUN_AUTH=tokens (the default) with
# AGENTRUN_TOKENS_FILE, AGENTRUN_RUNS_SERVICE_TOKEN and TLS; see docs/security.md.
export AGENTRUN_AUTH=off
echo "==> authentication is OFF for this demo (AGENTRUN_AUTH=off, local development)."
echo "    To turn it on: AGENTRUN_AUTH=tokens + AGENTRUN_TOKENS_FILE (python -m agentrun_core.auth generate USER); see docs/security.md"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "==> starting RunsService on $AGENTRUN_RUNS_TARGET (SQLite: $DEMO_DIR/runs.db; log: $DEMO_DIR/runs-service.log)"
"$VENV_BIN/agentrun-runs-service" --migrate --address "$AGENTRUN_RUNS_TARGET" --data-dir "$DEMO_DIR" \
  --log-format text >"$DEMO_DIR/runs-service.log" 2>&1 &
pids+=($!)
echo "==> starting ExecutionService on $AGENTRUN_EXECUTION_TARGET (agents: examples/agents; MCP: examples/mcp.json)"
"$VENV_BIN/agentrun-execution-service" --address "$AGENTRUN_EXECUTION_TARGET" --runs-service "$AGENTRUN_RUNS_TARGET" \
  --agents-dir examples/agents --mcp-config examples/mcp.json --data-dir "$DEMO_DIR" \
  --log-format text >"$DEMO_DIR/execution-service.log" 2>&1 &
pids+=($!)

echo "==> starting the web console on $WEB_URL (log: $DEMO_DIR/web.log)"
"$VENV_BIN/agentrun" web --address "127.0.0.1:$WEB_PORT" >"$DEMO_DIR/web.log" 2>&1 &
web_pid=$!
pids+=("$web_pid")

# GET a console page; prints the HTTP status (000 when the console does not answer).
http_status() {
  "$VENV_BIN/python" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as page:
        print(page.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print("000")
PY
}

for target in "$AGENTRUN_RUNS_TARGET" "$AGENTRUN_EXECUTION_TARGET"; do
  ok=""
  for _ in $(seq 1 100); do
    if "$VENV_BIN/python" -m agentrun_cli.healthcheck "$target" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  if [ -z "$ok" ]; then
    echo "service at $target did not become healthy; its log:" >&2
    tail -n 30 "$DEMO_DIR"/*.log >&2
    exit 1
  fi
done

ok=""
for _ in $(seq 1 100); do
  if [ "$(http_status "$WEB_URL/healthz")" = 200 ]; then ok=1; break; fi
  sleep 0.2
done
if [ -z "$ok" ]; then
  echo "the web console did not start; its log:" >&2
  tail -n 30 "$DEMO_DIR/web.log" >&2
  exit 1
fi
echo "==> web console: $WEB_URL/ (runs, run details with a waterfall, live runs, starting runs, stats)"

model_flag=(--model test)
if [ -n "${GEMINI_API_KEY:-}" ]; then
  model_flag=()
  echo "==> GEMINI_API_KEY is set: running with the agent's Gemini model"
else
  echo "==> GEMINI_API_KEY is not set: running with the offline TestModel (set it to use Gemini)."
  echo "    TestModel does not read the task: it calls each of the agent's tools once with arguments made up from"
  echo "    the tool's schema, then answers with a summary of the results."
fi

# The run id is ours (a UUIDv7, as ExecuteAgent accepts for idempotent retries), so the stored run is found by id.
run_id=$("$VENV_BIN/python" -c 'from agentrun_core.ids import new_run_id; print(new_run_id())')
echo "==> agentrun run clock \"$TASK\" ${model_flag[*]} --run-id $run_id"
"$VENV_BIN/agentrun" run clock "$TASK" "${model_flag[@]}" --label source=demo --run-id "$run_id"

echo
echo "==> agentrun runs show $run_id   (as stored by RunsService)"
"$VENV_BIN/agentrun" runs show "$run_id"
echo
echo "==> agentrun runs stats"
"$VENV_BIN/agentrun" runs stats
echo
echo "==> the run in the web console: $WEB_URL/runs/$run_id"
status=$(http_status "$WEB_URL/runs/$run_id")
if [ "$status" != 200 ]; then
  echo "the web console answered HTTP $status for the run's page; its log:" >&2
  tail -n 30 "$DEMO_DIR/web.log" >&2
  exit 1
fi
echo "web console served the run page (HTTP $status)"
echo
echo "Done. Stored runs are in $DEMO_DIR/runs.db. Start the services and the web console yourself with:"
echo "  .venv/bin/agentrun serve all      # web console at http://127.0.0.1:8080/"
# In a terminal, the console stays up so the address above can be opened (AGENTRUN_DEMO_KEEP=0: end at once; =1: stay
# even without a terminal). The demo then waits for the console itself, never for whichever process ends first: a
# service that stops leaves the console up, saying on its pages that the service is unavailable.
keep=${AGENTRUN_DEMO_KEEP:-auto}
if [ "$keep" = 1 ] || { [ "$keep" = auto ] && [ -t 0 ] && [ -t 1 ]; }; then
  echo
  echo "==> the services and the web console keep running: open $WEB_URL/runs/$run_id"
  echo "    press Ctrl-C to stop them"
  trap 'echo; echo "==> stopping"; exit 0' INT TERM
  wait "$web_pid" || true
  echo "the web console stopped; its log: $DEMO_DIR/web.log" >&2
fi
