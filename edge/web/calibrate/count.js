// roadside manual count: play a recorded clip at a chosen speed and press a key per line and direction as
// each vehicle crosses; the box stores the count in the ground-truth format (shared/data/gt) for
// `roadside calibrate audit`. Plain JS, no build step, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d");
const FORWARD_KEYS = "123456789";
const BACKWARD_KEYS = "qwertyuio";
const CLASS_KEYS = "asdfghjkl";

const st = {
  camera: null, info: null, clip: null, meta: null, frame: 0, image: null, playing: false,
  events: [], category: null, t0: 0, f0: 0, busy: false, end: null,
  live: null, // a live count: {started (performance.now() ms), minutes, timer}
};

function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = cls || ""; }
function enc(s) { return encodeURIComponent(s); }

async function loadCameras() {
  const cams = await (await fetch("/api/calibrate/cameras")).json();
  for (const c of cams) $("camera").add(new Option(c.camera, c.camera));
  if (cams.length) await selectCamera(cams[0].camera);
}
async function selectCamera(cam) {
  st.camera = cam;
  st.info = await (await fetch(`/api/calibrate/cameras/${enc(cam)}`)).json();
  const cats = st.info.categories;
  st.category = cats.includes("car") ? "car" : cats[0];
  const clips = await (await fetch(`/api/calibrate/cameras/${enc(cam)}/clips`)).json();
  const sel = $("clip"); sel.innerHTML = "";
  for (const c of clips) sel.add(new Option(c, c));
  const want = new URLSearchParams(location.search).get("clip");
  if (clips.length) await selectClip(clips.includes(want) ? want : clips[0]);
  else setStatus("no recorded clip beside this camera's video: count the live camera instead", "error");
  renderKeys();
}
async function selectClip(name) {
  pause();
  if (st.live) return; // a live count goes on: the clip waits
  const r = await fetch(`/api/calibrate/cameras/${enc(st.camera)}/clips/${enc(name)}`);
  if (st.live) return; // it started while the clip was being opened
  if (!r.ok) { setStatus(`cannot open ${name}: ${(await r.json()).detail}`, "error"); return; }
  st.clip = name; st.meta = await r.json(); st.events = []; st.end = st.meta.frames;
  $("clip").value = name;
  canvas.width = st.meta.width; canvas.height = st.meta.height;
  await show(0);
  renderKeys(); renderLog();
  setStatus(`${name}: ${st.meta.width}x${st.meta.height} at ${st.meta.fps.toFixed(2)} fps`);
}

// Frames load asynchronously and may arrive out of order (a seek while a played frame is still loading):
// only the latest request is shown, so a late older frame never overwrites the one asked for last. Only the
// box's "past the end" (404, with the clip's length) ends the clip; any other failure is shown as one.
let showSeq = 0;
async function show(index) {
  const seq = ++showSeq;
  if (index < 0) index = 0;
  if (st.end != null && index >= st.end) index = st.end - 1;
  const url = `/api/calibrate/cameras/${enc(st.camera)}/clips/${enc(st.clip)}/frames/${index}.jpg`;
  let r, img;
  try {
    r = await fetch(url);
    if (r.ok) { img = new Image(); img.src = URL.createObjectURL(await r.blob()); await img.decode(); }
  } catch (e) {
    if (seq === showSeq) { pause(); setStatus(`frame ${index} could not be loaded: ${e.message || e}`, "error"); }
    return false;
  }
  if (st.live || seq !== showSeq) { if (img) URL.revokeObjectURL(img.src); return false; }
  if (!r.ok) {
    let detail = `HTTP ${r.status}`;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON: the status says it */ }
    pause();
    const frames = parseInt(r.headers.get("X-Frames"), 10);
    if (r.status === 404 && frames >= 0) { // past the end: the clip's length is known now
      st.end = frames; setStatus(`end of the clip (${frames} frames)`);
    } else setStatus(`frame ${index} cannot be shown: ${detail}`, "error");
    return false;
  }
  if (st.image && st.image.src.startsWith("blob:")) URL.revokeObjectURL(st.image.src);
  st.image = img; st.frame = index; canvas.dataset.frame = index; draw();
  if (document.activeElement !== $("seek")) $("seek").value = index; // never under a frame number being typed
  return true;
}

function play() {
  if (!st.clip) return;
  st.playing = true; st.t0 = performance.now(); st.f0 = st.frame;
  $("play").textContent = "Pause"; tick();
}
// Pausing drops a played frame still loading (showSeq), so the frame on screen is the one paused at, and a
// seek typed right after never races a late played frame for the frame box.
function pause() { st.playing = false; showSeq++; $("play").textContent = "Play"; }
async function tick() {
  if (!st.playing) return;
  if (!st.busy) {
    const speed = parseFloat($("speed").value);
    const target = st.f0 + Math.floor(((performance.now() - st.t0) / 1000) * st.meta.fps * speed);
    if (target !== st.frame) { st.busy = true; const ok = await show(target); st.busy = false; if (!ok) return; }
  }
  setTimeout(tick, 5);
}

function draw() {
  if (st.image) ctx.drawImage(st.image, 0, 0, canvas.width, canvas.height);
  const s = canvas.width / canvas.getBoundingClientRect().width;
  (st.info ? st.info.lines : []).forEach((ln, i) => {
    ctx.strokeStyle = "#ffeb3b"; ctx.lineWidth = 3 * s;
    ctx.beginPath(); ctx.moveTo(ln.a[0], ln.a[1]); ctx.lineTo(ln.b[0], ln.b[1]); ctx.stroke();
    const mid = [(ln.a[0] + ln.b[0]) / 2, (ln.a[1] + ln.b[1]) / 2];
    const dx = ln.b[0] - ln.a[0], dy = ln.b[1] - ln.a[1], n = Math.hypot(dx, dy) || 1;
    const tip = [mid[0] - (dy / n) * 30 * s, mid[1] + (dx / n) * 30 * s];
    ctx.beginPath(); ctx.moveTo(mid[0], mid[1]); ctx.lineTo(tip[0], tip[1]); ctx.stroke();
    const c = counts(ln.id);
    const text = `${ln.id}  [${FORWARD_KEYS[i]}] forward ${c.forward}  [${BACKWARD_KEYS[i]}] backward ${c.backward}`;
    ctx.font = `bold ${14 * s}px sans-serif`;
    ctx.fillStyle = "rgba(0,0,0,0.7)"; ctx.fillRect(tip[0], tip[1] - 16 * s, ctx.measureText(text).width + 8 * s, 20 * s);
    ctx.fillStyle = "#fff"; ctx.fillText(text, tip[0] + 4 * s, tip[1]);
  });
  ctx.font = `bold ${16 * s}px sans-serif`; ctx.fillStyle = "rgba(0,0,0,0.7)"; ctx.fillRect(0, 0, 300 * s, 24 * s);
  ctx.fillStyle = "#fff";
  ctx.fillText(st.live ? `live  ${st.category || ""}` : `frame ${st.frame}  ${st.playing ? "playing" : "paused"}  ${$("speed").value}×  ${st.category || ""}`, 6 * s, 17 * s);
}
function counts(line) {
  const c = { forward: 0, backward: 0 };
  for (const e of st.events) if (e.line === line) c[e.direction]++;
  return c;
}
function renderKeys() {
  const t = $("keys"); t.innerHTML = "<tr><th>line</th><th>forward</th><th>backward</th></tr>";
  (st.info ? st.info.lines : []).forEach((ln, i) => {
    const c = counts(ln.id);
    const tr = document.createElement("tr"); tr.id = `keys-${ln.id}`;
    tr.innerHTML = `<td>${ln.id}</td><td><kbd>${FORWARD_KEYS[i]}</kbd> <span class="n-forward">${c.forward}</span></td>` +
      `<td><kbd>${BACKWARD_KEYS[i]}</kbd> <span class="n-backward">${c.backward}</span></td>`;
    t.appendChild(tr);
  });
  const cats = st.info ? st.info.categories : [];
  $("class").innerHTML = cats.map((c, i) => `<span class="${c === st.category ? "counts" : ""}"><kbd>${CLASS_KEYS[i]}</kbd> ${c}</span>`).join(" ");
}
function renderLog() {
  const ol = $("log"); ol.innerHTML = "";
  for (const e of [...st.events].reverse().slice(0, 30)) {
    const li = document.createElement("li");
    li.textContent = `${e.t_s !== undefined ? e.t_s.toFixed(1) + " s" : "frame " + e.frame}: ${e.line} ${e.direction} ${e.class}`;
    ol.appendChild(li);
  }
  renderKeys(); draw();
}
function press(line, direction) {
  if (st.live) st.events.push({ line, direction, t_s: (performance.now() - st.live.started) / 1000, class: st.category });
  else st.events.push({ line, direction, frame: st.frame, class: st.category, speed: parseFloat($("speed").value) });
  renderLog();
}

// ---------- a count of the live camera ----------
function tokenHeaders() {
  const token = $("token").value.trim();
  return { "Content-Type": "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) };
}
async function startLive() {
  pause();
  const minutes = parseFloat($("live-minutes").value);
  const r = await fetch(`/api/calibrate/cameras/${enc(st.camera)}/live-count`,
    { method: "POST", headers: tokenHeaders(), body: JSON.stringify({ minutes }) });
  const res = await r.json();
  if (!r.ok) { setStatus(`cannot start: ${res.detail}`, "error"); return; }
  st.events = []; st.clip = null; $("live-result").innerHTML = "";
  st.live = { started: performance.now(), minutes, timer: setTimeout(finishLive, minutes * 60000) };
  $("live-start").disabled = true; $("live-finish").disabled = false; $("play").disabled = true;
  renderLog(); liveFrame(); liveClock();
}
function liveFrame() { // the newest processed frame, one after the other, at most ~10 a second (the box encodes each)
  if (!st.live) return;
  const img = new Image();
  img.onload = () => { st.image = img; canvas.width = img.naturalWidth; canvas.height = img.naturalHeight; draw(); setTimeout(liveFrame, 100); };
  img.onerror = () => setTimeout(liveFrame, 300);
  img.src = `/api/calibrate/cameras/${enc(st.camera)}/frame.jpg?t=${Date.now()}`;
}
function liveClock() {
  if (!st.live) return;
  const left = st.live.minutes * 60 - (performance.now() - st.live.started) / 1000;
  setStatus(`counting the live camera: ${Math.max(0, left).toFixed(0)} s left`);
  setTimeout(liveClock, 500);
}
async function finishLive() {
  if (!st.live) return;
  clearTimeout(st.live.timer);
  st.live = null;
  $("live-start").disabled = false; $("live-finish").disabled = true; $("play").disabled = false;
  const r = await fetch(`/api/calibrate/cameras/${enc(st.camera)}/live-count`, {
    method: "PUT", headers: tokenHeaders(),
    body: JSON.stringify({ events: st.events.map(({ line, direction, t_s, class: c }) => ({ line, direction, t_s, class: c })),
      by: $("by").value.trim() || null }),
  });
  const res = await r.json();
  if (!r.ok) { setStatus(`not saved: ${res.detail}`, "error"); return; }
  const doc = res.document;
  const t = $("live-result");
  t.innerHTML = "<tr><th>line</th><th>direction</th><th>you</th><th>the box</th></tr>";
  for (const ln of doc.lines) for (const d of ["forward", "backward"]) {
    const you = ((doc.totals[ln.id] || {})[d] || {}).total || 0, box = ((doc.counted[ln.id] || {})[d] || {}).total || 0;
    const tr = document.createElement("tr"); tr.id = `live-${ln.id}-${d}`; tr.className = you === box ? "" : "differs";
    tr.innerHTML = `<td>${ln.id}</td><td>${d}</td><td class="you">${you}</td><td class="box">${box}</td>`;
    t.appendChild(tr);
  }
  setStatus(`saved ${doc.n_events} vehicles counted live in ${doc.duration_s} s${doc.complete ? "" : " (ended early)"} to ${res.path}`, "ok");
}
async function save() {
  const token = $("token").value.trim();
  const r = await fetch(`/api/calibrate/cameras/${enc(st.camera)}/manual-counts`, {
    method: "POST", headers: { "Content-Type": "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) },
    body: JSON.stringify({ clip: st.clip, events: st.events, by: $("by").value.trim() || null, complete: st.end != null }),
  });
  const res = await r.json();
  if (!r.ok) { setStatus(`not saved: ${res.detail}`, "error"); return; }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([JSON.stringify(res.document, null, 1)], { type: "application/json" }));
  a.download = res.path.split("/").pop(); a.textContent = "download";
  setStatus(`saved ${res.document.n_events} vehicles to ${res.path} `, "ok");
  $("status").appendChild(a);
}

document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); st.live ? finishLive() : save(); return; }
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  const lines = st.info ? st.info.lines : [];
  const fi = FORWARD_KEYS.indexOf(k), bi = BACKWARD_KEYS.indexOf(k), ci = CLASS_KEYS.indexOf(k);
  if (k === " ") { if (!st.live) st.playing ? pause() : play(); }
  else if (fi >= 0 && fi < lines.length) press(lines[fi].id, "forward");
  else if (bi >= 0 && bi < lines.length) press(lines[bi].id, "backward");
  else if (ci >= 0 && st.info && ci < st.info.categories.length) { st.category = st.info.categories[ci]; renderKeys(); draw(); }
  else if (k === "ArrowRight" && !st.playing && !st.live) show(st.frame + (ev.shiftKey ? 10 : 1));
  else if (k === "ArrowLeft" && !st.playing && !st.live) show(st.frame - (ev.shiftKey ? 10 : 1));
  else if (k === "Backspace") { st.events.pop(); renderLog(); }
  else return;
  ev.preventDefault();
});
$("play").addEventListener("click", () => (st.playing ? pause() : play()));
$("save").addEventListener("click", () => (st.live ? finishLive() : save()));
$("live-start").addEventListener("click", startLive);
$("live-finish").addEventListener("click", finishLive);
$("camera").addEventListener("change", () => selectCamera($("camera").value));
$("clip").addEventListener("change", () => selectClip($("clip").value));
$("seek").addEventListener("change", () => { pause(); show(parseInt($("seek").value, 10) || 0); });
$("speed").addEventListener("change", () => { if (st.playing) { pause(); play(); } draw(); });
$("token").value = sessionStorage.getItem("roadside-token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("roadside-token", $("token").value.trim()));
loadCameras();
