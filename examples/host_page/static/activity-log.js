/* The simulator's Activity panel: what the simulator's calls answered, and what the
 * Deal & Ticket component and Omnichannel did, newest first (at most 100 lines). */

import { $, clock, el } from "./common.js";

const EMPTY = "Actions and their API responses appear here.";

function prepend(item) {
  const list = $("sim-log");
  if (!list) return;
  list.querySelector(".log-empty")?.remove();
  list.insertBefore(item, list.firstChild);
  while (list.children.length > 100) list.lastChild.remove();
}

function entry(className, action) {
  const item = el("li", "log-entry " + className);
  item.setAttribute("data-testid", "sim-log-entry");
  item.dataset.action = action;
  return item;
}

export function logInfo(title, detail, isError, action = "widget") {
  const item = entry(isError ? "is-error" : "is-info", action);
  const head = el("div", "log-head");
  head.append(el("span", "log-time", clock()), el("span", "log-title", title));
  item.append(head);
  if (detail) item.append(el("div", isError ? "log-msg" : "log-detail", detail));
  prepend(item);
  return item;
}

function describeRecord(summary) {
  if (!summary) return "";
  if (summary.kind === "room") {
    return "room v" + summary.version + " · deal " + (summary.deal || "—") + " · ticket " + (summary.ticket || "—");
  }
  if (summary.kind === "contact") return "contact " + summary.id + " “" + summary.name + "”";
  const parts = [summary.kind, summary.id];
  if (summary.unique_id) parts.push(summary.unique_id);
  if (summary.name) parts.push("“" + summary.name + "”");
  if (summary.deleted) return parts.join(" ") + " deleted";
  if (summary.stage) parts.push(summary.stage + " / " + summary.pipeline);
  if (summary.status) parts.push(summary.status);
  if (summary.creator) parts.push("creator " + summary.creator);
  return parts.join(" · ").replace(/^(deal|ticket) · /, "$1 ");
}

/* One simulator action (or the manual Create Deal) with each of its record API calls. */
export function logResult(result, httpStatus) {
  const calls = result.calls || [];
  const item = entry(result.ok ? "is-ok" : "is-error", result.action || "");
  item.dataset.ok = result.ok ? "true" : "false";
  item.dataset.httpStatus = String(httpStatus);
  item.dataset.status = calls.map((c) => (c.status === null ? "none" : String(c.status))).join(",");
  item.dataset.recordIds = (result.records || []).map((r) => r.id).join(",");
  const head = el("div", "log-head");
  head.append(el("span", "log-time", clock()), el("span", "log-title", result.label || result.action),
    el("span", "status" + (result.ok ? "" : " is-error"), result.ok ? "OK" : String(httpStatus)));
  item.append(head);
  const repeated = calls.some((c) => c.error && c.error === result.message);
  if (!result.ok && result.message && !repeated) item.append(el("div", "log-msg", result.message));
  const list = el("ul", "log-calls");
  for (const call of calls) {
    const line = el("li", "log-call");
    const cls = call.status === null ? " is-none" : call.status >= 400 ? " is-error" : "";
    line.append(el("span", "status" + cls, call.status === null ? "—" : String(call.status)),
      " " + call.method + " " + call.path + " ");
    if (call.error) line.append(el("span", "log-error", call.error));
    else if (call.summary) line.append(el("span", "log-detail", describeRecord(call.summary)));
    list.append(line);
  }
  item.append(list);
  prepend(item);
}

export function initActivityLog() {
  $("sim-log-clear")?.addEventListener("click", () => {
    $("sim-log").replaceChildren(el("li", "log-empty", EMPTY));
  });
}
