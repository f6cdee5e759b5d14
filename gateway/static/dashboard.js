// The dashboard: polls the gateway's status API and draws it. No framework and no
// build step; everything it shows comes from /v1 with the tab's API key, if any.
"use strict";

const REFRESH_MS = 2000;
const DEPTH_SAMPLES = 150; // five minutes of queue depth at one sample per refresh
const $ = (id) => document.getElementById(id);
const state = { depth: [], selected: null, key: sessionStorage.getItem("faas-key") || "" };

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = state.key ? { Authorization: `Bearer ${state.key}` } : {};
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    const error = new Error(`${path}: ${response.status} ${detail}`);
    error.status = response.status;
    throw error;
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function ago(ms) {
  if (!ms) return "-";
  return `${duration((Date.now() - ms) / 1000)} ago`;
}

function duration(seconds) {
  seconds = Math.max(0, seconds);
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function taskTime(t) {
  if (t.started_at_ms && t.finished_at_ms) return duration((t.finished_at_ms - t.started_at_ms) / 1000);
  if (t.started_at_ms) return `running ${ago(t.started_at_ms)}`.replace(" ago", "");
  return `queued ${ago(t.queued_at_ms)}`;
}

// -- charts ------------------------------------------------------------------------

function drawLine(svg, values) {
  const max = Math.max(1, ...values);
  const step = 600 / Math.max(1, DEPTH_SAMPLES - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(115 - (v / max) * 105).toFixed(1)}`);
  svg.innerHTML = `<polyline fill="none" stroke="#2563c9" stroke-width="2" points="${points.join(" ")}"/>` +
    `<text x="4" y="14" font-size="12" fill="#6b7385">max ${max}</text>`;
}

function drawBars(svg, minutes) {
  const max = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const width = 600 / Math.max(1, minutes.length);
  svg.innerHTML = minutes.map((m, i) => {
    const ok = (m.completed / max) * 105;
    const bad = (m.failed / max) * 105;
    const x = (i * width).toFixed(1);
    const w = Math.max(1, width - 1).toFixed(1);
    return `<rect x="${x}" y="${115 - ok}" width="${w}" height="${ok}" fill="#1f8a4c"/>` +
      `<rect x="${x}" y="${115 - ok - bad}" width="${w}" height="${bad}" fill="#c23a3a"/>`;
  }).join("") + `<text x="4" y="14" font-size="12" fill="#6b7385">max ${max}/min</text>`;
}

// -- panels ------------------------------------------------------------------------

function showStats(stats) {
  $("mode").textContent = stats.mode ? `${stats.mode} mode` : "no dispatcher running";
  for (const name of ["queued", "running", "workers", "slots"]) $(name).textContent = stats[name];
  $("completed").textContent = stats.completed_last_minute;
  $("failed").textContent = stats.failed_last_minute;
  state.depth.push(stats.queued);
  if (state.depth.length > DEPTH_SAMPLES) state.depth.shift();
  drawLine($("depth-chart"), state.depth);
  drawBars($("rate-chart"), stats.ended_per_minute);
}

function showWorkers(view) {
  const rows = view.workers.map((w) => el("tr", { "data-worker": w.worker_id },
    el("td", {}, el("code", {}, w.worker_id)),
    el("td", {}, el("span", { class: "bar" }, el("i", { style: `width:${(100 * w.busy) / Math.max(1, w.slots)}%` })),
      ` ${w.busy}/${w.slots}`),
    el("td", {}, ago(w.last_heartbeat_ms)),
    el("td", {}, w.draining ? "draining" : "serving")));
  $("worker-table").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no workers connected"))]));
}

function showTasks(page) {
  const rows = page.tasks.map((t) => el("tr", { "data-task": t.task_id, onclick: () => select(t.task_id) },
    el("td", {}, el("code", {}, t.task_id.slice(0, 8))),
    el("td", {}, el("code", {}, t.function_id.slice(0, 8))),
    el("td", { class: `status-${t.status}` }, t.status),
    el("td", {}, `${t.attempt}/${t.max_attempts}`),
    el("td", {}, taskTime(t)),
    el("td", {}, t.error_kind || "")));
  $("task-table").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no tasks"))]));
}

async function showDetail() {
  const id = state.selected;
  if (!id) return;
  const task = await api(`/v1/tasks/${id}`);
  if (state.selected !== id) return;
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  const fields = {
    status: task.status, function: task.function_id, attempt: `${task.attempt} of ${task.max_attempts}`,
    worker: task.worker_id || "-", queued: ago(task.queued_at_ms), started: ago(task.started_at_ms),
    finished: ago(task.finished_at_ms), "error kind": task.error_kind || "-",
  };
  $("detail-fields").replaceChildren(...Object.entries(fields).flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", { class: k === "status" ? `status-${v}` : "" }, v)]));
  $("detail-error").textContent = task.error || "-";
  $("cancel").hidden = !["WAITING", "QUEUED", "RUNNING"].includes(task.status);
  try {
    const logs = await api(`/v1/tasks/${id}/logs`);
    const text = typeof logs === "string" ? logs : logs.logs;
    $("detail-logs").textContent = text || "(no output)";
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    $("detail-logs").textContent = error.status === 404 ? "(no logs on this gateway)" : String(error);
  }
}

function select(taskId) {
  state.selected = taskId;
  showDetail().catch(report);
}

// -- the loop ----------------------------------------------------------------------

function report(error) {
  if (error instanceof Unauthorized) {
    $("login").hidden = false;
    $("problem").hidden = true;
    return;
  }
  $("problem").hidden = false;
  $("problem").textContent = `Cannot reach the gateway: ${error.message}`;
}

async function refresh() {
  try {
    const status = $("status-filter").value;
    const [stats, workers, tasks] = await Promise.all([
      api("/v1/stats"), api("/v1/workers"),
      api(`/v1/tasks?limit=50${status ? `&status=${status}` : ""}`),
    ]);
    $("problem").hidden = true;
    $("login").hidden = true;
    showStats(stats);
    showWorkers(workers);
    showTasks(tasks);
    await showDetail();
  } catch (error) {
    report(error);
  }
}

function start() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value;
    sessionStorage.setItem("faas-key", state.key);
    refresh();
  });
  $("status-filter").addEventListener("change", refresh);
  $("close").addEventListener("click", () => { state.selected = null; $("detail").hidden = true; });
  $("cancel").addEventListener("click", async () => {
    try {
      await api(`/v1/tasks/${state.selected}`, { method: "DELETE" });
      await refresh();
    } catch (error) {
      report(error);
    }
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
