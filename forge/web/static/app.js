// Forge dashboard: renders the JSON of /api/* into the page and follows /api/stream.
// Every text is set as text (never as HTML): task prompts and agent output are data.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = {
  time(at) {
    if (!at) return "-";
    const d = new Date(at * 1000);
    return d.toLocaleString(undefined, { hour12: false }) + "." +
      String(d.getMilliseconds()).padStart(3, "0");
  },
  seconds(s) {
    if (s === null || s === undefined || !isFinite(s)) return "-";
    if (s < 60) return s.toFixed(1) + "s";
    const m = Math.floor(s / 60);
    return m < 60 ? `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`
      : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
  },
  usd(x) { return x === null || x === undefined ? "-" : "$" + Number(x).toFixed(4); },
};

function badge(state) { return el("span", { class: "badge s-" + state, text: state }); }
function taskLink(id) { return el("a", { href: "/task/" + encodeURIComponent(id), text: id }); }

function table(id, headers, rows, empty) {
  if (!rows.length) return el("p", { id, class: "muted", text: empty });
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

function section(title, ...body) { return el("section", {}, el("h2", { text: title }), body); }

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || `${response.status}`);
  return data;
}

function showError(error) {
  $("#main").replaceChildren(el("p", { class: "error", text: "Error: " + error.message }));
}

// -- the fleet (now, or at a moment) ----------------------------------------------------------

function renderFleet(f, now) {
  const counts = Object.entries(f.tasks).map(([s, n]) => el("span", { class: "count" }, badge(s), " " + n));
  const spend = f.spend;
  const stats = el("div", { class: "stats" },
    el("div", { class: "stat" }, el("b", { text: f.events }), " events"),
    el("div", { class: "stat" }, el("b", { text: f.queued }), " queued"),
    el("div", { class: "stat" }, el("b", { text: f.running.length }), " running"),
    el("div", { class: "stat" }, el("b", { text: f.agents.length }), " agents"),
    el("div", { class: "stat", id: "spend" }, el("b", { text: fmt.usd(spend.spent_usd) }),
      spend.limit_usd !== null ? ` of $${spend.limit_usd.toFixed(2)}` : " spent",
      spend.exhausted ? el("span", { class: "badge s-failed", text: "budget exhausted" }) : null),
    el("div", { class: "stat" }, "daemon ",
      badge(f.daemon.running ? "running" : "stopped"), ` epoch ${f.daemon.epoch}`));
  const running = table("running", ["TASK", "STATE", "AGENT", "ATT", "FOR", "COST", "WHAT"],
    f.running.map((t) => [taskLink(t.task_id),
      el("span", {}, badge(t.state), t.waiting_approvals ? " waits approval" : ""),
      t.agent_id || "-", t.attempt,
      fmt.seconds(t.started_at ? (t.finished_at || now) - t.started_at : null),
      fmt.usd(t.cost_usd), t.what]), "No task is running.");
  const queue = f.queue.filter((q) => q.count).map((q) => el("div", { class: "prio" },
    el("h3", { text: `priority ${q.priority} · ${q.count}` }),
    el("ol", {}, q.tasks.map((t) => el("li", {}, taskLink(t.task_id), " ", t.what)))));
  const agents = table("agents", ["AGENT", "STATUS", "RUNTIME", "TAGS", "TASK"],
    f.agents.map((a) => [a.agent_id, badge(a.status), a.runtime, a.tags.join(", ") || "-",
      a.task_id ? taskLink(a.task_id) : "-"]), "No agent.");
  const breakers = table("breakers", ["BREAKER", "STATE", "UNTIL", "REASON"],
    f.breakers.map((b) => [b.name, badge(b.state), b.until ? fmt.time(b.until) : "-",
      b.reason || ""]), "No breaker has tripped.");
  const approvals = table("approvals", ["ID", "TASK", "TOOL", "CALL", "ASKED"],
    f.approvals.map((a) => [a.approval_id, taskLink(a.task_id), a.tool, a.summary,
      fmt.time(a.requested_at)]), "Nothing waits for approval.");
  return el("div", { class: "fleet" }, stats, el("div", { class: "counts" }, counts),
    section("Running", running),
    el("div", { class: "columns" },
      section("Queue by priority", queue.length ? queue : el("p", { class: "muted", text: "The queue is empty." })),
      section("Agents", agents)),
    el("div", { class: "columns" }, section("Breakers", breakers),
      section("Approvals waiting", approvals)));
}

async function fleetPage() {
  const f = await api("/api/fleet");
  $("#main").replaceChildren(el("h1", { text: "The fleet now" }),
    el("p", { class: "muted", text: `as of ${f.position} (${fmt.time(f.last_at)})` }),
    renderFleet(f, Date.now() / 1000));
}

// -- tasks --------------------------------------------------------------------------------------

async function tasksPage() {
  const params = new URLSearchParams(location.search);
  const data = await api("/api/tasks?" + params.toString());
  const select = (name, options) => el("select", { name },
    el("option", { value: "", text: `any ${name}` }),
    options.map((o) => el("option", { value: o, text: o, selected: params.get(name) === o })));
  const form = el("form", { id: "filters", class: "filters" },
    select("state", data.states), select("runtime", data.runtimes),
    el("input", { name: "q", type: "search", placeholder: "text in id, name, prompt, command",
      value: params.get("q") || "" }),
    el("button", { type: "submit", text: "Filter" }));
  const apply = (event) => {
    if (event) event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    history.replaceState(null, "", "/tasks" + (next.toString() ? "?" + next : ""));
    refresh();
  };
  form.addEventListener("submit", apply);
  form.addEventListener("change", apply);
  const rows = data.tasks.map((t) => [taskLink(t.task_id), badge(t.state), t.runtime,
    t.priority, t.attempt, fmt.usd(t.cost_usd), fmt.time(t.submitted_at), t.what]);
  $("#main").replaceChildren(el("h1", { text: "Tasks" }), form,
    el("p", { class: "muted", text: `${data.matched} of ${data.total} tasks` +
      (data.matched > data.tasks.length ? ` (the newest ${data.tasks.length} shown)` : "") }),
    table("tasks", ["TASK", "STATE", "RUNTIME", "PRIO", "ATT", "COST", "SUBMITTED", "WHAT"],
      rows, "No task matches."));
}

// -- one task -------------------------------------------------------------------------------------

async function taskPage() {
  const id = decodeURIComponent(location.pathname.slice("/task/".length));
  const t = await api("/api/task/" + encodeURIComponent(id));
  const def = t.definition;
  const what = def.command && def.command.length ? def.command.join(" ") : def.prompt || "";
  const info = el("dl", { class: "info" },
    el("dt", { text: "state" }), el("dd", {}, badge(t.state),
      t.last_failure ? ` (${t.last_failure}${t.last_reason ? ": " + t.last_reason : ""})` : ""),
    el("dt", { text: "runtime" }), el("dd", { text: `${t.runtime} · priority ${t.priority}` }),
    el("dt", { text: def.command && def.command.length ? "command" : "prompt" }),
    el("dd", {}, el("code", { text: what })),
    el("dt", { text: "cost" }), el("dd", { text: fmt.usd(t.cost_usd) }),
    t.branch ? el("dt", { text: "branch" }) : null, t.branch ? el("dd", { text: t.branch }) : null,
    t.progress ? el("dt", { text: "progress" }) : null,
    t.progress ? el("dd", { text: t.progress }) : null);
  const attempts = table("attempts", ["ATT", "OUTCOME", "AGENT", "STARTED", "FOR", "COST", "FAILURE"],
    t.attempts.map((a) => [a.attempt, badge(a.outcome), a.agent_id || "-", fmt.time(a.started_at),
      fmt.seconds(a.started_at && a.finished_at ? a.finished_at - a.started_at : null),
      fmt.usd(a.cost_usd), a.failure ? `${a.failure}${a.reason ? ": " + a.reason : ""}` : ""]),
    "No attempt yet.");
  const timeline = table("timeline", ["ID", "TIME", "EVENT", "DETAILS"],
    t.timeline.map((e) => [e.id, fmt.time(e.at), e.type, e.details]), "No event.");
  const output = el("pre", { id: "output", class: "output", text: "…" });
  const diff = el("pre", { id: "diff", class: "diff", text: "…" });
  $("#main").replaceChildren(el("h1", {}, "Task ", el("code", { text: t.task_id }),
    t.name ? " · " + t.name : ""), info, section("Attempts", attempts),
    section("Timeline", timeline),
    section(t.runtime === "claude" ? "Transcript (latest attempt)" : "Output (latest attempt)", output),
    section("Diff of its branch", diff));
  const base = "/api/task/" + encodeURIComponent(id);
  api(base + "/output").then((o) => {
    output.textContent = (o.note ? `(${o.note})\n` : "") + o.lines.join("\n");
  }).catch((e) => { output.textContent = "Error: " + e.message; });
  api(base + "/diff").then((d) => {
    diff.replaceChildren();
    if (d.note) diff.append(el("span", { class: "muted", text: d.note + "\n" }));
    for (const line of d.patch.split("\n")) {
      const kind = line.startsWith("+") ? "add" : line.startsWith("-") ? "del"
        : line.startsWith("@@") ? "hunk" : "";
      diff.append(el("span", { class: kind, text: line + "\n" }));
    }
  }).catch((e) => { diff.textContent = "Error: " + e.message; });
}

// -- the time slider ------------------------------------------------------------------------------

let momentRequest = 0;
async function showMoment(until) {
  const mine = ++momentRequest;
  const m = await api("/api/at?until=" + encodeURIComponent(until));
  if (mine !== momentRequest) return; // a later move of the slider wins
  $("#moment").replaceChildren(
    el("p", {}, "The fleet as of ", el("code", { id: "moment-position", text: m.position }),
      ` (${fmt.time(m.summary.last_event_at)}), as `,
      el("code", { text: `forge events replay --until ${m.position}` }), " prints it:"),
    el("pre", { id: "replay-summary", text: m.summary_text }),
    renderFleet(m.fleet, m.summary.last_event_at || Date.now() / 1000));
}

async function timePage() {
  const f = await api("/api/fleet");
  const r = f.range;
  if (!r.first_ms) {
    $("#main").replaceChildren(el("h1", { text: "Time slider" }), el("p", { text: "The log is empty." }));
    return;
  }
  const label = el("output", { id: "slider-time" });
  const slider = el("input", { id: "slider", type: "range", min: r.first_ms, max: r.last_ms,
    step: 1, value: r.last_ms });
  let timer = null;
  const moved = () => {
    label.textContent = fmt.time(slider.value / 1000);
    clearTimeout(timer);
    timer = setTimeout(() => showMoment(slider.value).catch(showError), 120);
  };
  slider.addEventListener("input", moved);
  const typed = el("input", { id: "until", name: "until", placeholder: "stream id or time (2026-01-31T12:00:00)" });
  const form = el("form", { class: "filters", onsubmit: (e) => { e.preventDefault();
    showMoment(typed.value).catch(showError); } }, typed, el("button", { type: "submit", text: "Go" }));
  $("#main").replaceChildren(el("h1", { text: "Time slider" }),
    el("p", { class: "muted", text: `Drag to rebuild the whole fleet from the log at any moment between ${fmt.time(r.first_ms / 1000)} and ${fmt.time(r.last_ms / 1000)}.` }),
    el("div", { class: "slider" }, slider, label), form, el("div", { id: "moment" }));
  label.textContent = fmt.time(r.last_ms / 1000);
  const start = new URLSearchParams(location.search).get("until");
  await showMoment(start || String(r.last_ms));
}

// -- live updates -----------------------------------------------------------------------------------

const PAGES = { fleet: fleetPage, tasks: tasksPage, task: taskPage, time: timePage };
let pending = null;
function refresh() {
  const page = PAGES[document.body.dataset.page];
  return page().catch(showError);
}

function follow() {
  const live = $("#live");
  const source = new EventSource("/api/stream");
  const say = (text, on) => { live.textContent = text; live.className = "live " + (on ? "on" : "off"); };
  source.addEventListener("hello", (e) => say("live · " + JSON.parse(e.data).position, true));
  source.addEventListener("log", (e) => {
    const message = JSON.parse(e.data);
    if (message.position) say("live · " + message.position, true);
    const page = document.body.dataset.page;
    if (page === "time") { // the past does not change: only the slider's end moves on
      const slider = $("#slider");
      const ms = Number(String(message.position || "").split("-")[0]);
      if (slider && ms > Number(slider.max)) slider.max = String(ms);
      return;
    }
    if (page === "task" && !message.reload) {
      const id = decodeURIComponent(location.pathname.slice("/task/".length));
      if (!message.entries.some((x) => x.task_id === id)) return;
    }
    clearTimeout(pending);
    pending = setTimeout(refresh, 150);
  });
  source.onerror = () => say("reconnecting…", false);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === page) a.classList.add("here");
  }
  refresh().then(() => { document.body.dataset.ready = "1"; });
  follow();
});
