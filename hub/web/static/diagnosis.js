// A device's diagnosis (its connection checklist and the lab doctor's findings), drawn by the "my board" page
// and the device page from GET /api/devices/<c>/<l>/<d>/diagnosis. Every text from the API goes in with
// textContent (a sample packet is whatever a board sent). The messages come in the cohort's language.
"use strict";
const diagnosis = (() => {
  const ITEMS = {
    broker_reached: "Broker reached",
    account_accepted: "Account accepted",
    last_will_set: "Last will set",
    status_online: "Status online",
    errors_subscribed: "Subscribed to its errors topic",
    first_valid_reading: "First valid reading",
    clock_plausible: "Clock plausible",
    cadence_plausible: "Cadence plausible",
  };
  const FIXES = [["arduino", "Arduino (C++)"], ["micropython", "MicroPython"]];

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function when(ns) {
    if (ns === null || ns === undefined) return "";
    const date = new Date(ns / 1e6);
    const today = date.toDateString() === new Date().toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function copy(text, button) {
    const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1500); };
    const fallback = () => {  // plain http on a LAN is no secure context: no clipboard API there
      const area = el("textarea"); area.value = text; document.body.append(area); area.select();
      try { document.execCommand("copy"); done(); } catch (e) { button.textContent = "select and copy"; }
      area.remove();
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }

  function checklist(items) {
    const list = el("ol", "checklist");
    for (const item of items || []) {
      const state = item.ok === true ? "ok" : item.ok === false ? "bad" : "wait";
      const li = el("li", state);
      li.dataset.item = item.item;
      li.append(el("span", "mark", state === "ok" ? "✓" : state === "bad" ? "✗" : "…"),
        el("span", "label", ITEMS[item.item] || item.item));
      li.append(el("span", "at", item.at_ns != null ? when(item.at_ns) : state === "wait" ? "not yet" : ""));
      if (item.evidence) li.append(el("span", "evidence", item.evidence));
      list.append(li);
    }
    return list;
  }

  function finding(f) {
    const box = el("article", "finding " + (f.resolved ? "resolved" : f.severity));
    box.dataset.code = f.code;
    const head = el("h4");
    head.append(el("span", "severity", f.resolved ? "resolved" : f.severity), el("code", "", f.code));
    box.append(head, el("p", "message", f.message));
    if (f.hint) box.append(el("p", "hint", f.hint));
    const ev = f.evidence || {};
    const seen = `seen ${ev.count ?? "?"}× · first ${when(f.first_seen_ns)} · last ${when(f.last_seen_ns)}`
      + (f.resolved && f.resolved_ns ? ` · resolved ${when(f.resolved_ns)}` : "");
    box.append(el("p", "seen", seen));
    if (ev.samples && ev.samples.length) {
      const samples = el("ul", "samples");
      for (const s of ev.samples.slice(0, 5)) samples.append(el("li", "", typeof s === "string" ? s : JSON.stringify(s)));
      box.append(samples);
    }
    for (const [lang, label] of FIXES) {
      const text = f.fix && f.fix[lang];
      if (!text) continue;
      const fix = el("div", "fix"); fix.dataset.lang = lang;
      const bar = el("div", "fixbar");
      const button = el("button", "copy", "copy"); button.type = "button";
      button.addEventListener("click", () => copy(text, button));
      bar.append(el("span", "", "Fix · " + label), button);
      fix.append(bar, el("pre", "", text));
      box.append(fix);
    }
    return box;
  }

  // Draw into `box`; the same answer again draws nothing (a learner selecting a snippet keeps the selection).
  function render(box, body) {
    const text = JSON.stringify(body);
    if (box.dataset.drawn === text) return;
    const wasOpen = !!box.querySelector("details.resolved-list[open]");
    box.dataset.drawn = text;
    box.replaceChildren();
    box.append(el("h3", "", "Connection checklist"), checklist(body.checklist));
    const findings = body.findings || [];
    const rank = (f) => (f.severity === "error" ? 0 : 1);  // errors first, then the most recent
    const open = findings.filter((f) => !f.resolved).sort((a, b) => rank(a) - rank(b) || b.last_seen_ns - a.last_seen_ns);
    const resolved = findings.filter((f) => f.resolved);
    const title = el("h3", "", open.length ? `Open findings (${open.length})` : "No open findings");
    box.append(title);
    for (const f of open) box.append(finding(f));
    if (resolved.length) {
      const details = el("details", "resolved-list");
      details.open = wasOpen;
      details.append(el("summary", "", `Resolved (${resolved.length})`));
      for (const f of resolved) details.append(finding(f));
      box.append(details);
    }
  }

  return { render, ITEMS, when };
})();
