/* A verified Omnichannel notification for the room on screen asks its component to
 * refresh (RFC section 7's "refresh"), drawer open or not. The page polls the host's own
 * record of them, only this room's and only after a cursor: the server renders the
 * cursor into the page (data-omni-cursor), so whatever arrived before the page loaded is
 * backlog; a duplicate delivery adds no entry, so it never refreshes twice. Polling
 * stops while the document is hidden and resumes (at once) when it is visible again. */

import { api, roomId } from "./common.js";
import { logInfo } from "./activity-log.js";
import { hasComponent, refreshComponent } from "./deal-ticket.js";
import { pollEvents } from "./omnichannel-events.js";

const WATCH_MS = 1500;
let cursor = 0, timer = null, watching = false;

function describe(events) {
  return [...new Set(events.map((e) => e.kind + " " + e.action))].join(", ");
}

function onNotifications(events) {
  const refreshed = refreshComponent();
  let detail = events.map((e) =>
    e.method + " " + e.path + (e.record_id && !e.path.includes(e.record_id) ? " · " + e.record_id : "")).join("  ·  ");
  if (!refreshed) {
    detail += hasComponent() ? "  (the component is still loading: it reads the current state anyway)"
      : "  (no Deal & Ticket component on this page)";
  }
  const item = logInfo("Omnichannel: " + describe(events) + (refreshed ? " → refreshed the component" : ""),
    detail, false, "omnichannel");
  item.classList.add("is-wrapping");
  item.dataset.refreshed = refreshed ? "true" : "false";
  item.dataset.recordIds = events.map((e) => e.record_id || "").join(",");
  item.dataset.eventIds = events.map((e) => e.event_id || "").join(",");
  pollEvents();
}

async function watch() {
  clearTimeout(timer);
  if (watching || document.hidden) return;
  watching = true;
  try {
    const result = await api("GET", "/omnichannel/received?room=" + encodeURIComponent(roomId()) + "&since=" + cursor);
    const body = result.body;
    if (result.ok && body && typeof body.cursor === "number") {
      cursor = body.cursor; // the host's cursor: its calls up to here are seen
      const fresh = (body.events || []).filter((e) => e.verified && e.status < 300);
      if (fresh.length) onNotifications(fresh);
    }
  } catch { /* the host is going away; try again later */ }
  watching = false;
  if (!document.hidden) timer = setTimeout(watch, WATCH_MS);
}

export function initOmnichannelWatch() {
  cursor = parseInt(document.body.dataset.omniCursor, 10) || 0;
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) watch();
  });
  watch();
}
