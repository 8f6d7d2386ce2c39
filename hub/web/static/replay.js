// The replay page: a finished demo (or a window of one device) played back from what InfluxDB holds.
// Recorded time is the only clock: a tick maps wall time to recorded time (× speed) and every view (plot
// cursors, cards, command log, arm drawing) is redrawn for that instant from the timeline, so seek and play are
// the same operation. window.replay exposes seek/play/pause/state for tests and for the showcase page.
"use strict";
const replayPage = (() => {
  const $ = (id) => document.getElementById(id);
  const SPEEDS = [1, 2, 5, 10];
  const LOG_ROWS = 500;  // newest first; an hour of one command a second would be cut here
  const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
  const SLUG = /^[a-z0-9][a-z0-9-]{0,60}$/;  // a showcase's (hub/showcase/model.py)
  const DEVICE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}(\/[A-Za-z0-9][A-Za-z0-9_-]{0,31}){2}$/;
  const SVG = "http://www.w3.org/2000/svg";

  // Pure parts ---------------------------------------------------------------------------------------

  /** Index of the last item with t <= at in a list sorted by t; -1 when every item is later. */
  function lastAtOrBefore(items, at) {
    let lo = 0, hi = items.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (items[mid].t <= at) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }

  const ms = (ns) => Number(ns) / 1e6;  // ns beyond 2^53 lose well under a microsecond: fine for ms

  /** The replay API's answer (hub/replay/timeline.py as_json) as the page's model: times in ms since the epoch,
   * per-device lists sorted by time; each reading also carries `state`, every field's last value so far. */
  function model(body) {
    const devices = (body.devices || []).map((d) => ({ key: d.device, kind: d.kind, fields: d.fields || [], arm: d.arm || null }));
    const m = { start: ms(body.start_ns), end: ms(body.end_ns), devices, readings: {}, presence: {}, commands: [], events: [], truncated: !!body.truncated };
    for (const d of devices) { m.readings[d.key] = []; m.presence[d.key] = []; }
    for (const f of body.frames || []) {
      const t = ms(f.t_ns), key = f.device, data = f.data || {};
      if (!m.readings[key]) continue;
      if (f.type === "reading") m.readings[key].push({ t, fields: data });
      else if (f.type === "presence") m.presence[key].push({ t, online: !!data.online });
      else if (f.type === "command") m.commands.push({ t, device: key, ...data });
      else if (f.type === "rejection") m.events.push({ t, device: key, kind: "refused", text: String(data.code || "") });
      else if (f.type === "diagnosis") m.events.push({ t, device: key, kind: "diagnosis", text: describe(data) });
    }
    for (const list of [...Object.values(m.readings), ...Object.values(m.presence), m.commands, m.events]) list.sort((a, b) => a.t - b.t);
    for (const list of Object.values(m.readings)) {
      let state = {};
      for (const r of list) { state = { ...state, ...r.fields }; r.state = state; }
    }
    return m;
  }

  function describe(data) {
    return Object.entries(data).filter(([k]) => k !== "since_ns").map(([k, v]) => `${k}=${v}`).join(" ").slice(0, 200);
  }

  /** The card values at `at`: each field's last stored value at or before it (and that reading's time). */
  function cardValues(readings, at) {
    const i = lastAtOrBefore(readings, at);
    return i < 0 ? null : { t: readings[i].t, fields: readings[i].state };
  }

  /** An arm's pose at `at`: its home pose, then each joint's last stored angle (as hub/replay arm_pose). */
  function armPose(arm, cv) {
    const pose = {};
    for (const [name, j] of Object.entries(arm.joints || {})) pose[name] = j.home;
    if (cv) for (const name of Object.keys(pose)) if (typeof cv.fields[name] === "number") pose[name] = cv.fields[name];
    return pose;
  }

  /** A command's state at `at`: sent until its device accepted it, accepted until it finished, then its end. */
  function commandState(c, at) {
    if (c.accepted_ms != null && at < c.t + c.accepted_ms) return "sent";
    if (c.finished_ms != null && at < c.t + c.finished_ms) return "accepted";
    return c.state;
  }

  /** Side view of an arm from its angles (degrees) and link lengths: shoulder from the horizontal, elbow as
   * the angle between the links (180 = straight), an optional wrist the same way. Points in link units. */
  function armPoints(angles, links) {
    const rad = (d) => (d * Math.PI) / 180;
    const pts = [[0, 0]];
    let heading = rad(angles.shoulder ?? 90);
    const chain = [[links.upper, null], [links.fore, "elbow"], [links.hand, "wrist_ver"]];
    for (const [length, joint] of chain) {
      if (!length) continue;
      if (joint) heading += rad((angles[joint] ?? 180) - 180);
      const [x, y] = pts[pts.length - 1];
      pts.push([x + length * Math.cos(heading), y + length * Math.sin(heading)]);
    }
    return pts;
  }

  // Views --------------------------------------------------------------------------------------------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  function deviceSection(m, d, width) {
    const box = el("section", { class: "device", "data-device": d.key });
    box.append(el("h2", {}, `${d.key} · ${d.kind}`));
    const dot = el("span", { class: "dot", title: "online at this instant" });
    box.querySelector("h2").prepend(dot, " ");
    const cards = el("div", { class: "cards" });
    box.append(cards);
    const view = { d, dot, cards, cells: {}, plots: [], arm: null };
    const readings = m.readings[d.key];
    const fields = [...new Set(readings.flatMap((r) => Object.keys(r.fields)))].filter((f) => f !== "source");
    for (const f of fields) {
      const cell = el("div", { class: "card", "data-field": f });
      cell.append(el("span", { class: "k" }, f), el("b", {}, "–"));
      cards.append(cell);
      view.cells[f] = cell.querySelector("b");
    }
    if (d.arm) {
      view.arm = armView(d.arm);
      box.append(view.arm.svg);
    }
    const xs = readings.map((r) => r.t / 1000);
    for (const f of d.fields.slice(0, 8)) {
      const chart = el("div", { class: "chart", "data-field": f });
      chart.append(el("h3", {}, f));
      box.append(chart);
      const ys = readings.map((r) => (typeof r.fields[f] === "number" ? r.fields[f] : null));
      const plot = new uPlot({
        width, height: 150, scales: { x: { time: true, range: [m.start / 1000, m.end / 1000] } },
        series: [{}, { label: f, stroke: "#1565c0", width: 2, spanGaps: false }],
        legend: { show: false }, cursor: { show: false },
        hooks: { draw: [(u) => drawCursor(u, chart)] },
      }, [xs, ys], chart);
      view.plots.push({ plot, chart, field: f });
    }
    return { box, view };
  }

  /** The replay cursor: a vertical line at the chart's data-at (recorded ms). */
  function drawCursor(u, chart) {
    const at = Number(chart.dataset.at);
    if (!Number.isFinite(at)) return;
    const x = u.valToPos(at / 1000, "x", true);
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#c62828"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    ctx.restore();
  }

  function armView(profile) {
    const links = Object.keys(profile.links || {}).length ? profile.links : { upper: 80, fore: 80 };
    const reach = (links.upper || 0) + (links.fore || 0) + (links.hand || 0);
    const svg = svgEl("svg", { class: "arm", viewBox: `${-reach - 10} ${-reach - 10} ${2 * reach + 20} ${reach + 30}`, role: "img" });
    svg.append(svgEl("line", { x1: -reach, y1: 0, x2: reach, y2: 0, class: "ground" }));
    const limb = svgEl("polyline", { class: "limb", points: "" });
    const jaw = svgEl("path", { class: "jaw", d: "" });
    const dial = svgEl("line", { class: "dial", x1: reach * 0.75, y1: 8 - reach, x2: reach * 0.75, y2: 8 - reach });
    svg.append(svgEl("circle", { class: "dial-ring", cx: reach * 0.75, cy: 8 - reach, r: reach * 0.18 }), dial, limb, jaw);
    return { svg, limb, jaw, dial, links, reach, profile };
  }

  function drawArm(arm, angles, t) {
    const pts = armPoints(angles, arm.links).map(([x, y]) => [x, -y]);  // SVG's y grows downwards
    arm.limb.setAttribute("points", pts.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "));
    const [tx, ty] = pts[pts.length - 1];
    const g = arm.profile.gripper && arm.profile.joints[arm.profile.gripper];
    const open = g ? (angles[arm.profile.gripper] - g.min) / Math.max(1, g.max - g.min) : 0.5;
    const spread = 4 + 10 * Math.max(0, Math.min(1, open));
    arm.jaw.setAttribute("d", `M${tx},${ty} l10,${-spread} M${tx},${ty} l10,${spread}`);
    const base = ((angles.base ?? 90) * Math.PI) / 180, r = arm.reach * 0.18;
    const cx = arm.reach * 0.75, cy = 8 - arm.reach;
    arm.dial.setAttribute("x2", (cx + r * Math.cos(base)).toFixed(1));
    arm.dial.setAttribute("y2", (cy - r * Math.sin(base)).toFixed(1));
    for (const [joint, angle] of Object.entries(angles)) if (typeof angle === "number") arm.svg.setAttribute(`data-joint-${joint}`, String(angle));
    arm.svg.setAttribute("data-t", String(t));
  }

  // The player ------------------------------------------------------------------------------------------

  function player(m, views) {
    const state = { at: m.start, speed: 1, playing: false, wallStart: 0, atStart: m.start };
    const seek = $("seek");
    seek.min = "0"; seek.max = String(Math.max(1, Math.round(m.end - m.start))); seek.step = "1";

    function render() {
      const at = state.at;
      $("clock").textContent = `${new Date(at).toLocaleTimeString()} · ${((at - m.start) / 1000).toFixed(1)} s of ${((m.end - m.start) / 1000).toFixed(1)} s`;
      $("clock").dataset.at = String(at);
      seek.value = String(Math.round(at - m.start));
      for (const v of views) {
        const cv = cardValues(m.readings[v.d.key], at);
        for (const [f, cell] of Object.entries(v.cells)) {
          const value = cv ? cv.fields[f] : undefined;
          cell.textContent = value == null ? "–" : typeof value === "number" ? String(value) : String(value);
          cell.parentElement.dataset.t = cv ? String(cv.t) : "";
        }
        const p = lastAtOrBefore(m.presence[v.d.key], at);
        v.dot.className = p >= 0 && m.presence[v.d.key][p].online ? "dot on" : "dot";
        for (const { plot, chart } of v.plots) {
          chart.dataset.at = String(at);
          chart.dataset.t = cv ? String(cv.t) : "";
          chart.dataset.value = cv && typeof cv.fields[chart.dataset.field] === "number" ? String(cv.fields[chart.dataset.field]) : "";
          plot.redraw(false, false);
        }
        if (v.arm) drawArm(v.arm, armPose(v.arm.profile, cv), cv ? cv.t : "");
      }
      renderLog(at);
    }

    let logShown = "";
    function renderLog(at) {
      const shown = [...m.commands.slice(0, lastAtOrBefore(m.commands, at) + 1), ...m.events.slice(0, lastAtOrBefore(m.events, at) + 1)];
      shown.sort((a, b) => b.t - a.t);
      const signature = shown.length + ":" + shown.map((e) => (e.kind === undefined ? commandState(e, at) : "")).join();
      if (signature === logShown) return;  // rebuilt only when a row appears or a state changes
      logShown = signature;
      const rows = $("log"); rows.innerHTML = "";
      for (const e of shown.slice(0, LOG_ROWS)) {
        const tr = el("tr");
        const isCommand = e.kind === undefined;
        const what = isCommand ? `${e.command || "command"} ${e.request || ""}`.trim() : e.kind;
        const st = isCommand ? commandState(e, at) : "";
        tr.className = isCommand ? "command " + st : e.kind;
        tr.dataset.t = String(e.t);
        for (const text of [new Date(e.t).toLocaleTimeString(), e.device || "", what, st || e.text, isCommand ? (e.accepted_ms ?? "") : "", isCommand ? (e.finished_ms ?? "") : ""]) tr.append(el("td", {}, String(text)));
        rows.append(tr);
      }
    }

    function tick() {
      if (!state.playing) return;
      state.at = Math.min(m.end, state.atStart + (performance.now() - state.wallStart) * state.speed);
      render();
      if (state.at >= m.end) pause(); else requestAnimationFrame(tick);
    }

    function play() {
      if (state.at >= m.end) state.at = m.start;
      state.playing = true; state.wallStart = performance.now(); state.atStart = state.at;
      $("play").textContent = "❚❚ pause"; requestAnimationFrame(tick);
    }
    function pause() { state.playing = false; $("play").textContent = "▶ play"; }
    function setSpeed(x) {
      if (!SPEEDS.includes(x)) return;
      state.atStart = state.at; state.wallStart = performance.now(); state.speed = x;
      for (const b of $("speeds").children) b.className = Number(b.dataset.speed) === x ? "on" : "";
    }
    function seekTo(at) {
      state.at = Math.max(m.start, Math.min(m.end, Number(at)));
      state.atStart = state.at; state.wallStart = performance.now();
      render();
    }

    $("play").onclick = () => (state.playing ? pause() : play());
    seek.oninput = () => seekTo(m.start + Number(seek.value));
    for (const x of SPEEDS) {
      const b = el("button", { "data-speed": String(x) }, `${x}×`);
      b.onclick = () => setSpeed(x);
      $("speeds").append(b, " ");
    }
    setSpeed(1);
    return { play, pause, seek: seekTo, speed: setSpeed, state: () => ({ ...state, start: m.start, end: m.end }) };
  }

  // Where the timeline comes from: a session, a device window, or a showcase's key (no token) -----------

  function source(params) {
    const session = params.get("session") || "";
    const device = params.get("device") || "";
    const slug = params.get("showcase") || "";
    if (slug && SLUG.test(slug)) return { url: `/showcase/${slug}/replay?k=${encodeURIComponent(params.get("k") || "")}`, token: false, title: slug };
    if (session && NAME.test(session)) return { url: `/api/sessions/${session}/replay`, token: true, title: `demo ${session}` };
    if (device && DEVICE.test(device)) {
      const q = new URLSearchParams();
      for (const k of ["from", "to"]) if (/^[0-9.:TZ+-]{1,40}$/.test(params.get(k) || "")) q.set(k, params.get(k));
      return { url: `/api/devices/${device}/replay?${q}`, token: true, title: device };
    }
    return null;
  }

  async function load(src) {
    if (src.token) return labhub.api(src.url);
    const response = await fetch(src.url);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { status: response.status, body };
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    const src = source(params);
    if (!src) { $("title").textContent = "nothing to replay: open this page from a demo or a device"; return; }
    if (src.token) labhub.onUnauthorized = () => { location.href = "/dashboard"; };
    else document.querySelector(".back").hidden = true;  // a showcase: no way into the lab from here
    $("title").textContent = "Replay · " + src.title;
    document.title = "LabHub · replay · " + src.title;
    const { status, body } = await load(src);
    if (status !== 200 || !body) { $("note").textContent = "no replay: " + ((body && body.error) || status); return; }
    const m = model(body);
    const width = Math.min(1060, document.body.clientWidth - 32);
    const views = [];
    for (const d of m.devices) {
      const { box, view } = deviceSection(m, d, width);
      $("devices").append(box);
      views.push(view);
    }
    $("controls").hidden = false;
    const p = player(m, views);
    const t = Number(params.get("t"));
    p.seek(Number.isFinite(t) && params.has("t") ? m.start + t * 1000 : m.start);
    if (SPEEDS.includes(Number(params.get("speed")))) p.speed(Number(params.get("speed")));
    window.replay = p;
    document.body.dataset.ready = "1";
    return p;
  }

  return { lastAtOrBefore, model, cardValues, armPose, commandState, armPoints, start };
})();

window.replay = null;
replayPage.start().catch((e) => {
  document.getElementById("note").textContent = "replay failed: " + e.message;
});
