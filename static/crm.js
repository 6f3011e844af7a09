// The CRM record page (widget/crm.py): the timeline's "Open chat room" asks the server
// to check the room before opening it in a new tab (S05), and a pending chat preview
// is fetched again until it arrives (S04), without reloading the page.
(() => {
  "use strict";

  const record = document.querySelector("[data-crm-record]");
  if (!record) return;
  const S = JSON.parse(document.getElementById("crm-strings").textContent);
  const base = record.dataset.base; // "/crm/deals/<id>": the session cookie's path
  const lang = document.documentElement.lang;
  const HEADERS = { "Content-Type": "application/json", "X-CRM-Request": "1" };
  const POLL_MS = 1000; // while a chat preview is pending ...
  const POLL_FOR_MS = 30000; // ... for at most this long
  const CHECKING_AFTER_MS = 400; // say "Checking…" only if the check is not instant

  function isHttp(url) {
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:";
    } catch (_) {
      return false;
    }
  }

  function entryOf(node) {
    return node.closest("[data-entry-id]");
  }

  // -- the room notice (the only live region) ------------------------------------

  function notice(entry, text, tone, actions) {
    const box = entry.querySelector(".room-notice");
    if (!box) return;
    box.dataset.tone = text ? tone : "";
    box.querySelector(".room-notice__text").textContent = text || "";
    const extra = box.querySelector(".room-notice__actions");
    extra.hidden = !actions;
    if (actions) extra.querySelector('[data-action="retry"]').hidden = !actions.retry;
  }

  // -- room deeplink (S05) ---------------------------------------------------------

  async function checkRoom(link) {
    const entry = entryOf(link);
    if (link.dataset.busy) return;
    link.dataset.busy = "true";
    link.setAttribute("aria-busy", "true");
    const slow = setTimeout(() => notice(entry, S.room_checking, "info", null), CHECKING_AFTER_MS);
    let response = null;
    let body = null;
    try {
      response = await fetch(base + "/room-check", {
        method: "POST",
        headers: HEADERS,
        credentials: "same-origin",
        body: JSON.stringify({ entry: link.dataset.entry }),
      });
      body = await response.json().catch(() => null);
    } catch (_) {
      response = null; // our own server unreachable: same as "couldn't check"
    } finally {
      clearTimeout(slow);
      delete link.dataset.busy;
      link.removeAttribute("aria-busy");
    }
    const code = body && body.error ? body.error.code : "";
    if (response && response.ok && body && isHttp(body.url)) {
      notice(entry, "", "", null);
      // Still inside the click's transient activation: the check is bounded (2 s).
      window.open(body.url, "_blank", "noopener,noreferrer");
    } else if (response && code === "room_not_found") {
      notice(entry, S.room_unavailable, "error", null);
    } else if (response && code === "room_forbidden") {
      notice(entry, S.room_forbidden, "error", null);
    } else if (response && response.status === 401) {
      notice(entry, S.room_session_ended, "error", null);
    } else if (response && response.status === 404) {
      notice(entry, S.record_deleted_title, "error", null);
    } else {
      // Slow, down or not configured: the agent decides ("Open anyway" is a plain link).
      notice(entry, S.room_check_failed, "warning", { retry: code !== "chat_panel_not_configured" });
    }
  }

  // "Open anyway" navigates natively (a fresh click, no pop-up blocker); the server
  // only hears about it so the click counts.
  function openedAnyway(anchor) {
    notice(entryOf(anchor), "", "", null);
    fetch(base + "/room-check", {
      method: "POST",
      headers: HEADERS,
      credentials: "same-origin",
      keepalive: true,
      body: JSON.stringify({ entry: anchor.dataset.entry, open_anyway: true }),
    }).catch(() => {});
  }

  // A middle click would open the room without asking: check it like a click.
  document.addEventListener("auxclick", (event) => {
    const link = event.button === 1 && event.target instanceof Element && event.target.closest("a[data-room-check]");
    if (!link) return;
    event.preventDefault();
    checkRoom(link);
  });

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const link = target.closest("a[data-room-check]");
    if (link) {
      event.preventDefault(); // never navigate before the server said the room is there
      checkRoom(link);
      return;
    }
    const action = target.closest("[data-action]");
    if (!action) return;
    if (action.dataset.action === "retry") {
      const room = entryOf(action).querySelector("a[data-room-check]");
      if (room) checkRoom(room);
    } else if (action.dataset.action === "open-anyway") {
      openedAnyway(action);
    }
  });

  // -- live chat preview (S04) -----------------------------------------------------

  const body = () => document.getElementById("timeline-body");
  const startedAt = Date.now();

  function pending() {
    return body().querySelector('[data-testid="timeline-entry"][data-status="pending"]') !== null;
  }

  // Replace only the entries that changed, keeping each entry's notice and the focus.
  function swap(html) {
    const next = new DOMParser().parseFromString(html, "text/html").getElementById("timeline-body");
    if (!next) return;
    const current = body();
    const ids = (root) => Array.from(root.querySelectorAll("[data-entry-id]"), (e) => e.dataset.entryId).join(" ");
    if (ids(current) !== ids(next)) {
      current.replaceWith(document.adoptNode(next));
      return;
    }
    for (const fresh of next.querySelectorAll("[data-entry-id]")) {
      const old = current.querySelector(`[data-entry-id="${CSS.escape(fresh.dataset.entryId)}"]`);
      if (!old || old.dataset.status === fresh.dataset.status) continue;
      const focused = old.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
      const oldNotice = old.querySelector(".room-notice");
      const freshNotice = fresh.querySelector(".room-notice");
      if (oldNotice && freshNotice) freshNotice.replaceWith(oldNotice);
      const adopted = document.adoptNode(fresh);
      old.replaceWith(adopted);
      if (focused) {
        const again = adopted.querySelector(`[data-testid="${CSS.escape(focused)}"]`);
        if (again) again.focus({ preventScroll: true });
      }
    }
    current.dataset.pending = next.dataset.pending;
  }

  async function poll() {
    if (!pending()) return;
    if (Date.now() - startedAt > POLL_FOR_MS) {
      body().dataset.pending = "stalled"; // the worker is late: stop saying "fetching"
      return;
    }
    try {
      const response = await fetch(base + "/timeline?lang=" + encodeURIComponent(lang), {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (response.status === 401 || response.status === 404) return; // nothing more to show here
      if (response.ok) swap(await response.text());
    } catch (_) {
      // offline for a moment: try again on the next tick
    }
    setTimeout(poll, POLL_MS);
  }

  if (pending()) setTimeout(poll, POLL_MS);
})();
