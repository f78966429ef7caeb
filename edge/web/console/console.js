// The operator's console: polls /api/console (one small JSON, cached by the service for a second) every 2 s
// and each camera's snapshot every 2 s; draws the counts of the last hour as inline SVG. No external assets.
"use strict";
const REFRESH_MS = 2000;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"];
const $ = (id) => document.getElementById(id);
const fmt = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const ago = (s) => (s === null || s === undefined ? "–" : s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

function cameraCard(id) {
  let card = document.getElementById(`cam-${id}`);
  if (card) return card;
  card = document.createElement("div");
  card.className = "card";
  card.id = `cam-${id}`;
  card.innerHTML = `<h2>camera ${esc(id)} <span class="pill state"></span><span class="muted reasons"></span></h2>
    <div class="camera">
      <div><img alt="annotated snapshot of camera ${esc(id)}" class="snapshot"></div>
      <div><table class="stats">
        <tr><th>processed</th><td class="fps"></td></tr>
        <tr><th>from source</th><td class="fps-in"></td></tr>
        <tr><th>detector latency</th><td class="latency"></td></tr>
        <tr><th>frames dropped</th><td class="dropped"></td></tr>
        <tr><th>last frame</th><td class="frame-age"></td></tr>
        <tr><th>last counts acked</th><td class="publish-age"></td></tr>
        <tr><th>model</th><td class="model"></td></tr>
      </table></div>
    </div>
    <h3>Counts per line and direction, last hour <span class="muted bin"></span></h3>
    <svg class="chart" viewBox="0 0 600 180" preserveAspectRatio="none" role="img" aria-label="counts chart of camera ${esc(id)}"></svg>
    <div class="legend"></div>`;
  $("cameras").appendChild(card);
  return card;
}

function drawChart(svg, legend, hist, lines, now) {
  const W = 600, H = 180, L = 28, B = 16, T = 6;
  const bins = (hist && hist.bins) || [];
  const step = (hist && hist.interval_s) || 60;
  // the last hour; while the service has run for less, the time it has (at least 10 minutes)
  const first = bins.length ? bins[0].t : now;
  const span = Math.min(3600, Math.max(600, now - first + step));
  const t0 = now - span;
  const series = [];
  lines.forEach((ln) => ["forward", "backward"].forEach((dir) => series.push({key: `${ln} ${dir === "forward" ? "→" : "←"}`, ln, dir})));
  let max = 1;
  bins.forEach((b) => series.forEach((s) => { const v = ((b.lines[s.ln] || {})[s.dir]) || 0; if (v > max) max = v; }));
  const x = (t) => L + ((t - t0) / span) * (W - L - 4);
  const y = (v) => H - B - (v / max) * (H - B - T);
  let out = `<line x1="${L}" y1="${H - B}" x2="${W}" y2="${H - B}" stroke="#ccc"/>`;
  out += `<text x="2" y="${T + 8}">${max}</text><text x="2" y="${H - B}">0</text>`;
  const tick = span > 1800 ? 15 : span > 900 ? 5 : 2;
  for (let m = Math.floor(span / 60 / tick) * tick; m >= 0; m -= tick) {
    out += `<text x="${Math.min(W - 24, Math.max(L, x(now - m * 60) - 12))}" y="${H - 3}">${m ? "-" + m + " min" : "now"}</text>`;
  }
  series.forEach((s, i) => {
    const pts = bins.filter((b) => b.t >= t0).map((b) => `${x(b.t + step / 2).toFixed(1)},${y(((b.lines[s.ln] || {})[s.dir]) || 0).toFixed(1)}`);
    if (pts.length) out += `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5" points="${pts.join(" ")}" data-series="${esc(s.key)}"/>`;
  });
  svg.innerHTML = out;
  const totals = series.map((s) => bins.reduce((n, b) => n + (((b.lines[s.ln] || {})[s.dir]) || 0), 0));
  legend.innerHTML = series.map((s, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.key)}: ${totals[i]}</span>`).join("");
}

function planText(plan) {
  if (!plan || !Object.keys(plan).length) return "–";
  const parts = [];
  if (plan.greens) parts.push(Object.entries(plan.greens).map(([st, g]) => `${esc(st)} ${fmt(g, 0)} s`).join(", "));
  if (plan.phases) parts.push(Object.entries(plan.phases).map(([p, t]) =>
    `${esc(p)} ${fmt(t.min_green, 0)}–${fmt(t.max_green, 0)} s`).join(", "));
  if (plan.cycle_s) parts.push(`cycle ${fmt(plan.cycle_s, 0)} s`);
  return parts.join("<br>") + (plan.why ? `<div class="muted">${esc(plan.why)}</div>` : "");
}

function render(doc) {
  $("site").textContent = `${doc.site} / ${doc.device}`;
  const ready = $("ready");
  ready.textContent = doc.ready ? "ready" : "not ready";
  ready.className = "pill " + (doc.ready ? "ok" : "bad");
  $("updated").textContent = `updated ${new Date(doc.ts * 1000).toLocaleTimeString()}`;
  for (const [id, c] of Object.entries(doc.cameras)) {
    const card = cameraCard(id);
    const q = (sel) => card.querySelector(sel);
    q(".state").textContent = c.state;
    q(".state").className = "pill state " + c.state;
    q(".reasons").textContent = (c.reasons || []).join("; ");
    q(".fps").textContent = `${fmt(c.fps_processed)} frames/s`;
    q(".fps-in").textContent = `${fmt(c.fps_in)} frames/s (${c.width || "?"}×${c.height || "?"})`;
    q(".latency").textContent = `${fmt(c.detector_latency_ms)} ms`;
    q(".dropped").textContent = `${c.frames_dropped} of ${c.frames_in}`;
    q(".frame-age").textContent = c.last_frame_age_s === null ? "–" : `${fmt(c.last_frame_age_s, 2)} s ago`;
    q(".publish-age").textContent = c.last_publish_age_s === null ? "never" : `${ago(c.last_publish_age_s)} ago`;
    q(".model").textContent = c.model;
    const hist = doc.counts[id];
    q(".bin").textContent = hist ? `(${hist.interval_s} s bins)` : "";
    drawChart(q(".chart"), q(".legend"), hist, c.lines, doc.ts);
  }
  const b = doc.broker;
  $("broker-state").innerHTML = `<span class="pill ${b.connected ? "ok" : "bad"}">${esc(b.state)}</span> ${esc(b.last_error && !b.connected ? b.last_error : "")}`;
  $("broker-address").textContent = b.address;
  $("outbox-depth").textContent = doc.outbox.depth;
  $("outbox-age").textContent = ago(doc.outbox.oldest_age_s);
  $("outbox-dropped").textContent = doc.outbox.dropped_total;
  $("counts-acked").textContent = `${b.counts_published} / ${b.counts_acked}`;
  $("topics").textContent = `${doc.topic_prefix}/…`;
  const k = doc.controller;
  $("ctrl-status").innerHTML = k.heard ? `<span class="pill ${k.status === "offline" ? "bad" : "ok"}">${esc(k.status || "online")}</span>`
    : `<span class="pill warn">not heard from</span>`;
  $("ctrl-mode").innerHTML = k.mode ? `<span class="pill ${k.mode === "normal" ? "ok" : "warn"}">${esc(k.mode)}</span>` +
    (Object.keys(k.failsafe_phases || {}).length ? ` <span class="muted">${esc(Object.keys(k.failsafe_phases).join(", "))}</span>` : "") : "–";
  $("ctrl-stage").textContent = k.stage ? `${k.stage}${k.changing_to ? " → " + k.changing_to : ""} (${fmt(k.time_in_stage_s, 0)} s)` : "–";
  $("ctrl-policy").textContent = k.policy || "–";
  $("ctrl-plan").innerHTML = planText(k.plan);
  $("ctrl-signals").innerHTML = Object.entries(k.signals || {}).map(([p, s]) => `<span class="signal ${esc(s)}">${esc(p)}</span>`).join("");
  $("ctrl-decisions").innerHTML = (k.decisions || []).map((d) =>
    `<li><b>${esc(d.from)} → ${esc(d.to)}</b> ${esc(d.reason)} <span class="muted">${esc((d.ts || "").slice(11, 19))}</span></li>`).join("") || "<li class=muted>none yet</li>";
  $("ctrl-events").innerHTML = (k.events || []).map((e) =>
    `<li>${esc(e.type)} <span class="muted">${esc(JSON.stringify(e.detail).slice(0, 120))} ${esc((e.ts || "").slice(11, 19))}</span></li>`).join("") || "<li class=muted>none</li>";
}

async function tick() {
  try {
    const r = await fetch("/api/console", {cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const doc = await r.json();
    render(doc);
    for (const id of Object.keys(doc.cameras)) {
      const img = cameraCard(id).querySelector(".snapshot");
      const s = await fetch(`/console/cameras/${encodeURIComponent(id)}/snapshot.jpg`, {cache: "no-store"});
      if (s.ok) {
        const url = URL.createObjectURL(await s.blob());
        const old = img.src;
        img.src = url;
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      }
    }
  } catch (e) {
    $("ready").textContent = "edge service unreachable";
    $("ready").className = "pill bad";
  }
  setTimeout(tick, REFRESH_MS);
}
tick();
