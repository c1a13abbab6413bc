// STAA Serve live viewer. The server sends uint8 patch grids; this page upsamples them
// bilinearly to the crop box, colours them with the lookup tables of clients/overlay.py
// (/colormaps.json) and blends with opacity alpha * heat / 255, truncating like NumPy's astype.
"use strict";

const state = {
  frames: new Map(),          // frame id -> ImageBitmap (recent only)
  currentId: -1,
  explanation: null,          // latest explanation message
  heat: null,                 // Uint8Array [T*h*w] of the latest explanation
  colormaps: null,
  colormap: "jet",
  alpha: 0.6,
  framesShown: 0,
  windows: 0,
  stats: null,
  robustness: null,
  lastRender: null,           // {width, height, raw: Uint8ClampedArray, shown: Uint8ClampedArray, hottest: [x, y]}
  error: null,
};
window.staaViewer = state;   // read by the browser test

const video = document.getElementById("video");
const context = video.getContext("2d", { willReadFrequently: true });
const gridCanvas = document.createElement("canvas");
const heatCanvas = document.createElement("canvas");
const $ = (id) => document.getElementById(id);

function nearestSlot(ids, id) {
  let best = 0;
  ids.forEach((value, slot) => { if (Math.abs(value - id) < Math.abs(ids[best] - id)) best = slot; });
  return best;
}

function heatOverCrop(slot, width, height) {
  // [h, w] grid of this slot -> heat per pixel of the crop box (bilinear, like cv2.INTER_LINEAR)
  const [, gh, gw] = state.explanation.grid;
  gridCanvas.width = gw; gridCanvas.height = gh;
  const grid = gridCanvas.getContext("2d", { willReadFrequently: true });
  const image = grid.createImageData(gw, gh);
  for (let i = 0; i < gh * gw; i++) {
    const v = state.heat[slot * gh * gw + i];
    image.data[4 * i] = v; image.data[4 * i + 1] = v; image.data[4 * i + 2] = v; image.data[4 * i + 3] = 255;
  }
  grid.putImageData(image, 0, 0);
  heatCanvas.width = width; heatCanvas.height = height;
  const heat = heatCanvas.getContext("2d", { willReadFrequently: true });
  heat.imageSmoothingEnabled = true;
  heat.imageSmoothingQuality = "medium";
  heat.drawImage(gridCanvas, 0, 0, width, height);
  return heat.getImageData(0, 0, width, height).data;
}

function render() {
  const bitmap = state.frames.get(state.currentId);
  if (!bitmap) return;
  if (video.width !== bitmap.width || video.height !== bitmap.height) {
    video.width = bitmap.width; video.height = bitmap.height;
  }
  context.drawImage(bitmap, 0, 0);
  const raw = context.getImageData(0, 0, video.width, video.height);
  const rawCopy = new Uint8ClampedArray(raw.data);
  let hottest = null, hottestHeat = null;
  if (state.explanation && state.colormaps) {
    const slot = nearestSlot(state.explanation.frame_ids, state.currentId);
    const [x0f, y0f, x1f, y1f] = state.explanation.crop;
    const x0 = Math.max(0, Math.round(x0f)), y0 = Math.max(0, Math.round(y0f));
    const x1 = Math.min(video.width, Math.round(x1f)), y1 = Math.min(video.height, Math.round(y1f));
    const cw = x1 - x0, ch = y1 - y0;
    if (cw > 0 && ch > 0) {
      const heat = heatOverCrop(slot, cw, ch);
      const lut = state.colormaps[state.colormap];
      let peak = -1;
      for (let y = 0; y < ch; y++) {
        for (let x = 0; x < cw; x++) {
          const v = heat[4 * (y * cw + x)];
          const o = 4 * ((y0 + y) * video.width + (x0 + x));
          const opacity = state.alpha * v / 255;
          const colour = lut[v];
          for (let c = 0; c < 3; c++) {
            raw.data[o + c] = Math.floor(raw.data[o + c] * (1 - opacity) + colour[c] * opacity);
          }
          const inside = x > 0 && y > 0 && x < cw - 1 && y < ch - 1;  // the crop's outline is drawn over its border
          if (inside && v > peak) { peak = v; hottest = [x0 + x, y0 + y]; hottestHeat = v; }
        }
      }
      context.putImageData(raw, 0, 0);
      context.strokeStyle = "#fff";
      context.strokeRect(x0 + 0.5, y0 + 0.5, cw - 1, ch - 1);
    }
  }
  const shown = context.getImageData(0, 0, video.width, video.height).data;
  state.lastRender = { width: video.width, height: video.height, raw: rawCopy, shown, hottest, hottestHeat,
                       alpha: state.alpha, colormap: state.colormap };
  state.framesShown += 1;
  drawStrip();
}

function drawStrip() {
  const strip = $("strip"), c = strip.getContext("2d");
  c.fillStyle = "#181818"; c.fillRect(0, 0, strip.width, strip.height);
  if (!state.explanation) return;
  const temporal = state.explanation.temporal, peak = Math.max(...temporal, 1e-9);
  const slot = nearestSlot(state.explanation.frame_ids, state.currentId);
  const width = strip.width / temporal.length;
  temporal.forEach((value, i) => {
    const bar = (strip.height - 4) * value / peak;
    c.fillStyle = i === slot ? "#ffc800" : "#78a0ff";
    c.fillRect(i * width + 1, strip.height - 2 - bar, width - 2, bar);
  });
}

function showTopk() {
  $("topk").innerHTML = state.explanation.topk.map((score) =>
    `<tr><td>${score.label}</td><td><span class="bar" style="width:${Math.round(160 * score.prob)}px"></span></td>` +
    `<td>${(100 * score.prob).toFixed(1)} %</td></tr>`).join("");
}

function showCounters() {
  const s = state.stats || {};
  const rows = [["end-to-end latency", s.latency_ms != null ? `${s.latency_ms} ms (p50 ${s.latency_p50_ms} ms)` : "-"],
                ["fps sent", s.fps ?? "-"], ["frames sent", s.frames_sent ?? 0], ["frames shown", state.framesShown],
                ["windows explained", s.windows ?? 0], ["dropped frames", s.dropped ?? 0],
                ["robustness events", s.robustness_events ?? 0]];
  $("counters").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
}

function showRobustness() {
  const r = state.robustness;
  if (r.skipped) { $("robustness").innerHTML = `<tr><td>window ${r.window_index}: skipped (${r.reason})</td></tr>`; return; }
  const rows = [["window", r.window_index], ["attack", `${r.attack} eps ${r.epsilon}/255`], ["flipped", r.flipped],
                ["p clean -> attacked", `${r.p_clean.toFixed(3)} -> ${r.p_adv.toFixed(3)}`],
                ["prediction robustness", r.prediction_robustness.toFixed(3)],
                ["explanation resilience", r.explanation_resilience.toFixed(3)],
                ["top-10 % IoU / rho / tau", `${r.spatial_top10_iou.toFixed(2)} / ${r.spearman.toFixed(2)} / ${r.kendall_tau.toFixed(2)}`]];
  $("robustness").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
}

function decodeHeat(b64) {
  const bytes = atob(b64), out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes.charCodeAt(i);
  return out;
}

async function onFrame(message) {
  const blob = new Blob([decodeHeat(message.jpeg)], { type: "image/jpeg" });
  const bitmap = await createImageBitmap(blob);
  state.frames.set(message.id, bitmap);
  for (const id of state.frames.keys()) if (id < message.id - 64) state.frames.delete(id);
  if (message.id > state.currentId) { state.currentId = message.id; render(); }
}

let socket;
function connect() {
  socket = new WebSocket(`ws://${location.host}/ws${location.search}`);  // carries ?token= when the viewer asks for one
  socket.onopen = () => { $("status").textContent = "streaming"; $("status").className = ""; };
  socket.onclose = () => { $("status").textContent = "disconnected, retrying..."; setTimeout(connect, 1000); };
  socket.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") {
      $("source").textContent = `${message.source ?? ""} (${message.fps ?? "?"} fps) on ${message.model ?? "?"}`;
      if (message.colormaps) {
        $("colormap").innerHTML = message.colormaps.map((n) => `<option ${n === state.colormap ? "selected" : ""}>${n}</option>`).join("");
      }
    } else if (message.type === "frame") {
      await onFrame(message);
    } else if (message.type === "explanation") {
      state.explanation = message; state.heat = decodeHeat(message.heatmaps); state.windows += 1;
      showTopk(); render();
    } else if (message.type === "stats") {
      state.stats = message; showCounters();
    } else if (message.type === "robustness") {
      state.robustness = message; showRobustness();
    } else if (message.type === "options") {
      $("threshold").checked = message.threshold; $("focus").checked = message.focus;
      if (message.method) $("method").value = message.method;
      if (message.models) {  // a choice only when the server serves several models
        $("model").replaceChildren(...message.models.map((name) => new Option(name, name)));
        $("model").value = message.model;
        $("model-choice").hidden = message.models.length < 2;
      }
    } else if (message.type === "error") {
      state.error = message.message; $("status").textContent = message.message; $("status").className = "error";
    }
  };
}

function sendOptions() {
  socket.send(JSON.stringify({ type: "options", threshold: $("threshold").checked, focus: $("focus").checked,
                               method: $("method").value, model: $("model").value }));
}

$("opacity").oninput = (e) => { state.alpha = parseFloat(e.target.value); render(); };
$("colormap").onchange = (e) => { state.colormap = e.target.value; render(); };
$("threshold").onchange = sendOptions;
$("focus").onchange = sendOptions;
$("method").onchange = sendOptions;
$("model").onchange = sendOptions;
fetch("/colormaps.json").then((r) => r.json()).then((maps) => { state.colormaps = maps; render(); });
showCounters();
connect();
