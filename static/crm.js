// The CRM record page (widget/crm.py): "Open chat room" asks the server whether the
// room can be opened before opening it in a new tab (S05); a pending chat preview is
// fetched again until it arrives (S04), without a reload.
(() => {
  "use strict";

  const record = document.querySelector("[data-crm-record]");
  if (!record) return;
  const S = JSON.parse(document.getElementById("crm-strings").textContent);
  const base = record.dataset.base; // the session cookie's path
  const started = Date.now();
  const entryOf = (node) => node.closest("[data-entry-id]");
  const body = () => document.getElementById("timeline-body");

  // The entry's notice (the page's only live region); actions: {retry} or none.
  function notice(entry, text, tone, actions) {
    const box = entry.querySelector(".room-notice");
    box.dataset.tone = text ? tone : "";
    box.firstElementChild.textContent = text || "";
    const extra = box.lastElementChild;
    extra.hidden = !actions;
    extra.firstElementChild.hidden = !(actions && actions.retry);
  }

  const check = (entry, anyway) => fetch(base + "/room-check", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CRM-Request": "1" },
    credentials: "same-origin",
    keepalive: anyway,
    body: JSON.stringify({ entry: entry, open_anyway: anyway }),
  });

  async function checkRoom(link) {
    const entry = entryOf(link);
    if (link.getAttribute("aria-busy")) return;
    link.setAttribute("aria-busy", "true");
    const slow = setTimeout(notice, 400, entry, S.room_checking, "info"); // only if not instant
    let response = null;
    let answer = null;
    try {
      response = await check(link.dataset.entry, false);
      answer = await response.json().catch(() => null);
    } catch (_) {
      // our own server unreachable: as "couldn't check"
    }
    clearTimeout(slow);
    link.removeAttribute("aria-busy");
    const code = answer && answer.error ? answer.error.code : "";
    let url = null;
    try {
      url = response.ok && /^https?:$/.test(new URL(answer.url).protocol) && answer.url;
    } catch (_) {
      url = null;
    }
    if (url) {
      notice(entry, "");
      window.open(url, "_blank", "noopener,noreferrer"); // still in the click's activation: the check takes ≤ 2 s
    } else if (code === "room_not_found" || code === "room_forbidden") {
      notice(entry, code === "room_not_found" ? S.room_unavailable : S.room_forbidden, "error");
    } else if (response && (response.status === 401 || response.status === 404)) {
      notice(entry, response.status === 401 ? S.room_session_ended : S.record_deleted_title, "error");
    } else {
      // Slow, down or not configured: the agent decides ("Open anyway" is a plain link).
      notice(entry, S.room_check_failed, "warning", { retry: code !== "chat_panel_not_configured" });
    }
  }

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    const link = target && target.closest("a[data-room-check]");
    if (link && (event.type === "click" || event.button === 1)) {
      event.preventDefault(); // never navigate before the server said the room is there
      return checkRoom(link);
    }
    const action = event.type === "click" && target && target.closest("[data-action]");
    if (action && action.dataset.action === "retry") {
      checkRoom(entryOf(action).querySelector("a[data-room-check]"));
    } else if (action && action.dataset.action === "open-anyway") {
      // It navigates natively (a fresh click: no pop-up blocker); the server counts it.
      notice(entryOf(action), "");
      check(action.dataset.entry, true).catch(() => {});
    }
  }
  document.addEventListener("click", onClick);
  document.addEventListener("auxclick", onClick); // a middle click is checked too

  // -- live chat preview (S04) -----------------------------------------------------

  // Replace only the entries that changed, keeping each entry's notice and the focus.
  function swap(html) {
    const next = new DOMParser().parseFromString(html, "text/html").getElementById("timeline-body");
    const current = body();
    if (!next) return;
    const ids = (root) => Array.from(root.querySelectorAll("[data-entry-id]"), (e) => e.dataset.entryId).join();
    if (ids(current) !== ids(next)) return current.replaceWith(document.adoptNode(next));
    for (const fresh of next.querySelectorAll("[data-entry-id]")) {
      const old = current.querySelector(`[data-entry-id="${CSS.escape(fresh.dataset.entryId)}"]`);
      if (old.dataset.status === fresh.dataset.status) continue;
      const focused = old.contains(document.activeElement) && document.activeElement.dataset.testid;
      const kept = old.querySelector(".room-notice");
      if (kept) fresh.querySelector(".room-notice").replaceWith(kept);
      old.replaceWith(document.adoptNode(fresh));
      const again = focused && fresh.querySelector(`[data-testid="${CSS.escape(focused)}"]`);
      if (again) again.focus({ preventScroll: true });
    }
    current.dataset.pending = next.dataset.pending;
  }

  async function poll() {
    if (!body().querySelector('[data-status="pending"]')) return;
    if (Date.now() - started > 30000) {
      body().dataset.pending = "stalled"; // the worker is late: stop saying "fetching"
      return;
    }
    try {
      const response = await fetch(base + "/timeline?lang=" + encodeURIComponent(document.documentElement.lang), {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (response.status === 401 || response.status === 404) return; // nothing more to show here
      if (response.ok) swap(await response.text());
    } catch (_) {
      // offline for a moment: again on the next tick
    }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
})();
