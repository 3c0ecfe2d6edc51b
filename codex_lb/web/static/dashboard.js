// codex-lb dashboard: a small front end over the JSON API under /api/.
// Plain JavaScript, no build step, no external assets. Data is inserted as
// text (never as HTML), so an account name cannot inject markup.
"use strict";

const REFRESH_MS = 10000;
const STATUS_ORDER = ["active", "rate_limited", "quota_exceeded", "paused", "reauth_required"];

const state = {
  page: "overview",
  accounts: [],
  now: Date.now() / 1000,
  sort: { key: "display", dir: 1 },
  requestsOffset: 0,
  requestsLimit: 50,
  timer: null,
};

// --- helpers -----------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

function notify(message, isError = false) {
  const box = $("#notice");
  box.textContent = message;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, isError ? 12000 : 5000);
}

function pct(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value * 10) / 10} %`;
}

function money(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "$0";
  return value >= 100 ? `$${value.toFixed(0)}` : `$${value.toFixed(value >= 1 ? 2 : 4)}`;
}

function number(value) {
  return value === null || value === undefined ? "—" : Math.round(value).toLocaleString("en-US");
}

function duration(seconds) {
  // Round once, then split, so 4 h 59.7 min reads "5 h 0 min", not "4 h 60 min".
  const s = Math.round(Math.abs(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 1440) return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  const hours = Math.round(minutes / 60);
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function relative(epoch) {
  if (epoch === null || epoch === undefined) return "—";
  const delta = epoch - state.now;
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(delta)} ago`;
}

function absolute(epoch) {
  if (epoch === null || epoch === undefined) return "";
  return new Date(epoch * 1000).toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

function timeCell(epoch) {
  return el("span", { title: absolute(epoch) }, relative(epoch));
}

function usageCell(percent, resetAt) {
  const width = Math.max(0, Math.min(100, percent || 0));
  const level = width >= 100 ? "full" : width >= 80 ? "high" : "";
  return el("td", { class: "num" },
    pct(percent),
    el("div", { class: "bar" }, el("span", { class: level, style: `width:${width}%` })),
    resetAt ? el("div", { class: "sub", title: absolute(resetAt) }, `resets ${relative(resetAt)}`) : null);
}

function statusWhy(account) {
  const parts = [];
  if (account.status === "rate_limited" || account.status === "quota_exceeded") {
    if (account.status_reason) parts.push(account.status_reason);
    if (account.status_until) parts.push(`back ${relative(account.status_until)}`);
  } else if (account.status !== "active" && account.status_reason) {
    parts.push(account.status_reason);
  }
  const beneath = account.under_pause;
  if (beneath && beneath.status_until > state.now) {
    parts.push(`${beneath.status.replace("_", " ")} beneath, back ${relative(beneath.status_until)}`);
  }
  if (account.cooldown_until) {
    parts.push(`cooling down after ${account.consecutive_failures} failures, ${relative(account.cooldown_until)}`);
  }
  if (account.last_error_code) {
    parts.push(`last error ${account.last_error_code} ${relative(account.last_error_at)}`);
  }
  return parts.join(" · ");
}

// --- overview ----------------------------------------------------------

function card(label, value, sub) {
  return el("div", { class: "card" },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, value),
    sub ? el("div", { class: "sub" }, sub) : null);
}

function renderOverview(data) {
  const s = data.snapshot;
  const resets = (at) => (at ? `next reset ${relative(at)}` : "no reset pending");
  $("#cards").replaceChildren(
    card("5 h quota left", pct(s.primary_left_percent), resets(s.next_primary_reset_at)),
    card("Weekly quota left", pct(s.secondary_left_percent), resets(s.next_secondary_reset_at)),
    card("Weekly credits left", number(s.weekly_credits_left),
      `of ${number(s.weekly_credits_capacity)} across the pool`),
    card("Next bench ends", s.next_bench_end_at ? relative(s.next_bench_end_at) : "—",
      s.next_bench_end_at ? absolute(s.next_bench_end_at) : "no account benched"),
    card("Cost today", money(s.today.cost_usd), `${number(s.today.requests)} requests`),
    card("Cost this week", money(s.this_week.cost_usd), `${number(s.this_week.requests)} requests`),
    card("Requests last hour", number(s.last_hour.requests), `${number(s.last_hour.errors)} errors`),
    card("Error rate last hour", pct(s.last_hour.error_rate * 100),
      `${s.inflight} in flight now`),
  );
  $("#statuses").replaceChildren(...STATUS_ORDER.map((status) =>
    el("div", { class: "card", dataset: { status } },
      el("div", { class: "label" }, el("span", { class: `badge ${status}` }, status.replace("_", " "))),
      el("div", { class: "value" }, s.accounts_by_status[status] ?? 0))));
  loadKeys();
}

async function loadKeys() {
  // GET /api/keys lists the client keys with their totals; no keys, no table.
  let data;
  try { data = await api("GET", "/api/keys"); } catch { $("#keys-section").hidden = true; return; }
  const keys = (data && data.keys) || [];
  $("#keys-section").hidden = keys.length === 0;
  $("#keys-table thead").replaceChildren(el("tr", {},
    el("th", {}, "Name"), el("th", {}, "Key"), el("th", {}, "Status"),
    el("th", { class: "num" }, "Requests"), el("th", { class: "num" }, "Errors"),
    el("th", { class: "num" }, "Cost"), el("th", {}, "Last request")));
  $("#keys-table tbody").replaceChildren(...keys.map((key) => el("tr", {},
    el("td", {}, key.name), el("td", {}, el("code", {}, key.shown)),
    el("td", {}, el("span", { class: `badge ${key.status === "active" ? "active" : "paused"}` }, key.status)),
    el("td", { class: "num" }, number(key.requests)), el("td", { class: "num" }, number(key.errors)),
    el("td", { class: "num" }, money(key.cost_usd)), el("td", {}, timeCell(key.last_request_at)))));
}

// --- accounts ----------------------------------------------------------

function sortedAccounts() {
  const { key, dir } = state.sort;
  const rank = (a) => (key === "status" ? STATUS_ORDER.indexOf(a.status) : a[key]);
  return [...state.accounts].sort((a, b) => {
    const x = rank(a), y = rank(b);
    if (x === y) return a.display.localeCompare(b.display);
    if (x === null || x === undefined) return 1;  // unknowns last either way
    if (y === null || y === undefined) return -1;
    return (typeof x === "string" ? x.localeCompare(y) : x < y ? -1 : 1) * dir;
  });
}

function actionButton(label, handler, extra = "") {
  return el("button", { type: "button", class: extra, onclick: handler, dataset: { action: label.toLowerCase() } }, label);
}

function accountActions(account) {
  const act = (action) => async () => {
    try {
      await api("POST", `/api/accounts/${encodeURIComponent(account.id)}/${action}`);
      notify(`${account.display}: ${action} done`);
    } catch (error) { notify(`${account.display}: ${action} failed: ${error.message}`, true); }
    refresh();
  };
  // Only the actions that apply: resume ends a pause (nothing else), an
  // account waiting for a login can only be signed in again.
  const byStatus = {
    active: () => actionButton("Pause", act("pause")),
    rate_limited: () => actionButton("Pause", act("pause")),
    quota_exceeded: () => actionButton("Pause", act("pause")),
    paused: () => actionButton("Resume", act("resume")),
    reauth_required: () => actionButton("Re-auth", () => openLogin(account)),
  };
  const main = byStatus[account.status];
  return el("td", { class: "actions" },
    main ? main() : null,
    account.pinned ? actionButton("Unpin", act("unpin")) : actionButton("Pin", act("pin")),
    actionButton("Remove", () => confirmRemove(account), "danger"));
}

function renderAccounts() {
  const rows = sortedAccounts().map((a) => el("tr", { dataset: { accountId: a.id, email: a.email } },
    el("td", {}, el("strong", {}, a.display), el("div", { class: "sub" }, a.id)),
    el("td", {}, a.plan),
    el("td", { class: "status" }, el("span", { class: `badge ${a.status}` }, a.status.replace("_", " ")),
      el("div", { class: "why" }, statusWhy(a))),
    usageCell(a.primary_used_percent, a.primary_reset_at),
    usageCell(a.secondary_used_percent, a.secondary_reset_at),
    el("td", { class: "num" }, number(a.remaining_weekly_credits)),
    el("td", { class: "num" }, money(a.cost_24h_usd), el("div", { class: "sub" }, `${a.requests_24h} req`)),
    el("td", { class: "pinned" }, a.pinned ? "📌 pinned" : "—"),
    el("td", {}, timeCell(a.last_used_at)),
    accountActions(a)));
  $("#accounts-table tbody").replaceChildren(...rows);
  $("#accounts-empty").hidden = rows.length > 0;
  for (const th of document.querySelectorAll("#accounts-table th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === state.sort.key && state.sort.dir === 1);
    th.classList.toggle("sorted-desc", th.dataset.sort === state.sort.key && state.sort.dir === -1);
  }
}

function confirmRemove(account) {
  const dialog = $("#confirm-dialog");
  $("#confirm-text").textContent =
    `Remove ${account.display} (${account.id}) from the pool? Its tokens are deleted; import its auth.json again to bring it back.`;
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      await api("DELETE", `/api/accounts/${encodeURIComponent(account.id)}`);
      notify(`${account.display} removed`);
    } catch (error) { notify(`remove failed: ${error.message}`, true); }
    refresh();
  };
  dialog.returnValue = "";
  dialog.showModal();
}

async function importFiles(files) {
  const form = new FormData();
  for (const file of files) form.append("auth_json", file, file.name);
  try {
    const result = await api("POST", "/api/accounts/import", form);
    const note = (a) => a.new ? " (new)" : a.tokens_kept ? " (kept the newer stored tokens)" : " (tokens updated)";
    const names = result.imported.map((a) => `${a.email}${note(a)}`);
    notify(`Imported ${names.join(", ")}`);
  } catch (error) { notify(`Import failed: ${error.message}`, true); }
  $("#import-file").value = "";
  refresh();
}

// --- logins (re-auth or a new account) ---------------------------------

function openLogin(account) {
  const dialog = $("#login-dialog");
  $("#login-title").textContent = account ? `Re-auth ${account.display}` : "Add an account by login";
  $("#login-choose").hidden = false;
  $("#login-progress").hidden = true;
  dialog.dataset.accountId = account ? account.id : "";
  dialog.dataset.flowId = "";
  dialog.onclose = async () => {
    clearTimeout(openLogin.poll);
    // Closing the dialog gives a login still waiting up: a browser login
    // would otherwise hold the callback port for ten minutes.
    const flowId = dialog.dataset.flowId;
    if (flowId && dialog.dataset.flowStatus === "waiting") {
      try { await api("DELETE", `/api/logins/${encodeURIComponent(flowId)}`); } catch { /* it ended meanwhile */ }
    }
    refresh();
  };
  dialog.showModal();
}

async function startLogin(mode) {
  const accountId = $("#login-dialog").dataset.accountId;
  const path = accountId ? `/api/accounts/${encodeURIComponent(accountId)}/reauth` : "/api/logins";
  $("#login-choose").hidden = true;
  $("#login-progress").hidden = false;
  $("#login-status").textContent = "Starting…";
  try {
    showLogin(await api("POST", path, { mode }));
  } catch (error) {
    $("#login-status").textContent = `Could not start: ${error.message}`;
  }
}

function showLogin(flow) {
  const dialog = $("#login-dialog");
  dialog.dataset.flowId = flow.id;
  dialog.dataset.flowStatus = flow.status;
  const messages = {
    starting: "Starting…",
    waiting: flow.user_code ? "Enter this code on the sign-in page, then wait here:" : "Finish signing in, then wait here.",
    complete: `Signed in as ${flow.email}. The account is back in the pool.`,
    failed: `Login failed: ${flow.error}`,
    cancelled: `Login cancelled: ${flow.error}`,
  };
  $("#login-status").textContent = messages[flow.status] || flow.status;
  $("#login-code").hidden = !(flow.user_code && flow.status === "waiting");
  $("#login-code").textContent = flow.user_code || "";
  const link = $("#login-url");
  link.hidden = !(flow.verification_url && flow.status === "waiting");
  link.href = flow.verification_url || "#";
  link.textContent = flow.verification_url || "";
  if (flow.status === "starting" || flow.status === "waiting") {
    openLogin.poll = setTimeout(async () => {
      try { showLogin(await api("GET", `/api/logins/${encodeURIComponent(flow.id)}`)); }
      catch (error) { $("#login-status").textContent = `Lost track of the login: ${error.message}`; }
    }, 1500);
  }
}

// --- request log -------------------------------------------------------

function filterQuery() {
  const form = $("#filters");
  const params = new URLSearchParams();
  for (const name of ["account", "model", "status"]) {
    if (form.elements[name].value) params.set(name, form.elements[name].value);
  }
  for (const name of ["since", "until"]) {
    const value = form.elements[name].value;
    if (value) params.set(name, String(new Date(value).getTime() / 1000));
  }
  params.set("limit", String(state.requestsLimit));
  params.set("offset", String(state.requestsOffset));
  return params;
}

function fillSelect(select, options) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "any"),
    ...options.map(([value, label]) => el("option", { value }, label)));
  if (options.some(([value]) => value === current)) select.value = current;
}

async function loadRequests() {
  const [accounts, data] = await Promise.all([
    api("GET", "/api/accounts"),
    api("GET", `/api/requests?${filterQuery()}`),
  ]);
  const form = $("#filters");
  fillSelect(form.elements.account, accounts.accounts.map((a) => [a.id, a.email]));
  fillSelect(form.elements.model, data.models.map((m) => [m, m]));
  state.now = Date.now() / 1000;

  const rows = data.requests.map((r) => el("tr", { dataset: { requestId: r.request_id } },
    el("td", { title: absolute(r.started_at) }, absolute(r.started_at)),
    el("td", {}, r.account_email || r.account_id || "—"),
    el("td", {}, r.api),
    el("td", {}, r.model || "—"),
    el("td", {}, el("span", { class: `badge ${r.status}` }, `${r.status} ${r.status_code}`)),
    el("td", { class: "num" }, number(r.input_tokens)),
    el("td", { class: "num" }, number(r.cached_input_tokens)),
    el("td", { class: "num" }, number(r.output_tokens)),
    el("td", { class: "num" }, number(r.reasoning_tokens)),
    el("td", { class: "num" }, money(r.cost_usd)),
    el("td", { class: "num" }, `${number(r.latency_ms)} ms`),
    el("td", { class: "num" }, r.attempts),
    el("td", { class: "error-code" }, r.error_code || "")));
  $("#requests-table tbody").replaceChildren(...rows);
  $("#requests-empty").hidden = rows.length > 0;
  $("#newer").disabled = state.requestsOffset === 0;
  $("#older").disabled = !data.has_more;
  const first = rows.length ? state.requestsOffset + 1 : 0;
  $("#page-info").textContent = `rows ${first}–${state.requestsOffset + rows.length}`;
}

// --- page wiring -------------------------------------------------------

async function refresh() {
  try {
    if (state.page === "requests") {
      await loadRequests();
    } else {
      const data = await api("GET", "/api/dashboard");
      state.now = data.snapshot.generated_at;
      state.accounts = data.accounts;
      const grafana = $("#grafana-link");
      grafana.hidden = !data.grafana_url;
      if (data.grafana_url) grafana.href = data.grafana_url;
      if (state.page === "overview") renderOverview(data);
      else renderAccounts();
    }
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    notify(`Could not load: ${error.message}`, true);
  }
}

function schedule() {
  clearInterval(state.timer);
  // The request log is read on demand; the live pages refresh themselves.
  if (state.page !== "requests") {
    state.timer = setInterval(() => {
      if (!document.querySelector("dialog[open]")) refresh();
    }, REFRESH_MS);
  }
}

function init() {
  const path = location.pathname.replace(/\/+$/, "");
  state.page = path.endsWith("/accounts") ? "accounts" : path.endsWith("/requests") ? "requests" : "overview";
  $(`#page-${state.page}`).hidden = false;
  $(`nav a[data-page="${state.page}"]`).classList.add("current");

  for (const th of document.querySelectorAll("#accounts-table th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      renderAccounts();
    });
  }
  $("#import-file").addEventListener("change", (e) => { if (e.target.files.length) importFiles(e.target.files); });
  $("#add-login").addEventListener("click", () => openLogin(null));
  for (const button of document.querySelectorAll("#login-choose button[data-mode]")) {
    button.addEventListener("click", () => startLogin(button.dataset.mode));
  }

  const filters = $("#filters");
  filters.addEventListener("submit", (e) => { e.preventDefault(); state.requestsOffset = 0; refresh(); });
  filters.addEventListener("reset", () => { state.requestsOffset = 0; setTimeout(refresh, 0); });
  $("#newer").addEventListener("click", () => {
    state.requestsOffset = Math.max(0, state.requestsOffset - state.requestsLimit);
    refresh();
  });
  $("#older").addEventListener("click", () => { state.requestsOffset += state.requestsLimit; refresh(); });

  refresh();
  schedule();
}

document.addEventListener("DOMContentLoaded", init);
