// Tollgate console: confirmations and the Live view (no build step; htmx does navigation).
"use strict";

document.addEventListener("submit", (e) => {
  const form = e.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    e.preventDefault();
  }
});

function startLive() {
  const table = document.getElementById("live");
  if (!table || table.dataset.started) return;
  table.dataset.started = "1";
  const body = table.querySelector("tbody");
  const state = document.getElementById("live-state");
  const pause = document.getElementById("live-pause");
  let paused = false;
  let held = [];
  const cell = (tr, text, cls) => {
    const td = document.createElement("td");
    td.textContent = text == null ? "–" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  };
  const show = (row) => {
    const tr = document.createElement("tr");
    cell(tr, (row.time || "").slice(0, 19).replace("T", " "));
    const st = cell(tr, "");
    const badge = document.createElement("span");
    badge.className = "status " + (row.status || "");
    badge.textContent = row.status || "";
    st.appendChild(badge);
    const req = cell(tr, "");
    const a = document.createElement("a");
    a.href = "/ui/logs/" + encodeURIComponent(row.request_id || "");
    a.textContent = (row.request_id || "").slice(0, 18);
    req.appendChild(a);
    cell(tr, row.model);
    cell(tr, row.key_alias);
    cell(tr, row.team);
    cell(tr, row.spend == null ? null : "$" + Number(row.spend).toFixed(6), "num");
    cell(tr, row.tokens, "num");
    cell(tr, row.latency_ms == null ? null : Math.round(row.latency_ms) + " ms", "num");
    body.prepend(tr);
    while (body.rows.length > 200) body.deleteRow(-1);
  };
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("ready", () => { state.textContent = "streaming"; });
  source.addEventListener("call", (e) => {
    const row = JSON.parse(e.data);
    if (paused) held.push(row); else show(row);
  });
  source.onerror = () => { state.textContent = "reconnecting…"; };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    state.textContent = paused ? "paused" : "streaming";
    if (!paused) { held.forEach(show); held = []; }
  });
  document.addEventListener("htmx:beforeSwap", () => source.close(), { once: true });
}

document.addEventListener("DOMContentLoaded", startLive);
document.addEventListener("htmx:afterSettle", startLive);
