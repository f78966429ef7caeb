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
  else setStatus("no recorded clip beside this camera's video", "error");
  renderKeys();
}
async function selectClip(name) {
  pause();
  const r = await fetch(`/api/calibrate/cameras/${enc(st.camera)}/clips/${enc(name)}`);
  if (!r.ok) { setStatus(`cannot open ${name}: ${(await r.json()).detail}`, "error"); return; }
  st.clip = name; st.meta = await r.json(); st.events = []; st.end = st.meta.frames;
  $("clip").value = name;
  canvas.width = st.meta.width; canvas.height = st.meta.height;
  await show(0);
  renderKeys(); renderLog();
  setStatus(`${name}: ${st.meta.width}x${st.meta.height} at ${st.meta.fps.toFixed(2)} fps`);
}

function show(index) {
  return new Promise((resolve) => {
    if (index < 0) index = 0;
    if (st.end != null && index >= st.end) index = st.end - 1;
    const img = new Image();
    img.onload = () => { st.image = img; st.frame = index; $("seek").value = index; canvas.dataset.frame = index; draw(); resolve(true); };
    img.onerror = () => { // past the end: the clip's length is known now
      if (st.end == null || index < st.end) st.end = index;
      pause(); setStatus(`end of the clip (${index} frames)`); resolve(false);
    };
    img.src = `/api/calibrate/cameras/${enc(st.camera)}/clips/${enc(st.clip)}/frames/${index}.jpg`;
  });
}

function play() {
  if (!st.clip) return;
  st.playing = true; st.t0 = performance.now(); st.f0 = st.frame;
  $("play").textContent = "Pause"; tick();
}
function pause() { st.playing = false; $("play").textContent = "Play"; }
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
  ctx.fillStyle = "#fff"; ctx.fillText(`frame ${st.frame}  ${st.playing ? "playing" : "paused"}  ${$("speed").value}×  ${st.category || ""}`, 6 * s, 17 * s);
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
    const li = document.createElement("li"); li.textContent = `frame ${e.frame}: ${e.line} ${e.direction} ${e.class}`; ol.appendChild(li);
  }
  renderKeys(); draw();
}
function press(line, direction) {
  st.events.push({ line, direction, frame: st.frame, class: st.category, speed: parseFloat($("speed").value) });
  renderLog();
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
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); save(); return; }
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  const lines = st.info ? st.info.lines : [];
  const fi = FORWARD_KEYS.indexOf(k), bi = BACKWARD_KEYS.indexOf(k), ci = CLASS_KEYS.indexOf(k);
  if (k === " ") { st.playing ? pause() : play(); }
  else if (fi >= 0 && fi < lines.length) press(lines[fi].id, "forward");
  else if (bi >= 0 && bi < lines.length) press(lines[bi].id, "backward");
  else if (ci >= 0 && st.info && ci < st.info.categories.length) { st.category = st.info.categories[ci]; renderKeys(); draw(); }
  else if (k === "ArrowRight" && !st.playing) show(st.frame + (ev.shiftKey ? 10 : 1));
  else if (k === "ArrowLeft" && !st.playing) show(st.frame - (ev.shiftKey ? 10 : 1));
  else if (k === "Backspace") { st.events.pop(); renderLog(); }
  else return;
  ev.preventDefault();
});
$("play").addEventListener("click", () => (st.playing ? pause() : play()));
$("save").addEventListener("click", save);
$("camera").addEventListener("change", () => selectCamera($("camera").value));
$("clip").addEventListener("change", () => selectClip($("clip").value));
$("seek").addEventListener("change", () => { pause(); show(parseInt($("seek").value, 10) || 0); });
$("speed").addEventListener("change", () => { if (st.playing) { pause(); play(); } draw(); });
$("token").value = sessionStorage.getItem("roadside-token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("roadside-token", $("token").value.trim()));
loadCameras();
