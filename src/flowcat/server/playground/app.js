// flowcat playground: one WebRTC call to the server's agent, with its live events.
// Non-trickle ICE (the offer is sent once gathering completed), no STUN, no external resources.
"use strict";

const $ = (id) => document.getElementById(id);

// State the page exposes (read by tests and handy in the console).
const playground = (window.playground = {
  state: "idle",
  pcId: null,
  events: [],
  audio: { loudMs: 0, peakRms: 0, firstLoudAt: null, samples: 0 },
});

// Off loopback the server asks for its API token: open the page as /?token=… and every API call carries it.
const TOKEN = new URLSearchParams(location.search).get("token");
const authHeaders = TOKEN ? { Authorization: "Bearer " + TOKEN } : {};
const withToken = (url) => (TOKEN ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : url);

let pc = null;
let localStream = null;
let eventsSocket = null;
let meter = null;
let userLine = null; // the <li> of the user's current utterance (interim until final)
let botLine = null; // the <li> of the bot's current response

function setStatus(state, text) {
  playground.state = state;
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text || state;
}

async function loadAgents() {
  const select = $("agent");
  try {
    const res = await fetch("/api/agents", { headers: authHeaders });
    const body = await res.json();
    select.replaceChildren();
    for (const name of body.agents) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = name;
      if (name === body.default) opt.selected = true;
      select.append(opt);
    }
  } catch (err) {
    setStatus("error", "could not list agents: " + err);
  }
}

function waitForIceGathering(conn, timeoutMs) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      conn.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (conn.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    conn.addEventListener("icegatheringstatechange", check);
  });
}

async function connect() {
  $("connect").disabled = true;
  setStatus("connecting", "asking for the microphone…");
  try {
    localStream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of localStream.getAudioTracks()) pc.addTrack(track, localStream);
    pc.addEventListener("track", (ev) => onRemoteTrack(ev.streams[0] || new MediaStream([ev.track])));
    pc.addEventListener("connectionstatechange", () => {
      const s = pc && pc.connectionState;
      if (s === "connected") setStatus("connected", "connected (" + playground.pcId + ")");
      else if (s === "failed" || s === "closed") disconnect(s);
    });
    setStatus("connecting", "gathering ICE candidates…");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, 3000);
    const res = await fetch("/api/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", agent: $("agent").value || null }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
    playground.pcId = body.pc_id;
    openEvents(body.pc_id);
    await pc.setRemoteDescription({ sdp: body.sdp, type: body.type });
    $("disconnect").disabled = false;
  } catch (err) {
    setStatus("error", String(err && err.message ? err.message : err));
    cleanup();
  }
}

function onRemoteTrack(stream) {
  const audio = $("remote");
  audio.srcObject = stream;
  audio.play().catch(() => {});
  startMeter(stream);
}

// Bot audio level: an AnalyserNode on the remote stream, read every 20 ms.
function startMeter(stream) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const ctx = new Ctx();
  ctx.resume().catch(() => {});
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    const rms = Math.sqrt(sum / buf.length);
    const a = playground.audio;
    a.samples++;
    if (rms > a.peakRms) a.peakRms = rms;
    if (rms > 0.02) {
      a.loudMs += now - last;
      if (a.firstLoudAt === null) a.firstLoudAt = Date.now() / 1000;
    }
    last = now;
    $("level-bar").style.width = Math.min(100, Math.round(rms * 300)) + "%";
  }, 20);
  meter = { ctx, timer };
}

function openEvents(pcId) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  eventsSocket = new WebSocket(withToken(proto + "//" + location.host + "/api/events/" + encodeURIComponent(pcId)));
  eventsSocket.addEventListener("message", (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (err) { return; }
    playground.events.push(ev);
    onEvent(ev);
  });
}

function line(list, cls, who, text) {
  const li = document.createElement("li");
  li.className = cls;
  const tag = document.createElement("span");
  tag.className = "who";
  tag.textContent = who;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(tag, body);
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

function fmt(ms) { return ms === null || ms === undefined ? "–" : ms.toFixed(0); }

function onEvent(ev) {
  const d = ev.data || {};
  switch (ev.type) {
    case "user-transcription":
      if (!userLine) userLine = line($("transcript"), "user interim", "you", "");
      userLine.querySelector(".text").textContent = d.text;
      userLine.className = "user " + (d.final ? "final" : "interim");
      if (d.final) userLine = null;
      break;
    case "bot-llm-started":
      botLine = null; // the line starts with the first text (a tool-call response has none)
      break;
    case "bot-text":
      if (!botLine) botLine = line($("transcript"), "bot", "bot", "");
      botLine.querySelector(".text").textContent += d.text;
      break;
    case "bot-llm-stopped":
      botLine = null;
      break;
    case "user-started-speaking": $("user-speaking").dataset.on = "true"; break;
    case "user-stopped-speaking": $("user-speaking").dataset.on = "false"; break;
    case "bot-started-speaking": $("bot-speaking").dataset.on = "true"; break;
    case "bot-stopped-speaking": $("bot-speaking").dataset.on = "false"; break;
    case "function-call-start": {
      const li = line($("functions"), "call pending", "call", d.name + "(" + JSON.stringify(d.arguments) + ") …");
      li.dataset.id = d.id;
      break;
    }
    case "function-call-end": {
      const li = [...$("functions").children].find((x) => x.dataset.id === d.id);
      const target = li || line($("functions"), "call", "call", d.name + "(…)");
      const text = target.querySelector(".text");
      text.textContent = text.textContent.replace(/ …$/, "") + " → " + JSON.stringify(d.result);
      target.className = "call done";
      break;
    }
    case "turn-latency": {
      const tr = document.createElement("tr");
      tr.className = "turn";
      for (const v of [d.turn, fmt(d.stt_ms), fmt(d.turn_ms), fmt(d.llm_ms), fmt(d.tts_ms), fmt(d.output_ms), fmt(d.total_ms)]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      $("latency").tBodies[0].append(tr);
      break;
    }
    case "call-ended":
      setStatus("ended", "call ended: " + (d.reason || ""));
      cleanup();
      break;
  }
}

function cleanup() {
  if (pc) { try { pc.close(); } catch (err) { /* closed */ } pc = null; }
  if (localStream) { for (const t of localStream.getTracks()) t.stop(); localStream = null; }
  if (meter) { clearInterval(meter.timer); meter.ctx.close().catch(() => {}); meter = null; }
  $("connect").disabled = false;
  $("disconnect").disabled = true;
}

function disconnect(reason) {
  if (playground.state !== "ended") setStatus("idle", reason ? "disconnected (" + reason + ")" : "disconnected");
  cleanup();
}

$("connect").addEventListener("click", connect);
$("disconnect").addEventListener("click", () => disconnect());
loadAgents();
