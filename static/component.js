// The Deal & Ticket component: keeps the server-rendered room snapshot live over
// server-sent events and talks to the host page with postMessage.
//
// States (root data-state): empty, ready, reconnecting, error, forbidden, expired,
// loading. Which panel shows is pure CSS on data-state.
(() => {
  "use strict";

  const root = document.getElementById("widget");
  const S = JSON.parse(document.getElementById("widget-strings").textContent);
  const MESSAGE_SOURCE = "crm-deal-ticket-widget";
  const MAX_FAILURES = 3; // failed reconnects before "error"
  const MAX_LOST_MS = 30000; // or this long without a stream
  const NOTICE_MS = 8000;

  const roomId = root.dataset.roomId;
  const parentOrigin = root.dataset.parentOrigin;
  const base = "/embed/rooms/" + encodeURIComponent(roomId);
  let token = root.dataset.token;
  let shown = JSON.parse(document.getElementById("widget-snapshot").textContent);
  let state = root.dataset.state;
  let source = null;
  let firstMessage = true;
  let failures = 0;
  let lostAt = 0;
  let timer = 0;
  let noticeTimer = 0;
  const displayed = new Set();

  // The current token travels with every call (it changes when the host hands over a new one).
  function endpoint(name) {
    return base + "/" + name + "?token=" + encodeURIComponent(token);
  }

  // -- host page ---------------------------------------------------------------

  function post(type, extra) {
    if (!parentOrigin || window.parent === window) return;
    window.parent.postMessage(
      Object.assign({ source: MESSAGE_SOURCE, version: 1, type: type }, extra || {}),
      parentOrigin,
    );
  }

  function setState(next) {
    const changed = next !== state;
    state = next;
    root.dataset.state = next;
    if (changed || next === "ready" || next === "empty") {
      post("state", { state: next, version: shown ? shown.version : 0 });
    }
  }

  // -- rendering ---------------------------------------------------------------

  function isHttp(url) {
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:";
    } catch (_) {
      return false;
    }
  }

  function fill(card, record) {
    card.dataset.id = record.id;
    card.querySelectorAll("[data-field]").forEach((el) => {
      el.textContent = record[el.dataset.field] == null ? "" : String(record[el.dataset.field]);
    });
    const badge = card.querySelector('[data-testid="creator-badge"]');
    badge.classList.toggle("badge--ai", record.creator === "AI");
    badge.classList.toggle("badge--bot", record.creator !== "AI");
    card.querySelector("a[data-open]").href = isHttp(record.url) ? record.url : "#";
  }

  function renderSlot(kind, record) {
    const list = root.querySelector(".previews");
    let card = list.querySelector('[data-kind="' + kind + '"]');
    if (!record) {
      if (card) card.remove();
      return;
    }
    if (!card) {
      card = document.getElementById(kind + "-template").content.firstElementChild.cloneNode(true);
      if (kind === "deal") list.prepend(card);
      else list.append(card);
    }
    fill(card, record);
  }

  function reportDisplayed(kind, record) {
    if (!record || displayed.has(kind + ":" + record.id)) return;
    displayed.add(kind + ":" + record.id);
    const body = JSON.stringify({ event: "displayed", kind: kind, id: record.id });
    const url = endpoint("telemetry");
    if (!(navigator.sendBeacon && navigator.sendBeacon(url, body))) {
      fetch(url, { method: "POST", body: body, headers: { "Content-Type": "text/plain" }, keepalive: true })
        .catch(() => {});
    }
  }

  function render(snapshot) {
    shown = snapshot;
    root.dataset.version = String(snapshot.version);
    renderSlot("deal", snapshot.deal);
    renderSlot("ticket", snapshot.ticket);
    setState(snapshot.deal || snapshot.ticket ? "ready" : "empty");
    reportDisplayed("deal", snapshot.deal);
    reportDisplayed("ticket", snapshot.ticket);
  }

  function notice(text) {
    const box = root.querySelector(".notice");
    box.querySelector(".notice__text").textContent = text;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { box.hidden = true; }, NOTICE_MS);
  }

  // -- the stream --------------------------------------------------------------

  function stop() {
    clearTimeout(timer);
    if (source) {
      source.close();
      source = null;
    }
  }

  function connect(resume) {
    stop();
    firstMessage = true;
    let url = endpoint("events");
    if (resume && shown) url += "&last_event_id=" + shown.version;
    source = new EventSource(url);
    source.addEventListener("open", () => {
      failures = 0;
      lostAt = 0;
      if (state === "reconnecting" && shown) render(shown);
    });
    source.addEventListener("room", (event) => {
      const snapshot = JSON.parse(event.data);
      // The first message of a connection is read from the store: authoritative.
      if (firstMessage || !shown || snapshot.version > shown.version) render(snapshot);
      firstMessage = false;
    });
    source.addEventListener("token-expired", expired);
    source.onerror = () => {
      stop();
      lost();
    };
  }

  function expired() {
    stop();
    setState("expired");
    post("token-expired");
  }

  // EventSource hides status codes: ask /state why the stream failed.
  async function lost() {
    if (!lostAt) lostAt = Date.now();
    failures += 1;
    let response = null;
    try {
      response = await fetch(endpoint("state"), { cache: "no-store" });
    } catch (_) {
      response = null; // unreachable
    }
    if (response && response.ok) {
      render(await response.json());
      timer = setTimeout(() => connect(true), Math.min(1000 * failures, 10000));
      return;
    }
    if (response && (response.status === 401 || response.status === 403)) {
      const body = await response.json().catch(() => null);
      const code = body && body.error ? body.error.code : "";
      if (code === "token_expired") expired();
      else setState(response.status === 403 ? "forbidden" : "error");
      return;
    }
    if (failures > MAX_FAILURES || Date.now() - lostAt >= MAX_LOST_MS) {
      setState("error");
      return;
    }
    setState("reconnecting");
    timer = setTimeout(() => connect(true), 1000 * 2 ** (failures - 1));
  }

  function restart() {
    failures = 0;
    lostAt = 0;
    setState("loading");
    connect(false);
  }

  // -- clicks ------------------------------------------------------------------

  // The agent's IANA time zone, so the CRM page shows times as the agent's clock does.
  function timeZone() {
    try {
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      return typeof zone === "string" && zone.length <= 64 ? zone : null;
    } catch (_) {
      return null;
    }
  }

  async function open(link) {
    const kind = link.dataset.open;
    const id = link.closest("[data-id]").dataset.id;
    let response;
    try {
      response = await fetch(endpoint("open"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kind: kind, id: id, tz: timeZone() }),
      });
    } catch (_) {
      notice(S.open_failed);
      return;
    }
    if (response.ok) {
      const body = await response.json();
      if (!isHttp(body.url)) {
        notice(S.open_failed);
        return;
      }
      window.open(body.url, "_blank", "noopener,noreferrer");
      post("open", { kind: kind, id: id });
    } else if (response.status === 404) {
      notice(S[kind + "_deleted"]);
      connect(false); // the store says what the room shows now
    } else if (response.status === 403) {
      notice(S[kind + "_forbidden"]);
    } else if (response.status === 401) {
      expired();
    } else {
      notice(S.open_failed);
    }
  }

  root.addEventListener("click", (event) => {
    const action = event.target.closest("[data-action]");
    if (action && action.dataset.action === "retry") restart();
    if (action && action.dataset.action === "dismiss") root.querySelector(".notice").hidden = true;
    const link = event.target.closest("a[data-open]");
    if (!link) return;
    event.preventDefault();
    if (state === "ready") open(link); // not while stale, in error or expired
  });

  // -- messages from the host --------------------------------------------------

  window.addEventListener("message", (event) => {
    if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
    const data = event.data;
    if (!data || typeof data !== "object") return;
    if (data.type === "refresh") restart();
    if (data.type === "token" && typeof data.token === "string" && data.token) {
      token = data.token;
      restart();
    }
  });

  if (window.ResizeObserver) {
    let last = 0;
    new ResizeObserver(() => {
      const height = Math.ceil(root.getBoundingClientRect().height);
      if (height !== last) {
        last = height;
        post("resize", { height: height });
      }
    }).observe(root);
  }

  post("ready");
  post("state", { state: state, version: shown ? shown.version : 0 });
  if (state === "ready" || state === "empty") {
    if (shown) {
      reportDisplayed("deal", shown.deal);
      reportDisplayed("ticket", shown.ticket);
    }
    connect(true);
  } else if (state === "expired") {
    post("token-expired");
  }
})();
