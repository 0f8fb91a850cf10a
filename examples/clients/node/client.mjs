// Runs an agent through ExecutionService, prints every streamed step, then reads the stored run from RunsService.
// Usage: node client.mjs [agent] [task]
//   AGENTRUN_EXECUTION_TARGET / AGENTRUN_RUNS_TARGET / AGENTRUN_TOKEN: where and as whom (defaults: the local services)
//   AGENTRUN_MODEL: a model for this run instead of the agent's own (e.g. `test`, which needs no API key)
//   AGENTRUN_PROTOS: the protos/ directory (default: the repository's, two levels above this example)
// Errors print their code, message and google.rpc details (the ErrorInfo reason, the BadRequest field), decoded
// from the grpc-status-details-bin trailer with the google/rpc protos shipped in protos/.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const protos = process.env.AGENTRUN_PROTOS ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../protos");
if (!fs.existsSync(path.join(protos, "agentrun/execution/v1/execution_service.proto"))) {
  console.error(`error: no agentrun protos in ${protos}: set AGENTRUN_PROTOS to the protos/ directory of agentrun`);
  process.exit(2);
}
const definition = protoLoader.loadSync(
  [
    "agentrun/execution/v1/execution_service.proto",
    "agentrun/runs/v1/runs_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
  ],
  { includeDirs: [protos], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);

// The details of a failed call: google.rpc.Status in the grpc-status-details-bin trailer, its details packed Anys.
function errorDetails(error) {
  const raw = error.metadata?.get("grpc-status-details-bin")?.[0];
  if (!raw) return [];
  const status = definition["google.rpc.Status"].deserialize(raw);
  return status.details.flatMap((detail) => {
    const type = detail.type_url.slice(detail.type_url.lastIndexOf("/") + 1);
    return definition[type]?.deserialize ? [{ type, ...definition[type].deserialize(detail.value) }] : [];
  });
}

function describe(error) {
  const parts = [`error: ${grpc.status[error.code]}: ${error.details}`];
  for (const detail of errorDetails(error)) {
    if (detail.type === "google.rpc.ErrorInfo") parts.push(`reason: ${detail.reason} (${detail.domain})`);
    if (detail.type === "google.rpc.BadRequest") {
      for (const violation of detail.field_violations) parts.push(`field: ${violation.field}`);
    }
    if (detail.type === "google.rpc.RetryInfo") parts.push(`retry after: ${detail.retry_delay.seconds}s`);
  }
  return parts.join("\n  ");
}
const api = grpc.loadPackageDefinition(definition).agentrun;
const credentials = grpc.credentials.createInsecure();
const metadata = new grpc.Metadata();
if (process.env.AGENTRUN_TOKEN) metadata.set("authorization", `Bearer ${process.env.AGENTRUN_TOKEN}`);

// Pages and streams stay under gRPC's default 4 MiB receive limit; one FULL run can be larger (up to 8 MiB by
// default, AGENTRUN_MAX_RECORD_BYTES), so a client that reads FULL runs raises its limit.
const options = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };
const execution = new api.execution.v1.ExecutionService(process.env.AGENTRUN_EXECUTION_TARGET ?? "127.0.0.1:50052", credentials, options);
const runs = new api.runs.v1.RunsService(process.env.AGENTRUN_RUNS_TARGET ?? "127.0.0.1:50051", credentials, options);

const [agent = "clock", task = "What time is it in Lima?"] = process.argv.slice(2);
let runId = "";
const model = process.env.AGENTRUN_MODEL ?? ""; // empty: the agent's own model
const stream = execution.ExecuteAgent({ agent_name: agent, task, model }, metadata);
stream.on("data", (response) => {
  if (response.event === "run_started") {
    runId = response.run_started.run_id;
    console.log(`run ${runId} started (${response.run_started.model_name})`);
  } else if (response.event === "step") {
    const step = response.step;
    console.log(`[${step.sequence}] ${step.payload}`);
  } else {
    const done = response.run_finished;
    console.log(`finished: ${done.status}, ${done.token_usage.total_tokens} tokens`);
  }
});
stream.on("error", (error) => {
  console.error(describe(error));
  process.exit(1);
});
// run_finished.recorded says whether RunsService already stored the run; if not (RunsService slow or down), it is
// stored once the execution service's outbox delivers it, so poll for a while.
let recorded = false;
stream.on("data", (response) => {
  if (response.event === "run_finished") recorded = response.run_finished.recorded;
});
function readStoredRun(attempt) {
  runs.GetRun({ run_id: runId, view: "RUN_VIEW_FULL" }, metadata, (error, reply) => {
    const pending = error ? error.code === grpc.status.NOT_FOUND : reply.run.status === "RUN_STATUS_RUNNING";
    if (pending && !recorded && attempt < 50) {
      setTimeout(() => readStoredRun(attempt + 1), 200);
      return;
    }
    if (error) {
      console.error(describe(error));
      process.exit(1);
    }
    const run = reply.run;
    console.log(`stored: ${run.status}, ${run.execution_steps.length} steps, ${run.tool_calls.length} tool calls`);
  });
}
stream.on("end", () => readStoredRun(0));
