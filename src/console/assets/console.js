// smsrelay console: the two things that need JavaScript (everything else is plain forms).
// 1. The Send page's part counter asks the daemon (POST /console/count) so it counts by the
//    daemon's own splitting rules.
// 2. The Overview's event list and modem line update live from /console/events/stream.
"use strict";

function csrfToken() {
  const field = document.querySelector('input[name="csrf"]');
  return field ? field.value : "";
}

function startCounter() {
  const text = document.getElementById("text");
  const counter = document.getElementById("counter");
  if (!text || !counter) return;
  let timer = null;
  let asked = 0;
  const ask = () => {
    const mine = ++asked;
    const body = new URLSearchParams({ text: text.value, csrf: csrfToken() });
    fetch("/console/count", { method: "POST", body, credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null))
      .then((count) => {
        if (!count || mine !== asked) return;
        counter.textContent = count.summary +
          (count.encoding === "ucs2" ? " (UCS-2: a character outside the GSM alphabet)" : "");
      })
      .catch(() => {});
  };
  text.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(ask, 150);
  });
}

function eventItem(row) {
  const item = document.createElement("li");
  const seq = document.createElement("span");
  seq.className = "seq";
  seq.textContent = "#" + row.sequence;
  const name = document.createElement("strong");
  name.textContent = row.name;
  const at = document.createElement("time");
  at.textContent = row.at;
  const summary = document.createElement("span");
  summary.className = "summary";
  summary.textContent = row.summary;
  item.append(seq, " ", name, " ", at, " ", summary);
  return item;
}

function startLive() {
  const list = document.getElementById("live-events");
  if (!list || !window.EventSource) return;
  const keep = Number(list.dataset.keep || 10);
  const status = document.getElementById("live-status");
  const source = new EventSource("/console/events/stream?after=" + (list.dataset.after || 0));
  source.onopen = () => { if (status) status.textContent = "· live"; };
  source.onerror = () => { if (status) status.textContent = "· reconnecting…"; };
  source.addEventListener("event", (message) => {
    const row = JSON.parse(message.data);
    list.dataset.after = row.sequence;
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(eventItem(row));
    while (list.children.length > keep) list.lastElementChild.remove();
  });
  source.addEventListener("modem", (message) => {
    const modem = JSON.parse(message.data);
    const state = document.querySelector('[data-live="modem-state"]');
    if (state) {
      state.textContent = modem.state;
      state.className = "state state-" + modem.state;
    }
    const operator = document.querySelector('[data-live="modem-operator"]');
    if (operator) operator.textContent = modem.operator || "—";
    const error = document.querySelector('[data-live="modem-error"]');
    if (error) error.textContent = modem.last_error || "none";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startCounter();
  startLive();
});
