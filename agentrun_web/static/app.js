// agentrun web console: the little the server-rendered pages need from a script. Vanilla, no build step.
// - runs page: asks for its rows again every few seconds (runs that start or end appear without a reload);
// - run page: waterfall selection and the side pane; a live run follows its server-sent events (the browser
//   resumes after a dropped connection from the last step it has, via Last-Event-ID); Cancel buttons;
// - stats page: a preset range clears the custom days; a day typed in turns the range menu to "custom days".
"use strict";

(function () {
  const FRAGMENT = { "X-Agentrun-Fragment": "1" };
  const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const nf = new Intl.NumberFormat("en-US");

  function humanSeconds(value) {
    if (value < 1) return `${Math.round(value * 1000)} ms`;
    if (value < 60) return Number.isInteger(value) ? `${value} s` : `${value.toFixed(2)} s`;
    const total = Math.round(value);
    const minutes = Math.floor(total / 60), seconds = total % 60;
    if (minutes < 60) return `${minutes}m ${String(seconds).padStart(2, "0")}s`;
    return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
  }

  function niceStep(span, maxTicks = 8) {
    const raw = span / maxTicks;
    const exponent = raw > 0 ? Math.floor(Math.log10(raw)) : -3;
    for (const power of [exponent, exponent + 1]) {
      for (const base of [1, 2, 5]) {
        const step = base * Math.pow(10, power);
        if (step >= raw) return step;
      }
    }
    return Math.pow(10, exponent + 1);
  }

  // Elements with data-since (a running run's start) show the time elapsed since then.
  function tickElapsed() {
    for (const el of document.querySelectorAll("[data-since]")) {
      const since = Date.parse(el.dataset.since);
      if (!Number.isNaN(since)) el.textContent = humanSeconds(Math.max(0, (Date.now() - since) / 1000));
    }
  }

  // --- runs page ---------------------------------------------------------------------------------------------
  function runsPage(section) {
    const body = document.getElementById("run-rows");
    const note = document.getElementById("runs-live-note");
    if (!body) return;
    const every = Number(section.dataset.refreshMs);
    if (!every) return;
    let etag = null;
    let busy = false;
    const baseNote = note ? note.textContent : "";
    async function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const headers = { ...FRAGMENT };
        if (etag) headers["If-None-Match"] = etag;
        const response = await fetch(body.dataset.rowsUrl, { headers, cache: "no-store", credentials: "same-origin" });
        if (response.status === 304) return;
        if (!response.ok) {
          if (note) note.textContent = `updates paused (${response.status}); retrying`;
          return;
        }
        etag = response.headers.get("ETag");
        const before = new Map([...body.querySelectorAll("tr[data-run-id]")].map((tr) => [tr.dataset.runId, tr.dataset.status]));
        body.innerHTML = await response.text();
        for (const tr of body.querySelectorAll("tr[data-run-id]")) {
          if (before.get(tr.dataset.runId) !== tr.dataset.status) tr.classList.add("fresh");
        }
        if (note) note.textContent = baseNote;
        tickElapsed();
      } catch (error) {
        if (note) note.textContent = "updates paused (console unreachable); retrying";
      } finally {
        busy = false;
      }
    }
    setInterval(refresh, every);
    document.addEventListener("visibilitychange", refresh);
  }

  // --- run page ----------------------------------------------------------------------------------------------
  function runPage(run) {
    const runId = run.dataset.runId;
    const waterfall = document.getElementById("waterfall");
    const rows = document.getElementById("wf-rows");
    const ticks = document.getElementById("wf-ticks");
    const pane = document.getElementById("pane-body");
    const stepRows = document.getElementById("step-rows");
    const details = new Map(); // sequence -> HTML of its details (streamed, or fetched on first use)
    let span = Number(waterfall?.dataset.spanS) || 0.001;
    const running = new Map(); // bar key -> {row, startS, receivedAt}

    function setSpan(value) {
      if (!waterfall || !(value > span * 1.0001)) return;
      span = value;
      waterfall.style.setProperty("--span", String(span));
      const step = niceStep(span);
      const parts = [];
      for (let i = 0; i * step <= span + 1e-9; i++) {
        parts.push(`<span class="wf-tick" style="--at: ${i * step}">${i ? humanSeconds(i * step) : "0"}</span>`);
      }
      if (ticks) ticks.innerHTML = parts.join("");
    }

    // A step's details: kept once fetched; a failure (the console's message, or none when it cannot be reached)
    // is shown in the pane, in the step's place, and asked again next time.
    async function detailOf(sequence) {
      if (details.has(sequence)) return details.get(sequence);
      try {
        const response = await fetch(`/runs/${runId}/steps/${sequence}`, { headers: FRAGMENT, credentials: "same-origin" });
        const html = await response.text();
        if (response.ok) details.set(sequence, html);
        return html;
      } catch (error) {
        return `<article class="detail problem" data-seq="${sequence}"><p class="error" role="alert">The details of step ${sequence} could not be loaded: the console cannot be reached. Select the bar again to retry.</p></article>`;
      }
    }

    let selecting = 0;
    async function select(sequences, barRow) {
      const ticket = ++selecting;
      const ordered = [...new Set(sequences)].sort((a, b) => a - b);
      for (const el of document.querySelectorAll(".wf-row.selected, .steps-table tr.selected")) el.classList.remove("selected");
      if (barRow) barRow.classList.add("selected");
      for (const sequence of ordered) document.getElementById(`step-${sequence}`)?.classList.add("selected");
      pane.setAttribute("aria-busy", "true");
      const parts = await Promise.all(ordered.map(detailOf));
      if (ticket !== selecting) return; // a later selection won: its details are the ones to show
      pane.innerHTML = parts.join("");
      pane.removeAttribute("aria-busy");
      history.replaceState(null, "", `${location.pathname}?step=${ordered[0]}`);
    }

    function stepsOf(row) {
      return row.dataset.steps.split(" ").filter(Boolean).map(Number);
    }

    run.addEventListener("click", (event) => {
      const link = event.target.closest("a");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      const barRow = link.closest(".wf-row[data-steps]");
      if (barRow) {
        event.preventDefault();
        select(stepsOf(barRow), barRow);
        return;
      }
      const stepRow = link.closest("tr[data-seq]");
      if (stepRow) {
        event.preventDefault();
        const bar = stepRow.dataset.bar ? document.getElementById(`bar-${stepRow.dataset.bar}`) : null;
        select(bar ? stepsOf(bar) : [Number(stepRow.dataset.seq)], bar);
      }
    });
    const selectedStep = Number(new URLSearchParams(location.search).get("step"));
    // A step the URL names (?step=N) that a live page does not show yet: selected when it comes.
    let pendingStep =
      selectedStep > 0 && !pane.querySelector(`.detail[data-seq="${selectedStep}"]`) ? selectedStep : 0;
    if (selectedStep) {
      for (const row of document.querySelectorAll(".wf-row[data-steps]")) {
        if (stepsOf(row).includes(selectedStep)) {
          row.classList.add("selected");
          row.scrollIntoView({ block: "nearest" }); // inside the waterfall's own scroll box
        }
      }
    }

    for (const form of document.querySelectorAll(".cancel-form")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const notice = document.getElementById("cancel-notice");
        const buttons = document.querySelectorAll(".cancel-form button");
        buttons.forEach((b) => (b.disabled = true));
        try {
          const response = await fetch(form.action, {
            method: "POST",
            body: new URLSearchParams(new FormData(form)),
            headers: { ...FRAGMENT, "X-CSRF-Token": csrfToken() },
            credentials: "same-origin",
          });
          notice.innerHTML = await response.text();
          if (!response.ok) buttons.forEach((b) => (b.disabled = false));
        } catch (error) {
          notice.textContent = "The console could not be reached; try again.";
          buttons.forEach((b) => (b.disabled = false));
        }
      });
    }

    if (run.dataset.liveFrom) follow(Number(run.dataset.liveFrom));
    // A run RunsService had not stored yet when the page was made: its task and labels arrive with the record.
    if (run.dataset.partial) setTimeout(refreshFacts, 1500);

    function addUsage(usage) {
      for (const [field, value] of Object.entries(usage)) {
        const card = document.querySelector(`#token-cards .card[data-field="${field}"] .card-value`);
        if (!card) continue;
        const total = Number(card.dataset.value || 0) + Number(value);
        card.dataset.value = String(total);
        card.textContent = nf.format(total);
      }
    }

    // How the page hears of its run: through the shared worker (one connection for every live tab of this browser,
    // static/live-worker.js), else through an EventSource of its own (/runs/{id}/events). Either way the page is told
    // open / lost / problem / queued / started / step / child_step (a sub-agent run's step) / finished / gone.
    function liveChannel(from, on) {
      if (window.SharedWorker) {
        try {
          const worker = new SharedWorker(`/static/live-worker.js?v=${run.dataset.assetVersion || ""}`, { name: "agentrun-live" });
          worker.port.onmessage = (message) => on[message.data.type]?.(message.data);
          worker.port.start();
          worker.port.postMessage({ type: "watch", run: runId, from });
          window.addEventListener("pagehide", () => worker.port.postMessage({ type: "unwatch", run: runId }));
          run.dataset.channel = "shared";
          return { close: () => worker.port.postMessage({ type: "unwatch", run: runId }) };
        } catch (error) {
          // A browser that refuses the worker (privacy settings): a stream of this page's own.
        }
      }
      run.dataset.channel = "own";
      let source = null;
      let next = from;
      let failures = 0;
      const backoff = [1000, 2000, 4000, 8000, 15000];
      const retry = (message) => {
        source?.close();
        source = null;
        const delay = backoff[Math.min(failures++, backoff.length - 1)];
        on.lost?.({ message, retryMs: delay });
        setTimeout(connect, delay);
      };
      function connect() {
        const stream = new EventSource(`/runs/${runId}/events?from=${next}`);
        source = stream;
        const pass = (type) => (event) => {
          const data = JSON.parse(event.data);
          if (type === "step") next = Math.max(next, data.seq + 1);
          if (type === "step" || type === "started" || type === "queued") failures = 0;
          if (type === "finished" || type === "gone") stream.close();
          on[type]?.({ type, data });
        };
        for (const type of ["queued", "started", "step", "child_step", "finished", "gone"]) stream.addEventListener(type, pass(type));
        stream.addEventListener("problem", (event) => {
          on.problem?.({ data: JSON.parse(event.data) });
          retry(JSON.parse(event.data).message);
        });
        stream.addEventListener("open", () => on.open?.({}));
        stream.addEventListener("error", () => {
          if (source === stream) retry("");
        });
      }
      connect();
      return { close: () => source?.close() };
    }

    function follow(from) {
      // No first event this long after the page asked: say so rather than spin (the stream keeps trying).
      const FIRST_EVENT_MS = Number(run.dataset.firstEventMs) || 8000;
      const state = document.getElementById("live-state");
      const bar = document.getElementById("live-bar");
      const seen = new Set([...document.querySelectorAll("#step-rows tr[data-seq]")].map((tr) => Number(tr.dataset.seq)));
      let duplicates = 0;
      let heard = false;
      let channel = null;
      run.dataset.duplicates = "0";
      const say = (text, cls) => {
        if (state) state.textContent = text;
        if (bar) bar.className = `live-bar ${cls || ""}`;
      };
      const deadline = setTimeout(() => {
        if (!heard) {
          say(`no word from the live stream after ${FIRST_EVENT_MS / 1000} s (ExecutionService busy or unreachable?); still trying…`, "lost");
          run.dataset.stalled = "1";
        }
      }, FIRST_EVENT_MS);
      const hear = () => {
        heard = true;
        delete run.dataset.stalled;
        clearTimeout(deadline);
      };
      channel = liveChannel(from, {
        open: () => say(heard ? "live: steps appear as they happen" : "connected; waiting for the run's first event…"),
        lost: ({ message, retryMs }) => {
          const again = retryMs ? ` retrying in ${Math.round(retryMs / 1000)} s` : " reconnecting";
          say(`${message ? `${message}:` : "connection lost:"}${again}…`, "lost");
        },
        problem: ({ data }) => {
          clearTimeout(deadline); // the service said what is wrong: that, not silence, is the news
          say(`${data.message}; retrying…`, "lost");
        },
        gone: ({ data }) => {
          hear();
          channel?.close();
          // ExecutionService does not run it: Cancel could only be refused.
          for (const form of document.querySelectorAll(".cancel-form")) form.remove();
          say(data.message, "ended");
          if (!state) return;
          if (run.dataset.partial) {
            // The page shows the run from its stream alone: a reload reads its stored record.
            state.insertAdjacentHTML("beforeend", ` <a href="${location.pathname}">show the stored run</a>`);
          } else {
            // This page is the stored record, and it says the run is still going: its end was never recorded.
            const stored = document.getElementById("status-badge")?.dataset.status || "RUNNING";
            state.append(` Its stored record still says ${stored}: no ExecutionService recorded its end.`);
          }
        },
        // A run waiting in ExecutionService's queue: its QUEUED badge and its place, until it starts.
        queued: ({ data }) => {
          hear();
          document.getElementById("run-status").innerHTML = data.status_html;
          run.dataset.queued = String(data.position);
          say(data.message);
        },
        started: ({ data }) => {
          hear();
          if (run.dataset.queued !== undefined) {
            document.getElementById("run-status").innerHTML = data.status_html;
            delete run.dataset.queued;
          }
          say("live: steps appear as they happen");
        },
        step: ({ data }) => {
          hear();
          say("live: steps appear as they happen");
          if (seen.has(data.seq)) {
            run.dataset.duplicates = String(++duplicates);
            return;
          }
          seen.add(data.seq);
          details.set(data.seq, data.detail);
          stepRows.insertAdjacentHTML("beforeend", data.row);
          const row = document.getElementById(`step-${data.seq}`);
          row?.classList.add("fresh");
          row?.setAttribute("data-shown-at", String(Date.now()));
          document.getElementById("steps-count").textContent = String(seen.size);
          document.getElementById("wf-empty")?.remove();
          if (data.bar && !document.getElementById(`bar-${data.bar.key}`)) {
            rows.insertAdjacentHTML("beforeend", data.bar.html);
            const barRow = document.getElementById(`bar-${data.bar.key}`);
            const start = Number(barRow.dataset.startS);
            if (barRow.dataset.durationS === "") running.set(data.bar.key, { row: barRow, startS: start, receivedAt: performance.now() });
            else setSpan(start + Number(barRow.dataset.durationS));
          }
          if (data.finish) finishBar(data.finish);
          if (data.usage) addUsage(data.usage);
          updateCounts();
          if (data.seq === pendingStep) {
            pendingStep = 0;
            const key = data.bar?.key ?? data.finish?.key;
            const barRow = key ? document.getElementById(`bar-${key}`) : null;
            select(barRow ? stepsOf(barRow) : [data.seq], barRow);
          }
        },
        child_step: ({ data }) => {
          // A sub-agent run's step: a row of its own (not counted among this run's steps), shown once.
          hear();
          if (document.getElementById(`child-${data.key}`)) return;
          stepRows.insertAdjacentHTML("beforeend", data.row);
          document.getElementById(`child-${data.key}`)?.classList.add("fresh");
          refreshSoon(); // the sub-agent runs' table: new runs, statuses and totals
        },
        finished: ({ data }) => {
          hear();
          channel?.close();
          document.getElementById("run-status").innerHTML = data.status_html;
          document.getElementById("run-tokens").innerHTML = data.tokens_html;
          document.getElementById("run-final").innerHTML = data.final_html;
          for (const form of document.querySelectorAll(".cancel-form")) form.remove();
          say(`finished: ${data.status}${data.recorded ? "" : " (RunsService stores it shortly)"}`, "ended");
          if (data.duration_s) setSpan(data.duration_s);
          run.classList.remove("is-live");
          run.dataset.finished = data.status;
          if (data.recorded) refreshFacts();
        },
      });
    }

    // The stored record knows what the event stream does not tell (task, labels, variables, the sub-agent runs'
    // statuses and totals): take them from it.
    async function refreshFacts() {
      try {
        const response = await fetch(location.pathname, { credentials: "same-origin" });
        if (!response.ok) return;
        const stored = new DOMParser().parseFromString(await response.text(), "text/html");
        const facts = stored.querySelector(".facts");
        if (facts) document.querySelector(".facts")?.replaceWith(facts);
        const descendants = stored.querySelector(".descendants");
        const shown = document.querySelector(".descendants");
        if (descendants && shown) shown.replaceWith(descendants);
        else if (descendants) document.getElementById("run-final")?.after(descendants);
      } catch (error) {
        // The live view already shows what the stream told; the rest stays as it was until a reload.
      }
    }

    // At most one refresh every few seconds while sub-agent runs stream their steps.
    let refreshTimer = null;
    function refreshSoon() {
      if (refreshTimer !== null) return;
      refreshTimer = setTimeout(() => {
        refreshTimer = null;
        refreshFacts();
      }, 3000);
    }

    function finishBar(finish) {
      const row = document.getElementById(`bar-${finish.key}`);
      if (!row) return;
      running.delete(finish.key);
      row.classList.remove("st-running");
      row.classList.add(`st-${finish.state}`);
      row.dataset.state = finish.state;
      row.dataset.durationS = String(finish.duration_s);
      row.dataset.steps = `${row.dataset.steps} ${finish.seq}`.trim();
      row.querySelector(".wf-bar").style.setProperty("--dur", String(finish.duration_s));
      row.querySelector(".wf-dur").textContent = finish.duration_text;
      row.querySelector(".wf-note").textContent = finish.note;
      setSpan(Number(row.dataset.startS) + finish.duration_s);
    }

    function updateCounts() {
      const counts = document.getElementById("wf-counts");
      if (!counts) return;
      const models = rows.querySelectorAll(".wf-row.wf-model").length;
      const tools = rows.querySelectorAll(".wf-row.wf-tool").length;
      counts.textContent = `${models} model calls · ${tools} tool calls`;
    }

    setInterval(() => {
      for (const { row, startS, receivedAt } of running.values()) {
        const duration = (performance.now() - receivedAt) / 1000;
        row.querySelector(".wf-bar").style.setProperty("--dur", String(duration));
        row.querySelector(".wf-dur").textContent = humanSeconds(duration);
        setSpan(startS + duration);
      }
    }, 250);
  }

  // --- stats page --------------------------------------------------------------------------------------------
  function statsPage(form) {
    const range = form.querySelector('select[name="range"]');
    const days = form.querySelectorAll('input[type="date"]');
    range?.addEventListener("change", () => {
      // "custom days" waits for the days (and Apply); a preset replaces them at once.
      if (range.value === "custom") {
        days[0]?.focus();
        return;
      }
      for (const input of days) input.value = "";
      form.submit();
    });
    for (const input of days) {
      input.addEventListener("change", () => {
        if (range && input.value) range.value = "custom";
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const runs = document.querySelector("section.runs");
    if (runs) runsPage(runs);
    const run = document.getElementById("run");
    if (run) runPage(run);
    const stats = document.getElementById("stats-query");
    if (stats) statsPage(stats);
    tickElapsed();
    setInterval(tickElapsed, 250);
  });
})();
