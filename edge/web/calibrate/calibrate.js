// roadside calibration page: draw, move, rename, flip and delete count lines; draw and edit zones; save.
// Plain JS, no build step, no CDN. Coordinates are source-frame pixels (x right, y down), as in the site file.
// A line a->b counts "forward" when a vehicle crosses to the right-hand side of a->b as seen on screen:
// the arrow at the line's middle points there.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");
const HANDLE = 9; // screen pixels: grab radius of a handle

const state = {
  camera: null, info: null, lines: [], zones: [], selected: null, // {kind, index}
  tool: "select", drawing: null, drag: null, live: null, problems: [], history: [],
  frame: new Image(), frameOk: false, dirty: false,
};

// ---------- helpers ----------
const scale = () => canvas.width / canvas.getBoundingClientRect().width; // frame px per screen px
const dist = (p, q) => Math.hypot(p[0] - q[0], p[1] - q[1]);
const round1 = (v) => Math.round(v * 10) / 10;
function clampPt(p) {
  return [round1(Math.min(Math.max(p[0], 0), canvas.width)), round1(Math.min(Math.max(p[1], 0), canvas.height))];
}
function eventPoint(ev) {
  const r = canvas.getBoundingClientRect();
  const s = canvas.width / r.width;
  return [(ev.clientX - r.left) * s, (ev.clientY - r.top) * (canvas.height / r.height)];
}
function distToSegment(p, a, b) {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / Math.max(dx * dx + dy * dy, 1e-9)));
  return dist(p, [a[0] + t * dx, a[1] + t * dy]);
}
function pointInPolygon(p, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > p[1]) !== (yj > p[1]) && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
function forwardNormal(a, b) { // unit normal pointing to the forward side (y down)
  const dx = b[0] - a[0], dy = b[1] - a[1], n = Math.hypot(dx, dy) || 1;
  return [-dy / n, dx / n];
}
function nextId(prefix, items) {
  for (let i = 1; ; i++) if (!items.some((it) => it.id === prefix + i)) return prefix + i;
}
function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = cls || ""; }
function token() { return $("token").value.trim(); }
function headers(withToken) {
  const h = { "Content-Type": "application/json" };
  if (withToken && token()) h.Authorization = "Bearer " + token();
  return h;
}
function item(sel) { return sel ? (sel.kind === "line" ? state.lines : state.zones)[sel.index] : null; }
function layoutBody() { return { lines: state.lines, zones: state.zones, by: $("by").value.trim() || null }; }

// ---------- undo ----------
function remember() {
  state.history.push(JSON.stringify({ lines: state.lines, zones: state.zones }));
  if (state.history.length > 100) state.history.shift();
}
function undo() {
  const prev = state.history.pop();
  if (!prev) return;
  const h = JSON.parse(prev);
  state.lines = h.lines; state.zones = h.zones; state.selected = null;
  changed();
}

// ---------- loading ----------
async function loadCameras(want) {
  const r = await fetch("/api/calibrate/cameras");
  const cams = await r.json();
  const sel = $("camera");
  sel.innerHTML = "";
  for (const c of cams) sel.add(new Option(c.camera, c.camera));
  if (!cams.length) { // a fresh box: the first thing to do is to add a camera
    state.camera = null; state.info = null; state.lines = []; state.zones = []; state.live = null; state.frameOk = false;
    $("camera-panel").open = true;
    const dev = await (await fetch("/api/calibrate/device")).json();
    setStatus(dev.saving ? "no camera yet, and saving is off: " + dev.saving
      : "no camera yet: add one under camera settings (its id and source)", "error");
    renderItems(); draw();
    return;
  }
  want = want || new URLSearchParams(location.search).get("camera");
  await selectCamera(cams.some((c) => c.camera === want) ? want : cams[0].camera);
}
async function selectCamera(cam) {
  state.camera = cam;
  $("camera").value = cam;
  const r = await fetch(`/api/calibrate/cameras/${encodeURIComponent(cam)}`);
  state.info = await r.json();
  if (state.info.width) { canvas.width = state.info.width; canvas.height = state.info.height; }
  state.lines = state.info.lines; state.zones = state.info.zones;
  state.selected = null; state.history = []; state.problems = []; state.dirty = false;
  state.frameOk = false; state.live = null;
  fillCameraForm(state.info);
  if (state.info.saving) setStatus("saving is off: " + state.info.saving, "error");
  renderItems(); draw();
}

// ---------- the camera itself: its id and source ----------
function fillCameraForm(info) {
  const src = info.source || {};
  $("cam-id").value = info.camera; $("cam-source").value = src.source || "";
  $("cam-loop").checked = !!src.loop; $("cam-transport").value = src.rtsp_transport || "";
}
function cameraBody() {
  const b = { id: $("cam-id").value.trim(), source: $("cam-source").value.trim(), loop: $("cam-loop").checked,
    by: $("by").value.trim() || null };
  if ($("cam-transport").value) b.rtsp_transport = $("cam-transport").value;
  return b;
}
function camStatus(text, cls, problems) {
  const s = $("cam-status"); s.textContent = text; s.className = cls || "";
  const ul = $("cam-errors"); ul.innerHTML = "";
  for (const p of problems || []) { const li = document.createElement("li"); li.textContent = p.text; ul.appendChild(li); }
}
async function cameraCall(method, url, body, busy) {
  if (!token()) { camStatus("enter the API token first (top right)", "error"); return null; }
  camStatus(busy);
  const r = await fetch(url, { method, headers: headers(true), body: body ? JSON.stringify(body) : undefined });
  let res = {};
  try { res = await r.json(); } catch (e) { /* no body */ }
  if (r.ok) return res;
  const why = r.status === 401 || r.status === 403 ? `refused (${res.detail || r.status}); check the API token`
    : (res.detail || r.status);
  camStatus("not done: " + why, "error", res.problems);
  return null;
}
async function probeCamera() {
  const res = await cameraCall("POST", "/api/calibrate/probe", cameraBody(), "opening the source…");
  if (res) camStatus(`the source opens: ${res.width}x${res.height} frames`, "ok");
}
async function addCamera() {
  const body = cameraBody();
  const res = await cameraCall("POST", "/api/calibrate/cameras", body, "opening the source and adding the camera…");
  if (!res) return;
  await loadCameras(body.id);
  camStatus(`camera ${body.id} added and started (${res.frame.width}x${res.frame.height}); draw its lines and zones, then save`, "ok");
}
async function changeSource() {
  if (!state.camera) { camStatus("no camera selected: add one", "error"); return; }
  const cam = state.camera, body = cameraBody();
  const res = await cameraCall("PUT", `/api/calibrate/cameras/${encodeURIComponent(cam)}/source`, body,
    "opening the new source…");
  if (!res) return;
  await loadCameras(cam);
  camStatus(`camera ${cam} restarted on its new source (${res.frame.width}x${res.frame.height})`, "ok");
}
async function removeCamera() {
  if (!state.camera) { camStatus("no camera selected", "error"); return; }
  const cam = state.camera;
  if (!confirm(`Remove camera ${cam} from the site file and stop it? (The file's backup and the change log keep it.)`)) return;
  const by = encodeURIComponent($("by").value.trim() || "installer");
  const res = await cameraCall("DELETE", `/api/calibrate/cameras/${encodeURIComponent(cam)}?by=${by}`, null, "removing…");
  if (!res) return;
  await loadCameras();
  camStatus(`camera ${cam} removed and stopped`, "ok");
}

// ---------- live frame, tracks and counts ----------
function refreshFrame() {
  if (!state.camera) return setTimeout(refreshFrame, 500);
  const img = new Image(), cam = state.camera;
  img.onload = () => {
    if (cam !== state.camera) return refreshFrame(); // the camera changed meanwhile
    state.frame = img; state.frameOk = true;
    if (img.naturalWidth && (canvas.width !== img.naturalWidth || canvas.height !== img.naturalHeight)) {
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    }
    draw(); setTimeout(refreshFrame, 400);
  };
  img.onerror = () => setTimeout(refreshFrame, 1000);
  img.src = `/api/calibrate/cameras/${encodeURIComponent(state.camera)}/frame.jpg?t=${Date.now()}`;
}
let livePolls = 0;
async function refreshLive() {
  try {
    if (state.camera) {
      const withPaths = livePolls++ % 4 === 0; // the paths and the lines' verdicts change slowly: every 2 s
      const cam = state.camera, minutes = $("heat-minutes").value;
      const r = await fetch(`/api/calibrate/cameras/${encodeURIComponent(cam)}/live?paths=${withPaths}&heat_minutes=${minutes}`);
      if (r.ok && cam === state.camera) {
        const live = await r.json();
        if (!withPaths && state.live) {
          live.paths = state.live.paths; live.line_health = state.live.line_health; live.heatmap = state.live.heatmap;
        }
        state.live = live; updateCounts(); draw();
      }
    }
  } catch (e) { /* the service restarts: try again */ }
  setTimeout(refreshLive, 500);
}

// ---------- validation and preview ----------
let validateTimer = null;
function changed() {
  state.dirty = true;
  renderItems(); draw();
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 250);
}
async function validate() {
  if (!state.camera) return [];
  const r = await fetch(`/api/calibrate/cameras/${encodeURIComponent(state.camera)}/validate`,
    { method: "POST", headers: headers(false), body: JSON.stringify(layoutBody()) });
  const res = await r.json();
  state.problems = res.problems || [];
  renderItems(); draw();
  if ($("preview").checked) sendPreview();
  return state.problems;
}
async function sendPreview() {
  if (!token()) { setStatus("preview needs the API token", "error"); return; }
  const body = $("preview").checked ? layoutBody() : { lines: [], zones: [] };
  const r = await fetch(`/api/calibrate/cameras/${encodeURIComponent(state.camera)}/preview`,
    { method: "POST", headers: headers(true), body: JSON.stringify(body) });
  if (!r.ok) setStatus("preview refused: " + ((await r.json()).detail || r.status), "error");
}

// ---------- saving ----------
async function save() {
  if (!state.camera) { setStatus("add a camera first (camera settings)", "error"); return; }
  const r = await fetch(`/api/calibrate/cameras/${encodeURIComponent(state.camera)}/layout`,
    { method: "PUT", headers: headers(true), body: JSON.stringify(layoutBody()) });
  let res = {};
  try { res = await r.json(); } catch (e) { /* no body */ }
  if (r.ok) {
    state.problems = []; state.dirty = false;
    setStatus(`saved and applied by ${res.by} at ${res.time}: config hash ${res.old_config_hash} → ${res.new_config_hash}`, "ok");
    state.info.config_hash = res.new_config_hash;
  } else if (r.status === 422) {
    state.problems = res.problems || [];
    setStatus(`not saved: ${res.detail}`, "error");
  } else if (r.status === 401 || r.status === 403) {
    setStatus(`not saved: refused (${res.detail || r.status}); enter the API token`, "error");
  } else {
    setStatus(`not saved: ${res.detail || r.status}`, "error");
  }
  renderItems(); draw();
}

// ---------- drawing ----------
function problemsOf(kind, index) { return state.problems.filter((p) => p.kind === kind && p.index === index); }
function draw() {
  const s = scale();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.frameOk) ctx.drawImage(state.frame, 0, 0, canvas.width, canvas.height);
  else { ctx.fillStyle = "#111"; ctx.fillRect(0, 0, canvas.width, canvas.height); }
  const live = state.live;
  if (live && live.heatmap && $("heat").checked) drawHeat(live.heatmap);
  if (live && $("overlay").checked) {
    ctx.lineWidth = 1.5 * s;
    for (const p of live.paths || []) {
      ctx.strokeStyle = p.active ? "rgba(120,255,120,0.8)" : "rgba(255,120,220,0.35)";
      ctx.beginPath();
      p.points.forEach((q, i) => (i ? ctx.lineTo(q[0], q[1]) : ctx.moveTo(q[0], q[1])));
      ctx.stroke();
    }
  }
  if (live) {
    ctx.font = `${12 * s}px sans-serif`;
    for (const t of live.tracks || []) {
      const [x1, y1, x2, y2] = t.box;
      ctx.strokeStyle = "#4fc3f7"; ctx.lineWidth = 2 * s;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const label = `#${t.id} ${t.category}`;
      ctx.fillStyle = "#0288d1"; ctx.fillRect(x1, y1 - 14 * s, ctx.measureText(label).width + 4 * s, 14 * s);
      ctx.fillStyle = "#fff"; ctx.fillText(label, x1 + 2 * s, y1 - 3 * s);
    }
  }
  state.zones.forEach((z, i) => drawZone(z, i, s));
  state.lines.forEach((ln, i) => drawLine(ln, i, s));
  if (state.drawing && state.drawing.kind === "zone") {
    const pts = state.drawing.points;
    ctx.strokeStyle = "#ffd54f"; ctx.lineWidth = 2 * s; ctx.setLineDash([6 * s, 4 * s]);
    ctx.beginPath();
    pts.forEach((q, i) => (i ? ctx.lineTo(q[0], q[1]) : ctx.moveTo(q[0], q[1])));
    if (state.drawing.cursor) ctx.lineTo(state.drawing.cursor[0], state.drawing.cursor[1]);
    ctx.stroke(); ctx.setLineDash([]);
    pts.forEach((q, i) => handle(q, s, i === 0 ? "#ff7043" : "#ffd54f"));
  }
}
function drawHeat(h) { // under the paths, zones and lines: more tracks, hotter and less transparent
  const c = h.cell_px;
  for (const [col, row, n] of h.cells) {
    const f = n / Math.max(h.max, 1);
    ctx.fillStyle = `rgba(255,${Math.round(220 * (1 - f))},0,${(0.15 + 0.5 * f).toFixed(3)})`;
    ctx.fillRect(col * c, row * c, c, c);
  }
}
function handle(p, s, colour) {
  ctx.fillStyle = colour; ctx.strokeStyle = "#000"; ctx.lineWidth = 1 * s;
  ctx.beginPath(); ctx.arc(p[0], p[1], 5 * s, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
}
function label(text, p, s, bg) {
  ctx.font = `bold ${13 * s}px sans-serif`;
  const w = ctx.measureText(text).width + 6 * s;
  ctx.fillStyle = bg; ctx.fillRect(p[0], p[1] - 15 * s, w, 17 * s);
  ctx.fillStyle = "#fff"; ctx.fillText(text, p[0] + 3 * s, p[1]);
}
function drawLine(ln, i, s) {
  const sel = state.selected && state.selected.kind === "line" && state.selected.index === i;
  const bad = problemsOf("line", i).length > 0;
  const colour = bad ? "#ff5252" : sel ? "#40c4ff" : "#ffeb3b";
  ctx.strokeStyle = colour; ctx.lineWidth = (sel ? 4 : 3) * s;
  ctx.beginPath(); ctx.moveTo(ln.a[0], ln.a[1]); ctx.lineTo(ln.b[0], ln.b[1]); ctx.stroke();
  const mid = [(ln.a[0] + ln.b[0]) / 2, (ln.a[1] + ln.b[1]) / 2];
  const n = forwardNormal(ln.a, ln.b);
  const tip = [mid[0] + 34 * s * n[0], mid[1] + 34 * s * n[1]];
  ctx.lineWidth = 3 * s; ctx.beginPath(); ctx.moveTo(mid[0], mid[1]); ctx.lineTo(tip[0], tip[1]); ctx.stroke();
  const back = [tip[0] - 12 * s * n[0], tip[1] - 12 * s * n[1]], side = [-n[1] * 8 * s, n[0] * 8 * s];
  ctx.fillStyle = colour; ctx.beginPath(); ctx.moveTo(tip[0], tip[1]);
  ctx.lineTo(back[0] + side[0], back[1] + side[1]); ctx.lineTo(back[0] - side[0], back[1] - side[1]); ctx.fill();
  handle(ln.a, s, "#66bb6a"); handle(ln.b, s, "#42a5f5");
  const c = lineCounts(ln.id);
  label(`${ln.id} forward →` + (c ? ` ${c.fwd} / back ${c.bwd}` : ""), [tip[0] + 4 * s, tip[1] + 5 * s], s,
    bad ? "rgba(183,28,28,0.85)" : "rgba(0,0,0,0.65)");
  if (bad) label(problemsOf("line", i)[0].message, [mid[0] - 20 * s, mid[1] - 22 * s], s, "rgba(183,28,28,0.85)");
}
function drawZone(z, i, s) {
  const sel = state.selected && state.selected.kind === "zone" && state.selected.index === i;
  const bad = problemsOf("zone", i).length > 0;
  const occ = zoneOccupancy(z.id);
  ctx.beginPath();
  z.polygon.forEach((q, k) => (k ? ctx.lineTo(q[0], q[1]) : ctx.moveTo(q[0], q[1])));
  ctx.closePath();
  ctx.fillStyle = bad ? "rgba(255,82,82,0.2)" : "rgba(255,171,0,0.15)"; ctx.fill();
  ctx.strokeStyle = bad ? "#ff5252" : sel ? "#40c4ff" : "#ffab00";
  ctx.lineWidth = (occ && occ.occupied ? 6 : sel ? 3 : 2) * s; // the outline thickens while occupied
  ctx.stroke();
  if (sel) {
    z.polygon.forEach((q) => handle(q, s, "#ffab00"));
    z.polygon.forEach((q, k) => { // edge midpoints: drag one to insert a corner there
      const r = z.polygon[(k + 1) % z.polygon.length];
      const m = [(q[0] + r[0]) / 2, (q[1] + r[1]) / 2];
      ctx.fillStyle = "rgba(255,255,255,0.7)"; ctx.beginPath(); ctx.arc(m[0], m[1], 3.5 * s, 0, 2 * Math.PI); ctx.fill();
    });
  }
  label(`${z.id}` + (occ ? `: ${occ.count}` : ""), z.polygon[0], s, bad ? "rgba(183,28,28,0.85)" : "rgba(120,70,0,0.8)");
  if (bad) label(problemsOf("zone", i)[0].message, [z.polygon[0][0], z.polygon[0][1] + 20 * s], s, "rgba(183,28,28,0.85)");
}
function sumDir(d) { return Object.values(d || {}).reduce((a, b) => a + b, 0); }
function lineCounts(id) {
  const live = state.live;
  if (!live) return null;
  const src = state.dirty && live.preview ? live.preview.counts : live.counts;
  const c = src && src[id];
  return c ? { fwd: sumDir(c.forward), bwd: sumDir(c.backward) } : null;
}
function zoneOccupancy(id) {
  const live = state.live;
  if (!live) return null;
  const src = state.dirty && live.preview ? live.preview.zones : live.zones;
  return (src && src[id]) || null;
}

// ---------- the item list ----------
function field(labelText, value, onInput, attrs) {
  const l = document.createElement("label");
  l.textContent = labelText + " ";
  const inp = document.createElement("input");
  inp.type = "text"; inp.value = value == null ? "" : value;
  Object.assign(inp, attrs || {});
  inp.addEventListener("change", () => { remember(); onInput(inp.value.trim()); changed(); });
  l.appendChild(inp);
  return l;
}
function renderItems() {
  const box = $("items");
  const focusId = document.activeElement && document.activeElement.dataset && document.activeElement.dataset.key;
  box.innerHTML = "";
  const all = [...state.lines.map((it, i) => ["line", i, it]), ...state.zones.map((it, i) => ["zone", i, it])];
  if (!all.length) box.innerHTML = "<p>No lines or zones yet: press <kbd>L</kbd> and drag across the road, or <kbd>Z</kbd> and click the corners of a zone.</p>";
  for (const [kind, i, it] of all) {
    const div = document.createElement("div");
    const probs = problemsOf(kind, i);
    const sel = state.selected && state.selected.kind === kind && state.selected.index === i;
    div.className = "item" + (sel ? " selected" : "") + (probs.length ? " has-error" : "");
    div.id = `item-${kind}-${i}`;
    div.dataset.kind = kind; div.dataset.index = i;
    div.addEventListener("pointerdown", () => { if (!sel) { state.selected = { kind, index: i }; renderItems(); draw(); } });
    const head = document.createElement("div"); head.className = "row";
    head.innerHTML = `<span class="kind">${kind}</span>`;
    const idField = field("id", it.id, (v) => { it.id = v; }, { size: 8 });
    idField.querySelector("input").dataset.key = `${kind}-${i}-id`;
    idField.querySelector("input").className = "item-id";
    head.appendChild(idField);
    div.appendChild(head);
    const r1 = document.createElement("div"); r1.className = "row";
    r1.appendChild(field("name", it.name, (v) => { if (v) it.name = v; else delete it.name; }));
    div.appendChild(r1);
    const r2 = document.createElement("div"); r2.className = "row";
    r2.appendChild(field("approach", it.approach, (v) => { if (v) it.approach = v; else delete it.approach; }, { size: 6 }));
    r2.appendChild(field("movement", it.movement, (v) => { if (v) it.movement = v; else delete it.movement; }, { size: 6 }));
    div.appendChild(r2);
    const r3 = document.createElement("div"); r3.className = "row";
    const pl = document.createElement("label"); pl.textContent = "phase ";
    const ps = document.createElement("select"); ps.className = "phase";
    ps.add(new Option("(none)", ""));
    const phases = (state.info && state.info.phases) || [];
    for (const ph of phases) ps.add(new Option(ph, ph));
    if (it.phase && !phases.includes(it.phase)) ps.add(new Option(it.phase + " (unknown)", it.phase));
    ps.value = it.phase || "";
    ps.addEventListener("change", () => { remember(); if (ps.value) it.phase = ps.value; else delete it.phase; changed(); });
    pl.appendChild(ps); r3.appendChild(pl);
    div.appendChild(r3);
    const r4 = document.createElement("div"); r4.className = "row classes";
    r4.appendChild(document.createTextNode("classes: "));
    for (const cat of (state.info && state.info.categories) || []) {
      const cl = document.createElement("label");
      const cb = document.createElement("input"); cb.type = "checkbox"; cb.value = cat;
      cb.checked = !it.classes || it.classes.includes(cat);
      cb.addEventListener("change", () => {
        remember();
        const on = [...r4.querySelectorAll("input:checked")].map((x) => x.value);
        if (on.length === state.info.categories.length) delete it.classes; else it.classes = on;
        changed();
      });
      cl.appendChild(cb); cl.appendChild(document.createTextNode(cat)); r4.appendChild(cl);
    }
    div.appendChild(r4);
    const r5 = document.createElement("div"); r5.className = "row";
    if (kind === "line") {
      const flip = document.createElement("button"); flip.textContent = "flip"; flip.className = "flip-item";
      flip.addEventListener("click", () => { state.selected = { kind, index: i }; flipSelected(); });
      r5.appendChild(flip);
    }
    const del = document.createElement("button"); del.textContent = "delete"; del.className = "delete-item";
    del.addEventListener("click", () => { state.selected = { kind, index: i }; deleteSelected(); });
    r5.appendChild(del);
    const counts = document.createElement("span"); counts.className = "counts"; counts.id = `counts-${kind}-${i}`;
    r5.appendChild(counts);
    div.appendChild(r5);
    const warn = document.createElement("div"); warn.className = "warning"; warn.id = `warning-${kind}-${i}`;
    div.appendChild(warn);
    if (probs.length) {
      const ul = document.createElement("ul"); ul.className = "errors";
      for (const p of probs) { const li = document.createElement("li"); li.textContent = (p.field ? p.field + ": " : "") + p.message; ul.appendChild(li); }
      div.appendChild(ul);
    }
    box.appendChild(div);
  }
  if (focusId) { const f = box.querySelector(`[data-key="${focusId}"]`); if (f) f.focus(); }
  updateCounts();
}
function updateCounts() {
  const live = state.live;
  state.lines.forEach((ln, i) => {
    const el = $(`counts-line-${i}`), w = $(`warning-line-${i}`);
    const c = lineCounts(ln.id);
    if (el) el.textContent = c ? `${state.dirty && live.preview ? "preview" : "counted"}: forward ${c.fwd}, backward ${c.bwd}` : "";
    const h = live && live.line_health && live.line_health[ln.id];
    if (w) w.textContent = h && h.warning && !state.dirty ? "⚠ " + h.warning : "";
  });
  state.zones.forEach((z, i) => {
    const el = $(`counts-zone-${i}`), o = zoneOccupancy(z.id);
    if (el) el.textContent = o ? `${o.occupied ? "occupied" : "empty"}: ${o.count} vehicle(s)` : "";
  });
}

// ---------- editing ----------
function setTool(t) {
  state.tool = t; state.drawing = null;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === t);
  $("hint").textContent = {
    select: "Drag an end or the line itself; drag a zone's corner, its edge dots (insert a corner) or its inside. Double-click a corner to remove it.",
    line: "Press where the line starts, drag across the lanes, release. The arrow shows the forward side.",
    zone: "Click the corners; click the first corner (or press Enter) to close the zone; Esc cancels.",
  }[t];
  draw();
}
function flipSelected() {
  const it = item(state.selected);
  if (!it || state.selected.kind !== "line") return;
  remember(); [it.a, it.b] = [it.b, it.a]; changed();
}
function deleteSelected() {
  if (!state.selected) return;
  remember();
  (state.selected.kind === "line" ? state.lines : state.zones).splice(state.selected.index, 1);
  state.selected = null; changed();
}
function closeZone() {
  const d = state.drawing;
  if (!d || d.points.length < 3) return;
  remember();
  state.zones.push({ id: nextId("Z", state.zones), polygon: d.points.map(clampPt) });
  state.selected = { kind: "zone", index: state.zones.length - 1 };
  state.drawing = null; setTool("select"); changed();
}
function hitTest(p) {
  const r = HANDLE * scale();
  if (state.selected && state.selected.kind === "zone") { // corners and edge midpoints of the selected zone first
    const z = state.zones[state.selected.index];
    for (let k = 0; k < z.polygon.length; k++) if (dist(p, z.polygon[k]) <= r) return { kind: "zone", index: state.selected.index, vertex: k };
    for (let k = 0; k < z.polygon.length; k++) {
      const q = z.polygon[k], w = z.polygon[(k + 1) % z.polygon.length];
      if (dist(p, [(q[0] + w[0]) / 2, (q[1] + w[1]) / 2]) <= r) return { kind: "zone", index: state.selected.index, edge: k };
    }
  }
  for (let i = state.lines.length - 1; i >= 0; i--) {
    const ln = state.lines[i];
    if (dist(p, ln.a) <= r) return { kind: "line", index: i, end: "a" };
    if (dist(p, ln.b) <= r) return { kind: "line", index: i, end: "b" };
  }
  for (let i = state.lines.length - 1; i >= 0; i--) {
    if (distToSegment(p, state.lines[i].a, state.lines[i].b) <= r) return { kind: "line", index: i, body: true };
  }
  for (let i = state.zones.length - 1; i >= 0; i--) {
    const z = state.zones[i];
    for (let k = 0; k < z.polygon.length; k++) if (dist(p, z.polygon[k]) <= r) return { kind: "zone", index: i, vertex: k };
    if (pointInPolygon(p, z.polygon)) return { kind: "zone", index: i, body: true };
  }
  return null;
}
canvas.addEventListener("pointerdown", (ev) => {
  canvas.focus();
  const p = eventPoint(ev);
  canvas.setPointerCapture(ev.pointerId);
  if (state.tool === "line") {
    state.drawing = { kind: "line", a: clampPt(p), b: clampPt(p) };
    return;
  }
  if (state.tool === "zone") {
    if (!state.drawing) state.drawing = { kind: "zone", points: [] };
    const pts = state.drawing.points;
    if (pts.length >= 3 && dist(p, pts[0]) <= HANDLE * scale()) closeZone();
    else { pts.push(clampPt(p)); draw(); }
    return;
  }
  const hit = hitTest(p);
  state.selected = hit ? { kind: hit.kind, index: hit.index } : null;
  if (hit) {
    remember();
    if (hit.edge !== undefined) { // insert a corner on that edge and drag it
      const z = state.zones[hit.index];
      z.polygon.splice(hit.edge + 1, 0, clampPt(p));
      hit.vertex = hit.edge + 1; delete hit.edge;
    }
    state.drag = { ...hit, start: p, orig: JSON.parse(JSON.stringify(item(hit))), moved: false };
  }
  renderItems(); draw();
});
canvas.addEventListener("pointermove", (ev) => {
  const p = eventPoint(ev);
  if (state.drawing && state.drawing.kind === "line") { state.drawing.b = clampPt(p); drawPreviewLine(); return; }
  if (state.drawing && state.drawing.kind === "zone") { state.drawing.cursor = p; draw(); return; }
  const d = state.drag;
  if (!d) return;
  const it = item(d), dx = p[0] - d.start[0], dy = p[1] - d.start[1];
  d.moved = true;
  if (d.kind === "line") {
    if (d.end) it[d.end] = clampPt(p);
    else { it.a = clampPt([d.orig.a[0] + dx, d.orig.a[1] + dy]); it.b = clampPt([d.orig.b[0] + dx, d.orig.b[1] + dy]); }
  } else if (d.vertex !== undefined) it.polygon[d.vertex] = clampPt(p);
  else it.polygon = d.orig.polygon.map((q) => clampPt([q[0] + dx, q[1] + dy]));
  draw();
});
function drawPreviewLine() {
  draw();
  const d = state.drawing, s = scale();
  ctx.strokeStyle = "#ffd54f"; ctx.lineWidth = 3 * s; ctx.setLineDash([6 * s, 4 * s]);
  ctx.beginPath(); ctx.moveTo(d.a[0], d.a[1]); ctx.lineTo(d.b[0], d.b[1]); ctx.stroke(); ctx.setLineDash([]);
}
canvas.addEventListener("pointerup", (ev) => {
  if (state.drawing && state.drawing.kind === "line") {
    const d = state.drawing;
    state.drawing = null;
    if (dist(d.a, d.b) >= 5) {
      remember();
      state.lines.push({ id: nextId("L", state.lines), a: d.a, b: d.b });
      state.selected = { kind: "line", index: state.lines.length - 1 };
      setTool("select"); changed();
    } else draw();
    return;
  }
  if (state.drag) {
    const moved = state.drag.moved || state.drag.vertex !== undefined && state.drag.orig.polygon.length !== item(state.drag).polygon.length;
    state.drag = null;
    if (moved) changed(); else state.history.pop();
  }
});
canvas.addEventListener("dblclick", (ev) => {
  const hit = hitTest(eventPoint(ev));
  if (hit && hit.kind === "zone" && hit.vertex !== undefined) {
    const z = state.zones[hit.index];
    if (z.polygon.length > 3) { remember(); z.polygon.splice(hit.vertex, 1); changed(); }
  }
});
document.addEventListener("keydown", (ev) => {
  const typing = ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT";
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); save(); return; }
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z" && !typing) { ev.preventDefault(); undo(); return; }
  if (typing) return;
  const k = ev.key;
  if (k === "l" || k === "L") setTool("line");
  else if (k === "z" || k === "Z") setTool("zone");
  else if (k === "v" || k === "V") setTool("select");
  else if (k === "Escape") { state.drawing = null; setTool("select"); }
  else if (k === "Enter" && state.drawing && state.drawing.kind === "zone") closeZone();
  else if (k === "f" || k === "F") flipSelected();
  else if (k === "Delete" || k === "Backspace") deleteSelected();
  else if (k === "t" || k === "T") { $("overlay").checked = !$("overlay").checked; draw(); }
  else if (k === "h" || k === "H") { $("heat").checked = !$("heat").checked; draw(); }
  else if (k === "p" || k === "P") { $("preview").checked = !$("preview").checked; sendPreview(); }
  else return;
  ev.preventDefault();
});

// ---------- wiring ----------
for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
$("flip").addEventListener("click", flipSelected);
$("delete").addEventListener("click", deleteSelected);
$("undo").addEventListener("click", undo);
$("save").addEventListener("click", save);
$("overlay").addEventListener("change", draw);
$("heat").addEventListener("change", draw);
$("heat-minutes").addEventListener("change", () => { livePolls = 0; });
$("cam-probe").addEventListener("click", probeCamera);
$("cam-add").addEventListener("click", addCamera);
$("cam-change").addEventListener("click", changeSource);
$("cam-remove").addEventListener("click", removeCamera);
$("preview").addEventListener("change", sendPreview);
$("camera").addEventListener("change", () => selectCamera($("camera").value));
$("token").value = sessionStorage.getItem("roadside-token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("roadside-token", token()));
window.addEventListener("resize", draw);
window.addEventListener("beforeunload", (ev) => { if (state.dirty) { ev.preventDefault(); ev.returnValue = ""; } });
setTool("select");
loadCameras().then(() => { refreshFrame(); refreshLive(); });
