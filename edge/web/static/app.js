// The operator's page: live view, taught words, teach/cancel, events and the status line.
// Plain DOM code; every name a person typed is set with textContent (never parsed as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MAX_EVENTS = 200;

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (method === "POST") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    location.assign("/login");
    throw new Error("a token is required");
  }
  let data = {};
  try { data = await response.json(); } catch (e) { data = { ok: false, error: `HTTP ${response.status}` }; }
  return data;
}

// ------------------------------------------------------------------ status line

let state = "idle";

function setState(next) {
  state = next;
  document.body.classList.toggle("teaching", state === "teaching");
  $("teach").textContent = state === "teaching" ? "Teaching\u2026" : "Teach";
  $("cancel").disabled = state !== "teaching";
}

function showStatus(s) {
  const devices = (s.devices_lost || []).length ? `lost: ${s.devices_lost.join(", ")}` : "microphone and camera ok";
  $("status").textContent = `${s.state} \u00b7 ${s.pairs} pairs \u00b7 ${s.requests} requests (${s.resolved} found) `
    + `\u00b7 ${devices} \u00b7 up ${Math.round(s.uptime_s)} s`;
  $("status").classList.toggle("lost", (s.devices_lost || []).length > 0);
  setState(s.state);
}

async function refreshStatus() {
  try {
    const s = await api("GET", "/api/status");
    if (s.ok) showStatus(s); else $("status").textContent = `daemon: ${s.error}`;
  } catch (e) {
    $("status").textContent = "the daemon does not answer";
  }
}

// ------------------------------------------------------------------ live view

const live = { index: -1, shown: 0, shownAt: [], first: true, url: null, intervalMs: 125 };

async function liveLoop() {
  const img = $("live");
  for (;;) {
    if (document.hidden) { await sleep(500); continue; }  // nobody looking: ask for nothing
    const started = performance.now();
    try {
      const response = await fetch(`/frame.jpg?after=${live.index}`, { cache: "no-store", credentials: "same-origin" });
      if (response.status === 401) { location.assign("/login"); return; }
      if (!response.ok) { await sleep(1000); continue; }
      const blob = await response.blob();
      live.index = Number(response.headers.get("X-Frame-Index"));
      live.intervalMs = Number(response.headers.get("X-Live-Interval-Ms")) || live.intervalMs;
      const url = URL.createObjectURL(blob);
      img.src = url;
      await img.decode();
      if (live.url) URL.revokeObjectURL(live.url);
      live.url = url;
      if (live.first) { live.first = false; performance.mark("showsay-first-frame"); $("live-wait").hidden = true; }
      const now = performance.now();
      live.shownAt.push(now);
      while (live.shownAt.length && now - live.shownAt[0] > 3000) live.shownAt.shift();
      const span = live.shownAt.length > 1 ? (now - live.shownAt[0]) / 1000 : 0;
      $("fps").textContent = span > 0 ? ((live.shownAt.length - 1) / span).toFixed(1) : "0.0";
      $("frame-index").textContent = String(live.index);
      img.dataset.frameIndex = String(live.index);
      img.dataset.framesShown = String(++live.shown);  // read by tools/bench_web.py
    } catch (e) {
      await sleep(1000);
      continue;
    }
    const wait = live.intervalMs - (performance.now() - started);
    if (wait > 0) await sleep(wait);
  }
}

// ------------------------------------------------------------------ taught words

let pairs = [];

function nameOf(pairId, label) {
  return label ? `'${label}'` : `pair ${pairId}`;
}

async function refreshPairs(fresh) {
  let reply;
  try { reply = await api("GET", "/api/pairs"); } catch (e) { return; }
  if (!reply.ok) return;
  pairs = reply.pairs;
  renderPairs(fresh);
}

function renderPairs(fresh) {
  const list = $("pairs");
  const template = $("pair-template");
  const keep = new Map([...list.children].map((li) => [li.dataset.pairId, li]));
  list.replaceChildren();
  for (const p of pairs) {
    let li = keep.get(String(p.pair_id));
    if (!li) li = buildPair(template, p);
    const input = li.querySelector("input.label");
    if (document.activeElement !== input) input.value = p.label || "";
    li.dataset.label = p.label || "";
    li.classList.toggle("fresh", p.pair_id === fresh);
    list.append(li);
  }
  $("no-pairs").hidden = pairs.length > 0;
  $("pair-count").textContent = pairs.length ? `(${pairs.length})` : "";
  const labels = [...new Set(pairs.map((p) => p.label).filter(Boolean))].sort();
  $("labels").replaceChildren(...labels.map((l) => Object.assign(document.createElement("option"), { value: l })));
}

function buildPair(template, p) {
  const li = template.content.firstElementChild.cloneNode(true);
  li.dataset.pairId = String(p.pair_id);
  li.querySelector(".pid").textContent = `#${p.pair_id}`;
  const views = li.querySelector(".views");
  p.crops.forEach((src, n) => {
    const img = document.createElement("img");
    img.src = src;
    img.alt = `pair ${p.pair_id}, view ${n + 1} of ${p.crops.length}`;
    views.append(img);
  });
  li.querySelector("form.name").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = li.querySelector("input.label").value.trim();
    const reply = await api("POST", `/api/pairs/${p.pair_id}/label`, { label: text || null });
    if (!reply.ok) addLine({ event: "error", error: reply.error });
  });
  li.querySelector(".play").addEventListener("click", () => {
    new Audio(p.audio).play().catch((e) => addLine({ event: "error", error: `cannot play pair ${p.pair_id}: ${e.message}` }));
  });
  const forget = li.querySelector(".forget");
  forget.addEventListener("click", async () => {
    if (!forget.classList.contains("armed")) {  // two clicks: no modal dialog, no accident
      forget.classList.add("armed");
      forget.textContent = "Really forget?";
      setTimeout(() => { forget.classList.remove("armed"); forget.textContent = "Forget"; }, 4000);
      return;
    }
    const reply = await api("DELETE", `/api/pairs/${p.pair_id}`);
    if (!reply.ok) addLine({ event: "error", error: reply.error });
  });
  return li;
}

// ------------------------------------------------------------------ teach and cancel

$("teach-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const label = $("teach-label").value.trim();
  const reply = await api("POST", "/api/teach", label ? { label } : {});
  if (reply.ok) { setState(reply.state); $("teach-label").value = ""; } else addLine({ event: "error", error: reply.error });
});

$("cancel").addEventListener("click", async () => {
  const reply = await api("POST", "/api/cancel");
  if (reply.ok) setState(reply.state); else addLine({ event: "error", error: reply.error });
});

// ------------------------------------------------------------------ events

function describe(e) {
  const ms = e.latency_ms != null ? `; ${e.latency_ms.toFixed(1)} ms` : "";
  const num = (x) => (x == null ? "?" : Number(x).toFixed(3));
  switch (e.event) {
    case "ready": return `ready: ${e.pairs} pairs, speech ${e.speech_encoder}, image ${e.image_encoder}`;
    case "teach_started": return `teach (${e.source}): show the object, say its name${e.label ? ` (${e.label})` : ""}`;
    case "teach_cancelled": return `teach mode ended without a word (${e.reason})`;
    case "taught": return `learned pair ${e.pair_id}${e.label ? ` '${e.label}'` : ""} from ${e.utterance_ms} ms of speech and the crop at [${e.box}]`;
    case "labelled": return e.label ? `pair ${e.pair_id} is now called '${e.label}'` : `pair ${e.pair_id} has no name now`;
    case "forgotten": return `forgot pair ${e.pair_id}`;
    case "resolved": return `found ${nameOf(e.pair_id, e.label)} at [${e.box}] (speech ${num(e.speech_distance)}, image ${num(e.image_distance)}${ms})`;
    case "unknown_word": if (e.reason === "nothing_taught") return `heard a request, but nothing is taught yet${ms}`;
      return `unknown word (nearest taught word at speech distance ${num(e.speech_distance)}${ms})`;
    case "not_in_view": return `${nameOf(e.pair_id, e.label)} is not in view (best candidate at image distance ${num(e.image_distance)}${ms})`;
    case "device_lost": return `${e.device} lost${e.reason ? `: ${e.reason}` : ""}`;
    case "device_recovered": return `${e.device} back`;
    case "error": return `error: ${e.error}`;
    default: return `${e.event}: ${JSON.stringify(e)}`;
  }
}

function addLine(e) {
  const li = document.createElement("li");
  li.className = e.event;
  const at = e.time_unix ? new Date(e.time_unix * 1000) : new Date();
  li.textContent = `${at.toLocaleTimeString()}  ${describe(e)}`;
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function showAnswer(e) {
  const panel = $("answer");
  panel.dataset.event = e.event;
  panel.dataset.pairId = e.pair_id == null ? "" : String(e.pair_id);
  panel.dataset.label = e.label || "";
  panel.dataset.box = e.box ? e.box.join(",") : "";
  panel.textContent = describe(e);
}

function onEvent(e) {
  addLine(e);
  switch (e.event) {
    case "teach_started": setState("teaching"); break;
    case "teach_cancelled": setState("idle"); break;
    case "taught": setState("idle"); refreshPairs(e.pair_id); break;
    case "labelled": case "forgotten": refreshPairs(); break;
    case "resolved": case "unknown_word": case "not_in_view": showAnswer(e); break;
    default: break;
  }
  if (["taught", "forgotten", "resolved", "unknown_word", "not_in_view", "device_lost", "device_recovered"].includes(e.event)) refreshStatus();
}

function listen() {
  const source = new EventSource("/events");  // reconnects by itself (the server says retry: 2000)
  source.onmessage = (message) => {
    try { onEvent(JSON.parse(message.data)); } catch (err) { console.error(err); }
  };
  source.onerror = () => { $("status").textContent = "event stream lost; reconnecting\u2026"; };
  source.onopen = () => { refreshStatus(); refreshPairs(); };
}

// ------------------------------------------------------------------ start

refreshStatus();
refreshPairs();
listen();
liveLoop();
setInterval(() => { if (!document.hidden) refreshStatus(); }, 2000);
