// The Deal & Ticket component: the room snapshot kept live over SSE; postMessage to
// the host (RFC 6-7). data-state (and data-error) pick what shows, in CSS.
(() => {
  "use strict";

  const root = document.getElementById("widget");
  const page = document.documentElement;
  const $ = (id) => document.getElementById(id);
  const S = JSON.parse($("widget-strings").textContent);
  const MAX_FAILURES = 3; // failed reconnects before "error"
  const MAX_LOST_MS = 30000; // or this long without a stream
  const RENEW_MS = 10000; // the host's time to hand over a new token
  // The host's "style" message: only these, each with values of its kind.
  const COLOR = /^(#([\da-f]{3}|[\da-f]{6}|[\da-f]{8})|rgba?\([\d.%,/\s]+\))$/i;
  const HOST_VARS = {
    "--crm-accent": COLOR, "--crm-accent-text": COLOR, "--crm-surface": COLOR, "--crm-text": COLOR,
    "--crm-border": COLOR, "--crm-font": /^[\p{L}\d ,'"-]{1,200}$/u, "--crm-radius": /^(0|(1?\d|2[0-4])px)$/,
  };

  const parentOrigin = root.dataset.parentOrigin;
  const hosted = !!parentOrigin && window.parent !== window; // someone can hand over tokens
  const base = "/embed/rooms/" + encodeURIComponent(root.dataset.roomId) + "/";
  let token = root.dataset.token;
  let streamToken; // the token the current stream was opened with
  let shown = JSON.parse($("widget-snapshot").textContent);
  let state = root.dataset.state;
  let source = null;
  let firstMessage;
  let failures = 0;
  let lostAt = 0;
  let timer = 0;
  let recoverMs = 0;
  let renewTimer = 0;
  let noticeTimer = 0;
  const displayed = new Set();

  // The current token: the host may hand over a new one.
  const endpoint = (name) => base + name + "?token=" + encodeURIComponent(token);

  function post(type, extra) {
    if (hosted) {
      window.parent.postMessage(
        Object.assign({ source: "crm-deal-ticket-widget", version: 1, type: type }, extra), parentOrigin);
    }
  }

  function setState(next, reason) {
    const changed = next !== state;
    state = next;
    root.dataset.state = next;
    root.dataset.error = next === "error" ? reason || "unreachable" : "";
    // Names open records only while live.
    root.querySelectorAll("a[data-open]").forEach((link) => {
      const off = next !== "ready";
      link.setAttribute("aria-disabled", off);
      off ? (link.tabIndex = -1) : link.removeAttribute("tabindex");
    });
    if (changed || next === "ready" || next === "empty") post("state", { state: next, version: shown ? shown.version : 0 });
    const said = { reconnecting: S.reconnecting, expired: S.expired_title, forbidden: S.forbidden_title,
      error: S["error_" + root.dataset.error + "_title"] }[next];
    if (changed && said) announce(said);
  }

  // -- rendering ---------------------------------------------------------------

  function isHttp(url) {
    try {
      return /^https?:$/.test(new URL(url, location.href).protocol);
    } catch (_) {
      return false;
    }
  }

  const announce = (text) => { $("announcer").textContent = text; };

  function fill(card, record) {
    card.dataset.id = record.id;
    card.querySelectorAll("[data-field]").forEach((el) => {
      const value = record[el.dataset.field] == null ? "" : String(record[el.dataset.field]);
      el.textContent = value;
      if (el.hasAttribute("title") && el.dataset.field !== "creator") el.title = value; // in full when cut
      if (el.hasAttribute("data-optional")) el.hidden = !value;
    });
    const badge = card.querySelector(".badge");
    badge.classList.toggle("badge--ai", record.creator === "AI");
    badge.classList.toggle("badge--bot", record.creator !== "AI");
    card.querySelector("a[data-open]").href = isHttp(record.url) ? record.url : "#";
  }

  // Draws a slot; a change seen live is tagged for a moment and returned in words.
  function renderSlot(kind, record, before) {
    const list = root.querySelector(".previews");
    let card = list.querySelector("[data-kind=" + kind + "]");
    const previous = before && before[kind];
    if (!record) {
      if (card) card.remove();
      return previous ? S[kind + "_removed"] : "";
    }
    if (!card) {
      card = $(kind + "-template").content.firstElementChild.cloneNode(true);
      kind === "deal" ? list.prepend(card) : list.append(card);
    }
    fill(card, record);
    const change = !before ? "" : !previous || previous.id !== record.id ? "new"
      : Object.keys(record).some((key) => previous[key] !== record[key]) ? "updated" : "";
    if (!change) return "";
    const tag = card.querySelector(".card__tag");
    tag.textContent = S["change_" + change];
    tag.hidden = false;
    card.classList.remove("card--changed");
    void card.offsetWidth; // restarts a fade still running
    card.classList.add("card--changed");
    clearTimeout(card.fade);
    card.fade = setTimeout(() => {
      tag.hidden = true;
      card.classList.remove("card--changed");
    }, 4000);
    return S[kind + "_" + change].replace("{name}", record.name);
  }

  function reportDisplayed(kind, record) {
    if (record && !displayed.has(kind + record.id)) {
      displayed.add(kind + record.id);
      navigator.sendBeacon(endpoint("telemetry"), JSON.stringify({ event: "displayed", kind: kind, id: record.id }));
    }
  }

  function render(snapshot) {
    const before = snapshot !== shown && shown;
    shown = snapshot;
    root.dataset.version = snapshot.version;
    const said = [renderSlot("deal", snapshot.deal, before), renderSlot("ticket", snapshot.ticket, before)];
    setState(snapshot.deal || snapshot.ticket ? "ready" : "empty");
    if (said.join("")) announce(said.filter(Boolean).join(". "));
    reportDisplayed("deal", snapshot.deal);
    reportDisplayed("ticket", snapshot.ticket);
  }

  // Never an older version after a newer one.
  const newest = (snapshot) => (!shown || snapshot.version >= shown.version ? snapshot : shown);

  function notice(text) {
    const box = root.querySelector(".notice");
    box.firstElementChild.textContent = text;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { box.hidden = true; }, 8000);
  }

  // -- the stream --------------------------------------------------------------

  function stop() {
    clearTimeout(timer);
    if (source) source.close();
    source = null;
  }

  function connect(resume) {
    stop();
    firstMessage = true;
    streamToken = token;
    source = CrmRoomFeed.connect(endpoint("events") + (resume && shown ? "&last_event_id=" + shown.version : ""));
    source.addEventListener("open", () => {
      failures = lostAt = recoverMs = 0;
      if (shown) render(shown); // live again (a resumed stream may send nothing): say so
    });
    source.addEventListener("room", (event) => {
      const snapshot = JSON.parse(event.data);
      // A connection's first message is read from the store.
      if (firstMessage || !shown || snapshot.version > shown.version) render(newest(snapshot));
      firstMessage = false;
    });
    source.addEventListener("token-expired", () => tokenExpired(streamToken));
    source.onerror = () => {
      stop();
      lost();
    };
  }

  // ``used`` ran out: go on with a newer one, or wait for the host's (RENEW_MS).
  function tokenExpired(used) {
    stop();
    if (token !== used) return connect(true);
    post("token-expired");
    clearTimeout(renewTimer);
    renewTimer = setTimeout(() => {
      renewTimer = 0;
      setState("expired");
    }, hosted ? RENEW_MS : 0);
  }

  // Unreachable: try again, backing off, while visible. An invalid token: retrying can't help.
  function fail(reason) {
    stop();
    setState("error", reason);
    if (!reason) timer = setTimeout(recover, (recoverMs = Math.min(recoverMs * 2 || 2000, 15000)));
  }

  async function recover() {
    if (state !== "error" || root.dataset.error === "invalid" || document.hidden) return;
    const outcome = await revalidate();
    if (outcome === "ok") connect(true);
    else if (outcome === "unreachable" && state === "error") fail();
  }

  async function denied(response, used) {
    const body = await response.json().catch(() => null);
    if (body && body.error && body.error.code === "token_expired") tokenExpired(used);
    else if (response.status === 403) setState("forbidden");
    else fail("invalid");
  }

  // The room from the store; also why a stream failed (EventSource hides statuses).
  async function revalidate() {
    const used = token;
    let response;
    try {
      response = await fetch(endpoint("state"), { cache: "no-store" });
      if (response.ok) {
        render(newest(await response.json()));
        return "ok";
      }
    } catch (_) {
      return "unreachable";
    }
    if (response.status !== 401 && response.status !== 403) return "unreachable";
    await denied(response, used);
    return "denied";
  }

  async function lost() {
    lostAt = lostAt || Date.now();
    failures += 1;
    const outcome = await revalidate();
    if (outcome === "ok") {
      timer = setTimeout(connect, Math.min(1000 * failures, 10000), true);
    } else if (outcome === "unreachable") {
      if (failures > MAX_FAILURES || Date.now() - lostAt >= MAX_LOST_MS) return fail();
      setState("reconnecting");
      timer = setTimeout(connect, 1000 * 2 ** (failures - 1), true);
    }
  }

  function restart() {
    failures = lostAt = recoverMs = 0;
    setState("loading");
    connect(false);
  }

  // Shown again or back online (a laptop that slept): no stale data; new stream if online.
  async function wake(event) {
    if (document.hidden) return;
    if (state === "error") recover();
    else if (/^(ready|empty|reconnecting)$/.test(state) && (await revalidate()) === "ok" && event.type === "online") {
      connect(true);
    }
  }
  document.addEventListener("visibilitychange", wake);
  addEventListener("online", wake);

  // -- clicks ------------------------------------------------------------------

  async function open(link) {
    const kind = link.dataset.open;
    const id = link.closest("[data-id]").dataset.id;
    const used = token;
    let response;
    let body;
    try {
      response = await fetch(endpoint("open"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        // tz: for the CRM page's times
        body: JSON.stringify({ kind: kind, id: id, tz: Intl.DateTimeFormat().resolvedOptions().timeZone }),
      });
      body = response.ok && (await response.json());
    } catch (_) {
      return notice(S.open_failed);
    }
    if (body) {
      if (!isHttp(body.url)) return notice(S.open_failed);
      // "noopener" would hide a blocked pop-up (null): cut the link instead.
      const tab = window.open(body.url, "_blank");
      if (!tab) return notice(S.popup_blocked);
      tab.opener = null;
      post("open", { kind: kind, id: id });
    } else if (response.status === 404) {
      notice(S[kind + "_deleted"]);
      connect(false); // the store says what the room shows now
    } else if (response.status === 403) {
      notice(S[kind + "_forbidden"]);
    } else if (response.status === 401) {
      denied(response, used);
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

  addEventListener("message", (event) => {
    const data = event.data;
    if (!hosted || event.origin !== parentOrigin || event.source !== window.parent || !data) return;
    if (data.type === "refresh") restart();
    if (data.type === "style") {
      if (/^(light|dark)$/.test(data.theme)) page.dataset.theme = data.theme;
      for (const name in HOST_VARS) {
        const value = String((data.vars && data.vars[name]) || "").trim();
        if (HOST_VARS[name].test(value)) page.style.setProperty(name, value);
      }
    }
    if (data.type === "token" && typeof data.token === "string" && data.token) {
      token = data.token; // silently: the stream runs on
      if (renewTimer || state === "expired") {
        clearTimeout(renewTimer);
        renewTimer = 0;
        connect(true);
      } else if (state === "error" || state === "forbidden") {
        restart();
      }
    }
  });

  let height = 0;
  new ResizeObserver(() => {
    const next = Math.ceil(root.getBoundingClientRect().height);
    if (next !== height) post("resize", { height: (height = next) });
  }).observe(root);

  post("ready");
  if (shown) { // the first paint: says its state, counts what it displays, goes live
    render(shown);
    connect(true);
  } else {
    post("state", { state: state, version: 0 });
    if (state === "expired") post("token-expired");
  }
})();
