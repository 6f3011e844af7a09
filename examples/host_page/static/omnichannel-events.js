/* The simulator's Omnichannel events panel: every call the CRM made to /omnichannel/…
 * (GET /omnichannel/received), newest first, polled while the drawer is open: method,
 * path, the JSON body and whether its X-Widget-Signature was verified. Built with
 * textContent / createElementNS only. */

import { $, api, el, localTime } from "./common.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const SHIELD = "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z";
const ICON_SHAPES = {
  "shield-check": [["path", { d: SHIELD }], ["polyline", { points: "9 12 11 14 15 10" }]],
  "shield-x": [["path", { d: SHIELD }], ["line", { x1: "10", y1: "9.5", x2: "14", y2: "13.5" }],
    ["line", { x1: "14", y1: "9.5", x2: "10", y2: "13.5" }]],
  "alert": [["circle", { cx: "12", cy: "12", r: "10" }], ["line", { x1: "12", y1: "8", x2: "12", y2: "12" }],
    ["line", { x1: "12", y1: "16", x2: "12.01", y2: "16" }]],
};

function svgIcon(name, size) {
  const svg = document.createElementNS(SVG_NS, "svg");
  const attrs = { class: "icon icon-" + name, width: size, height: size, viewBox: "0 0 24 24", fill: "none",
    stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round",
    "aria-hidden": "true", focusable: "false" };
  for (const [key, value] of Object.entries(attrs)) svg.setAttribute(key, String(value));
  for (const [tag, shapeAttrs] of ICON_SHAPES[name]) {
    const shape = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(shapeAttrs)) shape.setAttribute(key, value);
    svg.append(shape);
  }
  return svg;
}

/* Pretty JSON as text nodes and coloured spans (keys, strings, numbers, literals). */
const JSON_TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

function prettyJson(value) {
  const pre = el("pre", "omni-json");
  pre.setAttribute("data-testid", "omnichannel-body");
  if (typeof value === "string") { // a body that was not JSON, shown as sent
    pre.classList.add("is-raw");
    pre.textContent = value || "(empty body)";
    return pre;
  }
  const text = JSON.stringify(value, null, 2);
  let last = 0;
  for (const match of text.matchAll(JSON_TOKEN)) {
    if (match.index > last) pre.append(text.slice(last, match.index));
    const cls = match[2] ? "j-key" : match[1] ? "j-str" : /^[tfn]/.test(match[0]) ? "j-lit" : "j-num";
    pre.append(el("span", cls, match[1] || match[0]));
    if (match[2]) pre.append(match[2]);
    last = match.index + match[0].length;
  }
  if (last < text.length) pre.append(text.slice(last));
  return pre;
}

/* The body behind a one-line preview; which entries are open survives re-renders. */
const openBodies = {};

function bodyDetails(e) {
  const body = e.body === null || e.body === undefined ? "" : e.body;
  const details = el("details", "omni-body");
  details.open = !!openBodies[e.seq];
  details.addEventListener("toggle", () => { openBodies[e.seq] = details.open; });
  const summary = el("summary", "omni-body-summary");
  summary.setAttribute("data-testid", "omnichannel-body-toggle");
  const preview = typeof body === "string" ? body : JSON.stringify(body);
  summary.append(el("span", "omni-body-label", typeof body === "string" ? "Body (not JSON)" : "JSON body"),
    el("span", "omni-body-preview", preview.length > 160 ? preview.slice(0, 160) + "…" : preview));
  details.append(summary, prettyJson(body));
  return details;
}

function verifiedBadge(e) {
  const badge = el("span", "verify-badge");
  badge.setAttribute("data-testid", "omnichannel-verified");
  badge.dataset.verified = e.verified ? "true" : "false";
  badge.append(svgIcon(e.verified ? "shield-check" : "shield-x", 12), e.verified ? "Verified" : "Not verified");
  badge.title = e.verified
    ? "X-Widget-Signature checked: HMAC-SHA256 with this host's secret, timestamp within the tolerance"
    : "X-Widget-Signature refused (" + e.reason + "): answered 401, not counted as a notification";
  return badge;
}

function eventItem(e) {
  const accepted = e.verified && e.status < 300;
  const item = el("li", "log-entry omni-entry " + (accepted ? "is-ok" : e.verified ? "is-warn" : "is-error"));
  item.setAttribute("data-testid", "omnichannel-event");
  Object.assign(item.dataset, {
    seq: String(e.seq), eventId: e.event_id || "", kind: e.kind, action: e.action, roomId: e.room_id || "",
    recordId: e.record_id || "", verified: e.verified ? "true" : "false", status: String(e.status),
  });

  const head = el("div", "log-head");
  const title = el("span", "log-title", e.record_id || "—");
  title.title = e.record_id || "";
  head.append(el("span", "log-time", localTime(e.received_at)), el("span", "pill pill-" + e.action, e.kind + " " + e.action), title);
  if (e.deliveries > 1) {
    const dup = el("span", "pill pill-dup", "×" + e.deliveries);
    dup.title = "Delivered " + e.deliveries + " times with the same X-Widget-Event-Id (deduplicated)";
    dup.setAttribute("data-testid", "omnichannel-deliveries");
    head.append(dup);
  }
  head.append(verifiedBadge(e));
  item.append(head);

  const call = el("div", "omni-call");
  call.setAttribute("data-testid", "omnichannel-call");
  const path = el("span", "omni-path", e.path);
  path.title = e.path;
  call.append(el("span", "status" + (e.status >= 400 ? " is-error" : ""), String(e.status)),
    el("span", "omni-method", e.method), path);
  const meta = [];
  if (e.room_id) meta.push("room " + e.room_id);
  meta.push(e.event_id || "no X-Widget-Event-Id");
  const metaLine = el("div", "omni-meta", meta.join("  ·  "));
  metaLine.title = meta.join("\n");
  item.append(call, metaLine);

  if (e.reason) {
    const reason = el("div", "omni-reason");
    reason.setAttribute("data-testid", "omnichannel-reason");
    reason.append(svgIcon("alert", 12), el("span", null, (e.verified ? "Rejected: " : "Not verified: ") + e.reason));
    item.append(reason);
  }
  item.append(bodyDetails(e));
  return item;
}

function emptyLine() {
  const empty = el("li", "log-empty", "Signed notifications the CRM sends to ");
  empty.append(el("span", "mono", "/omnichannel/…"), " appear here.");
  return empty;
}

let lastEventsKey = "";

function render(events) {
  const list = $("omni-events"), rejected = $("omni-rejected");
  const key = events.map((e) => e.seq + ":" + e.deliveries).join("|");
  if (key === lastEventsKey) return;
  lastEventsKey = key;
  $("omni-count").textContent = String(events.length);
  const refused = events.filter((e) => !e.verified).length;
  rejected.hidden = refused === 0;
  rejected.textContent = refused + " not verified";
  list.replaceChildren(...(events.length ? events.slice().reverse().slice(0, 100).map(eventItem) : [emptyLine()]));
}

export async function pollEvents() {
  const sim = $("simulator");
  if (document.hidden || !sim || sim.dataset.open !== "true") return;
  try {
    const result = await api("GET", "/omnichannel/received");
    if (result.ok && result.body) render(result.body.events || []);
  } catch { /* the host is going away; try again later */ }
}

export function initOmnichannelEvents() {
  const clear = $("omni-clear");
  if (!clear) return;
  clear.addEventListener("click", async () => {
    await api("DELETE", "/omnichannel/received");
    lastEventsKey = "x";
    await pollEvents();
  });
  pollEvents();
  setInterval(pollEvents, 2000);
}
