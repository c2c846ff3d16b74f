// llm-forward console: plain DOM, no framework, no build step. Every value that a client could
// have chosen (models, routes, paths) is written with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
let overviewTimer = null;
let tail = null;

async function api(path, options = {}) {
  const res = await fetch(path, { credentials: "same-origin", ...options });
  if (res.status === 401) { showLogin(); throw new Error("signed out"); }
  return res;
}

function show(id) {
  for (const s of document.querySelectorAll("section")) s.hidden = s.id !== id;
  for (const b of document.querySelectorAll("#tabs button[data-tab]")) b.classList.toggle("active", b.dataset.tab === id);
  if (id === "config") loadConfig();
}

function showLogin() {
  clearInterval(overviewTimer); overviewTimer = null;
  if (tail) { tail.close(); tail = null; }
  $("tabs").hidden = true;
  show("login");
}

async function start() {
  $("tabs").hidden = false;
  show("live");
  await refresh();
  overviewTimer = setInterval(() => refresh().catch(() => {}), 1000);
  openTail();
}

function row(cells, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c ?? "–";
    tr.appendChild(td);
  }
  return tr;
}

function pill(text) { const s = document.createElement("span"); s.className = "pill " + text; s.textContent = text; return s; }

function fill(id, rows) { const t = $(id); t.replaceChildren(...rows); }

function spark(canvas, values) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, max = Math.max(1, ...values);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#4fb3ff"; ctx.lineWidth = 1.5; ctx.beginPath();
  values.forEach((v, i) => { const x = (i / Math.max(1, values.length - 1)) * w, y = h - (v / max) * (h - 2) - 1; i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
  ctx.stroke();
}

const pct = (p) => p ? `${fmt.format(p.p50)} / ${fmt.format(p.p95)} / ${fmt.format(p.p99)}` : "–";

async function refresh() {
  const o = await (await api("/api/overview")).json();
  $("version").textContent = `v${o.version} · up ${Math.round(o.uptime_s)} s`;
  const r = o.rates, last = (a) => a.length > 1 ? a[a.length - 2] : (a[0] ?? 0); // the last complete second
  $("rps").textContent = fmt.format(last(r.requests)); spark($("rps-chart"), r.requests);
  $("tps").textContent = fmt.format(last(r.tokens)); spark($("tps-chart"), r.tokens);
  $("latency").textContent = pct(o.latency_ms);
  $("ttft").textContent = pct(o.ttft_ms);
  $("errors").textContent = r.errors.reduce((a, b) => a + b, 0);
  $("errors-total").textContent = `${o.totals.errors} since start`;
  $("inflight").textContent = o.in_flight;
  $("totals").textContent = `${o.totals.requests} requests · ${o.totals.input_tokens}+${o.totals.output_tokens} tokens since start`;
  if (o.cache) {
    const all = o.cache.hits + o.cache.misses;
    $("cache").textContent = all ? `${fmt.format((100 * o.cache.hits) / all)} %` : "–";
    $("cache-detail").textContent = `${o.cache.hits} hits · ${o.cache.misses} misses · ${o.cache.entries} entries`;
  } else { $("cache").textContent = "off"; }
  for (const dim of ["route", "model", "tenant", "key"]) {
    fill("usage-" + dim, (o.usage[dim] || []).map((u) => row([u.name, u.hour.requests, u.hour.tokens, u.today.requests, u.today.tokens])));
  }
  fill("limits", o.limits.map((l) => {
    const bar = document.createElement("div"); bar.className = "bar";
    const i = document.createElement("i"); i.style.width = `${Math.min(100, (100 * l.used) / Math.max(1, l.limit))}%`; bar.appendChild(i);
    return row([l.name, l.used, l.limit, bar]);
  }));
  fill("breakers", o.upstreams.map((u) => row([u.route, u.name, pill(u.breaker)])));
  fill("keys", o.keys.map((k) => row([k.pool, k.id, pill(k.state)])));
}

function openTail() {
  tail = new EventSource("/api/tail");
  tail.onopen = () => { $("tail-state").textContent = "· live"; };
  tail.onerror = () => { $("tail-state").textContent = "· reconnecting"; };
  tail.addEventListener("request", (ev) => {
    const r = JSON.parse(ev.data);
    const tokens = r.tokens ? `${r.tokens.input}+${r.tokens.output}${r.tokens.estimated ? "~" : ""}` : "–";
    const status = document.createElement("span"); status.className = "s" + String(r.status)[0]; status.textContent = r.status;
    const tr = row([new Date(r.time).toLocaleTimeString(), r.request_id, r.route, r.model, r.key_id, status,
      fmt.format(r.ms), r.ttft_ms == null ? "–" : fmt.format(r.ttft_ms), tokens, r.outcome], "new");
    tr.title = r.path;
    const body = $("tail");
    body.prepend(tr);
    while (body.children.length > 200) body.lastChild.remove();
  });
}

async function loadConfig() {
  const res = await api("/api/config");
  $("config-text").value = await res.text();
  $("problems").replaceChildren(); $("validate-result").textContent = "";
}

$("validate").addEventListener("click", async () => {
  const res = await api("/api/check", { method: "POST", headers: { "content-type": "application/yaml" }, body: $("config-text").value });
  const out = await res.json();
  $("validate-result").textContent = out.ok ? "✓ valid" : `${out.problems.length} problem(s)`;
  $("validate-result").className = out.ok ? "s2" : "error";
  $("problems").replaceChildren(...out.problems.map((p) => { const li = document.createElement("li"); li.textContent = p; return li; }));
});

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await fetch("/api/login", { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: $("login-key").value }) });
  $("login-key").value = "";
  if (res.ok) { $("login-error").hidden = true; start(); } else { $("login-error").textContent = "That key is not the admin key."; $("login-error").hidden = false; }
});

$("logout").addEventListener("click", async () => { await fetch("/api/logout", { method: "POST", credentials: "same-origin" }); showLogin(); });
for (const b of document.querySelectorAll("#tabs button[data-tab]")) b.addEventListener("click", () => show(b.dataset.tab));

fetch("/api/session", { credentials: "same-origin" }).then((r) => (r.ok ? start() : showLogin()), showLogin);
