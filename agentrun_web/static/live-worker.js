// agentrun web console: one event stream for all of a browser's live run pages (a SharedWorker).
// Browsers open at most six HTTP/1.1 connections per host: one EventSource per tab would hold them all with six live
// tabs, and every other page of the console would wait. The tabs' pages ask this worker to watch their runs; it
// keeps ONE connection (GET /live?watch=RUN:FROM&watch=...) and hands each run's events to the pages that watch it.
// It resumes from the next sequence of each run after a drop, with a backoff (1, 2, 4, 8, 15 s) while it fails.
"use strict";

const watchers = new Map(); // run id -> { ports: Set<MessagePort>, from: next sequence to ask for }
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
let source = null;
let timer = null;
let failures = 0;

function post(ports, message) {
  for (const port of ports) {
    try {
      port.postMessage(message);
    } catch (error) {
      ports.delete(port); // a tab that went away
    }
  }
}

function everyPort() {
  const all = new Set();
  for (const watcher of watchers.values()) for (const port of watcher.ports) all.add(port);
  return all;
}

function schedule(delay) {
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(open, delay);
}

function retryLater(message) {
  if (source) source.close();
  source = null;
  const delay = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
  failures += 1;
  post(everyPort(), { type: "lost", message, retryMs: delay });
  schedule(delay);
}

function open() {
  timer = null;
  if (source) source.close();
  source = null;
  if (!watchers.size) return;
  const query = [...watchers].map(([run, watcher]) => `watch=${encodeURIComponent(`${run}:${watcher.from}`)}`);
  const stream = new EventSource(`/live?${query.join("&")}`);
  source = stream;
  const forward = (type) => (event) => {
    const data = JSON.parse(event.data);
    const watcher = watchers.get(data.run);
    if (!watcher) return;
    if (type === "step") watcher.from = Math.max(watcher.from, data.seq + 1);
    if (type === "step" || type === "started" || type === "queued") failures = 0;
    post(watcher.ports, { type, data });
    if (type === "finished" || type === "gone") watchers.delete(data.run);
  };
  for (const type of ["queued", "started", "step", "child_step", "finished", "gone"]) stream.addEventListener(type, forward(type));
  // The service broke this run's stream (the others go on): say so, and ask again after a backoff.
  stream.addEventListener("problem", (event) => {
    const data = JSON.parse(event.data);
    const watcher = watchers.get(data.run);
    if (watcher) post(watcher.ports, { type: "problem", data });
    if (source === stream) retryLater(data.message);
  });
  stream.addEventListener("idle", () => {
    if (source === stream) retryLater("");
  });
  stream.addEventListener("open", () => post(everyPort(), { type: "open" }));
  stream.addEventListener("error", () => {
    if (source === stream) retryLater("");
  });
}

onconnect = (event) => {
  const port = event.ports[0];
  port.onmessage = (message) => {
    const { type, run, from } = message.data || {};
    if (type === "watch" && run) {
      const watcher = watchers.get(run);
      if (!watcher) {
        watchers.set(run, { ports: new Set([port]), from });
        schedule(0);
      } else {
        watcher.ports.add(port);
        // A page that has fewer steps than the stream is at: ask again from its first (the others skip repeats).
        if (from < watcher.from) {
          watcher.from = from;
          schedule(0);
        } else if (source && source.readyState === EventSource.OPEN) {
          port.postMessage({ type: "open" });
        }
      }
    } else if (type === "unwatch" && run) {
      const watcher = watchers.get(run);
      if (watcher) {
        watcher.ports.delete(port);
        if (!watcher.ports.size) {
          watchers.delete(run);
          schedule(0);
        }
      }
    }
  };
  port.start();
};
