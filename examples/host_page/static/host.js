/* Example host page (plays Omnichannel).
 *
 * Loaded in <head> without `defer`, so the postMessage listener exists before the
 * Deal & Ticket iframe can report "ready". Everything that needs the DOM waits for
 * DOMContentLoaded. Data is only ever written with textContent (never innerHTML).
 */
(function () {
  "use strict";

  var WIDGET_SOURCE = "crm-deal-ticket-widget";
  var HOST_SOURCE = "crm-deal-ticket-host";
  var PROTOCOL_VERSION = 1;
  var readyTimer = null;

  // ------------------------------------------------------------------ helpers

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function roomId() { return document.body.dataset.room; }

  function viewQuery(extra) {
    var params = new URLSearchParams(document.body.dataset.viewQuery || "");
    Object.keys(extra || {}).forEach(function (key) { params.set(key, extra[key]); });
    var text = params.toString();
    return text ? "?" + text : "";
  }

  function clock() {
    var d = new Date();
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) {
      return String(n).padStart(2, "0");
    }).join(":");
  }

  function localTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  /* fetch JSON from this host; resolves {status, ok, body} and never throws for HTTP errors */
  function api(method, path, body) {
    var init = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { raw: text }; }
        return { status: response.status, ok: response.ok, body: data };
      });
    });
  }

  function errorText(result) {
    var body = result.body || {};
    if (body.message) return body.message;
    if (body.error && body.error.message) return body.error.message;
    return "HTTP " + result.status;
  }

  var toastTimer = null;
  function toast(message, isError) {
    var node = $("toast");
    if (!node) return;
    node.textContent = message;
    node.classList.toggle("is-error", !!isError);
    node.dataset.kind = isError ? "error" : "ok";
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { node.hidden = true; }, isError ? 8000 : 5000);
  }

  // ------------------------------------------------------------------ Deal & Ticket frame

  function frame() { return $("deal-ticket-frame"); }
  function mount() { return $("deal-ticket-mount"); }

  function widgetOrigin() {
    var m = mount();
    return m ? m.dataset.widgetOrigin : null;
  }

  function setWidgetState(state, version) {
    var node = document.querySelector("[data-testid='widget-state']");
    if (!node) return;
    node.dataset.state = state;
    node.dataset.version = version === undefined || version === null ? "" : String(version);
    node.textContent = version === undefined || version === null ? state : state + " · v" + version;
  }

  function showLoader() {
    var m = mount(), f = frame();
    if (!m || !f) return;
    m.dataset.ready = "";
    m.querySelector("[data-testid='tab-loader']").hidden = false;
    m.querySelector("[data-testid='tab-error']").hidden = true;
    f.classList.remove("is-hidden");
    f.classList.add("is-loading");
    setWidgetState("loading");
  }

  function markReady() {
    var m = mount(), f = frame();
    if (!m || !f) return;
    clearTimeout(readyTimer);
    m.dataset.ready = "1";
    m.querySelector("[data-testid='tab-loader']").hidden = true;
    m.querySelector("[data-testid='tab-error']").hidden = true;
    f.classList.remove("is-loading", "is-hidden");
  }

  function showFrameError(detail) {
    var m = mount(), f = frame();
    if (!m || !f) return;
    clearTimeout(readyTimer);
    m.querySelector("[data-testid='tab-loader']").hidden = true;
    var box = m.querySelector("[data-testid='tab-error']");
    box.querySelector("[data-testid='tab-error-detail']").textContent = detail || "";
    box.hidden = false;
    f.classList.add("is-hidden");
    setWidgetState("failed");
  }

  function startReadyTimer() {
    var m = mount();
    if (!m) return;
    clearTimeout(readyTimer);
    if (m.dataset.ready === "1") return;
    var ms = parseInt(m.dataset.readyTimeout, 10) || 8000;
    readyTimer = setTimeout(function () {
      var current = mount();
      if (current && current.dataset.ready !== "1") {
        showFrameError("The component did not report ready within " + Math.round(ms / 100) / 10 + " s.");
      }
    }, ms);
  }

  function fetchToken() {
    return api("GET", "/api/rooms/" + encodeURIComponent(roomId()) + "/embed-token" + viewQuery())
      .then(function (result) {
        if (!result.ok) throw new Error(errorText(result));
        return result.body;
      });
  }

  function postToFrame(message) {
    var f = frame(), origin = widgetOrigin();
    if (!f || !f.contentWindow || !origin) return false;
    message.source = HOST_SOURCE;
    message.version = PROTOCOL_VERSION;
    f.contentWindow.postMessage(message, origin);
    return true;
  }

  function retryFrame() {
    var f = frame();
    if (!f) return;
    showLoader();
    fetchToken().then(function (token) {
      var m = mount();
      if (m) m.dataset.widgetOrigin = new URL(token.embed_url).origin;
      f.src = token.embed_url;
      startReadyTimer();
    }).catch(function (err) {
      showFrameError(err.message);
    });
  }

  function handOverToken() {
    setWidgetState("expired");
    fetchToken().then(function (token) {
      postToFrame({ type: "token", token: token.token });
      logInfo("Token expired: handed a fresh token to the component", "expires " + token.expires_at);
    }).catch(function (err) {
      logInfo("Token expired: could not mint a new one", err.message, true);
    });
  }

  function onMessage(event) {
    var f = frame(), origin = widgetOrigin();
    if (!f || !origin || event.origin !== origin) return;
    if (event.source !== f.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== "object" || data.source !== WIDGET_SOURCE) return;
    switch (data.type) {
      case "ready":
        markReady();
        break;
      case "resize": {
        var height = Number(data.height);
        if (isFinite(height) && height >= 0) {
          f.style.height = Math.min(Math.max(Math.ceil(height), 40), 4000) + "px";
        }
        break;
      }
      case "state":
        if (typeof data.state === "string") setWidgetState(data.state.slice(0, 32), data.version);
        break;
      case "token-expired":
        handOverToken();
        break;
      case "open":
        console.info("[host] component opened", data.kind, data.id);
        logInfo("Agent opened " + String(data.kind) + " " + String(data.id), "from the Deal & Ticket tab");
        break;
      default:
        break;
    }
  }

  window.addEventListener("message", onMessage);

  function initFrame() {
    var m = mount();
    if (!m) return;
    if (m.dataset.mintError) {
      showFrameError(m.dataset.mintError);
      return;
    }
    if (m.dataset.ready !== "1") startReadyTimer();
  }

  // ------------------------------------------------------------------ tabs and info bar

  function selectTab(tab, focus) {
    var list = tab.closest("[role='tablist']");
    list.querySelectorAll("[role='tab']").forEach(function (other) {
      var selected = other === tab;
      other.setAttribute("aria-selected", selected ? "true" : "false");
      other.tabIndex = selected ? 0 : -1;
      var panel = $(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !selected;
    });
    if (focus) tab.focus();
  }

  function initTabs() {
    document.addEventListener("click", function (event) {
      var tab = event.target.closest("[role='tab']");
      if (tab) selectTab(tab, false);
    });
    document.addEventListener("keydown", function (event) {
      var tab = event.target.closest && event.target.closest("[role='tab']");
      if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
      var tabs = Array.prototype.slice.call(tab.closest("[role='tablist']").querySelectorAll("[role='tab']"));
      var index = tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : -1);
      selectTab(tabs[(index + tabs.length) % tabs.length], true);
      event.preventDefault();
    });
  }

  function reloadInfobar() {
    var extra = { room: roomId() };
    return fetch("/inbox/infobar" + viewQuery(extra), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        // The fragment is rendered (and escaped) by the server; parse it inertly and
        // swap the node, then re-arm the frame's loader.
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("infobar");
        var current = $("infobar");
        if (!fresh || !current) throw new Error("no info bar in the response");
        clearTimeout(readyTimer);
        current.replaceWith(document.adoptNode(fresh));
        initFrame();
      });
  }

  function initFlagToggle() {
    var toggle = $("flag-deal-ticket-tab");
    if (!toggle) return;
    toggle.addEventListener("change", function () {
      var enabled = toggle.checked;
      toggle.disabled = true;
      api("POST", "/api/flags/" + toggle.dataset.flag, { enabled: enabled })
        .then(function (result) {
          if (!result.ok) throw new Error(errorText(result));
          return reloadInfobar().then(function () {
            toast("deal_ticket_tab is " + (enabled ? "ON" : "OFF") + " for this account");
          });
        })
        .catch(function (err) {
          toggle.checked = !enabled;
          toast("Could not change the flag: " + err.message, true);
        })
        .then(function () { toggle.disabled = false; });
    });
  }

  function initFrameControls() {
    document.addEventListener("click", function (event) {
      if (event.target.closest("[data-testid='tab-retry']")) {
        retryFrame();
      } else if (event.target.closest("[data-testid='widget-refresh']")) {
        if (postToFrame({ type: "refresh" })) logInfo("Asked the component to refresh", null);
      }
    });
  }

  // ------------------------------------------------------------------ manual Create Deal (NEG-2)

  function initManualDeal() {
    var dialog = $("manual-deal-dialog"), form = $("manual-deal-form");
    if (!dialog || !form) return;
    var errorBox = form.querySelector("[data-testid='manual-deal-error']");
    document.addEventListener("click", function (event) {
      if (event.target.closest("[data-testid='create-deal-button']")) {
        errorBox.hidden = true;
        dialog.showModal();
        form.elements.name.focus();
        form.elements.name.select();
      } else if (event.target.closest("[data-close-dialog]")) {
        dialog.close();
      }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var submit = form.querySelector("[type='submit']");
      submit.setAttribute("aria-busy", "true");
      submit.disabled = true;
      var body = {
        name: form.elements.name.value,
        stage: form.elements.stage.value,
        pipeline: form.elements.pipeline.value
      };
      api("POST", "/api/rooms/" + encodeURIComponent(roomId()) + "/deals", body)
        .then(function (result) {
          if (result.ok) {
            dialog.close();
            var deal = result.body.deal;
            toast("Deal created: " + deal.name + " (" + deal.id + ")");
            logResult({ action: "manual-deal", label: "Create Deal (manual)", ok: true,
              calls: result.body.calls, records: [deal] }, result.status);
          } else {
            errorBox.textContent = errorText(result);
            errorBox.hidden = false;
            toast("Create Deal failed: " + errorText(result), true);
          }
        })
        .catch(function (err) {
          errorBox.textContent = err.message;
          errorBox.hidden = false;
        })
        .then(function () {
          submit.removeAttribute("aria-busy");
          submit.disabled = false;
        });
    });
  }

  // ------------------------------------------------------------------ simulator

  function logList() { return $("sim-log"); }

  function prependLog(item) {
    var list = logList();
    if (!list) return;
    var empty = list.querySelector(".log-empty");
    if (empty) empty.remove();
    list.insertBefore(item, list.firstChild);
    while (list.children.length > 100) list.removeChild(list.lastChild);
  }

  function logInfo(title, detail, isError, action) {
    var item = el("li", "log-entry " + (isError ? "is-error" : "is-info"));
    item.setAttribute("data-testid", "sim-log-entry");
    item.dataset.action = action || "widget";
    var head = el("div", "log-head");
    head.appendChild(el("span", "log-time", clock()));
    head.appendChild(el("span", "log-title", title));
    item.appendChild(head);
    if (detail) item.appendChild(el("div", isError ? "log-msg" : "log-detail", detail));
    prependLog(item);
    return item;
  }

  function describeRecord(summary) {
    if (!summary) return "";
    if (summary.kind === "room") {
      return "room v" + summary.version + " · deal " + (summary.deal || "—") + " · ticket " + (summary.ticket || "—");
    }
    if (summary.kind === "contact") return "contact " + summary.id + " “" + summary.name + "”";
    var parts = [summary.kind, summary.id];
    if (summary.unique_id) parts.push(summary.unique_id);
    if (summary.name) parts.push("“" + summary.name + "”");
    if (summary.deleted) return parts.join(" ") + " deleted";
    if (summary.stage) parts.push(summary.stage + " / " + summary.pipeline);
    if (summary.status) parts.push(summary.status);
    if (summary.creator) parts.push("creator " + summary.creator);
    return parts.join(" · ").replace(/^(deal|ticket) · /, "$1 ");
  }

  function logResult(result, httpStatus) {
    var calls = result.calls || [];
    var item = el("li", "log-entry " + (result.ok ? "is-ok" : "is-error"));
    item.setAttribute("data-testid", "sim-log-entry");
    item.dataset.action = result.action || "";
    item.dataset.ok = result.ok ? "true" : "false";
    item.dataset.httpStatus = String(httpStatus);
    item.dataset.status = calls.map(function (c) { return c.status === null ? "none" : String(c.status); }).join(",");
    item.dataset.recordIds = (result.records || []).map(function (r) { return r.id; }).join(",");
    var head = el("div", "log-head");
    head.appendChild(el("span", "log-time", clock()));
    head.appendChild(el("span", "log-title", result.label || result.action));
    var overall = el("span", "status" + (result.ok ? "" : " is-error"), result.ok ? "OK" : String(httpStatus));
    head.appendChild(overall);
    item.appendChild(head);
    var repeated = calls.some(function (c) { return c.error && c.error === result.message; });
    if (!result.ok && result.message && !repeated) item.appendChild(el("div", "log-msg", result.message));
    var list = el("ul", "log-calls");
    calls.forEach(function (call) {
      var line = el("li", "log-call");
      var status = call.status === null ? "—" : String(call.status);
      var cls = call.status === null ? " is-none" : (call.status >= 400 ? " is-error" : "");
      line.appendChild(el("span", "status" + cls, status));
      line.appendChild(document.createTextNode(" " + call.method + " " + call.path + " "));
      if (call.error) line.appendChild(el("span", "log-error", call.error));
      else if (call.summary) line.appendChild(el("span", "log-detail", describeRecord(call.summary)));
      list.appendChild(line);
    });
    item.appendChild(list);
    prependLog(item);
  }

  function simOptions() {
    var form = $("sim-options");
    var backdate = parseInt(form.elements.backdate_seconds.value, 10);
    return {
      room_id: roomId(),
      use_room: form.elements.use_room.checked,
      with_contact: form.elements.with_contact.checked,
      source: form.elements.source.value,
      deal_name: form.elements.deal_name.value,
      deal_stage: form.elements.deal_stage.value,
      deal_pipeline: form.elements.deal_pipeline.value,
      ticket_name: form.elements.ticket_name.value,
      ticket_status: form.elements.ticket_status.value,
      backdate_seconds: isNaN(backdate) || backdate < 0 ? 0 : backdate
    };
  }

  function runSim(button) {
    var action = button.dataset.simAction;
    button.setAttribute("aria-busy", "true");
    api("POST", "/api/sim/" + action, simOptions())
      .then(function (result) {
        var body = result.body || {};
        if (!body.calls) {
          body = { action: action, label: button.textContent.trim(), ok: false, calls: [], message: errorText(result) };
        }
        logResult(body, result.status);
        showContact(body.calls);
      })
      .catch(function (err) {
        logResult({ action: action, label: button.textContent.trim(), ok: false, calls: [],
          message: "The host did not answer: " + err.message }, "—");
      })
      .then(function () { button.removeAttribute("aria-busy"); });
  }

  function showContact(calls) {
    var node = document.querySelector("[data-testid='crm-contact-id']");
    (calls || []).forEach(function (call) {
      if (node && call.summary && call.summary.kind === "contact") node.textContent = call.summary.id;
    });
  }

  function initSimulator() {
    var sim = $("simulator");
    if (!sim) return;
    var toggle = $("sim-toggle");
    var stored = null;
    try { stored = window.localStorage.getItem("host.simulator.open"); } catch (e) { stored = null; }
    function setOpen(open) {
      sim.dataset.open = open ? "true" : "false";
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      try { window.localStorage.setItem("host.simulator.open", open ? "1" : "0"); } catch (e) { /* private mode */ }
    }
    if (stored === "0") setOpen(false);
    toggle.addEventListener("click", function () {
      setOpen(sim.dataset.open !== "true");
      pollEvents();
    });
    sim.addEventListener("click", function (event) {
      var button = event.target.closest("[data-sim-action]");
      if (button) runSim(button);
    });
    $("sim-options").addEventListener("submit", function (event) { event.preventDefault(); });
    $("sim-log-clear").addEventListener("click", function () {
      var list = logList();
      list.textContent = "";
      list.appendChild(el("li", "log-empty", "Actions and their API responses appear here."));
    });
  }

  // ------------------------------------------------------------------ Chat Panel mode (fake Chat Panel API)

  /* The server renders every room's badge; the current room's follows the control. */
  function showRoomModeBadge(mode, label) {
    var main = document.querySelector("[data-testid='room-item'][aria-current='page'] .room-main");
    if (!main) return;
    var badge = main.querySelector("[data-testid='room-chat-panel-mode']");
    if (mode === "normal") {
      if (!badge) return;
      var flags = badge.parentNode;
      badge.remove();
      if (!flags.children.length) flags.remove();
      return;
    }
    if (!badge) {
      var box = main.querySelector(".room-flags") || main.appendChild(el("span", "room-flags"));
      badge = box.insertBefore(el("span", "mini-badge mini-badge-warn"), box.firstChild);
      badge.setAttribute("data-testid", "room-chat-panel-mode");
      badge.title = "The fake Chat Panel API's mode for this room";
    }
    badge.textContent = "Chat Panel: " + label;
  }

  function initChatPanelMode() {
    var select = $("chat-panel-mode");
    if (!select) return;
    select.addEventListener("change", function () {
      var mode = select.value, option = select.options[select.selectedIndex];
      api("PUT", "/chat-panel/rooms/" + encodeURIComponent(roomId()) + "/mode", { mode: mode })
        .then(function (result) {
          if (!result.ok) throw new Error(errorText(result));
          select.dataset.mode = mode;
          showRoomModeBadge(mode, option.textContent);
          logInfo("Chat Panel for this room: " + option.textContent, option.title, false, "chat-panel-mode");
        })
        .catch(function (err) {
          select.value = select.dataset.mode;
          toast("Could not change the Chat Panel mode: " + err.message, true);
        });
    });
  }

  // ------------------------------------------------------------------ Omnichannel events panel
  //
  // Every call the CRM made to /omnichannel/… (GET /omnichannel/received), newest
  // first, polled while the drawer is open: method, path, the JSON body and whether its
  // X-Widget-Signature was verified. Built with textContent / createElementNS only.

  var SVG_NS = "http://www.w3.org/2000/svg";
  var SHIELD = "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z";
  var ICON_SHAPES = {
    "shield-check": [["path", { d: SHIELD }], ["polyline", { points: "9 12 11 14 15 10" }]],
    "shield-x": [["path", { d: SHIELD }], ["line", { x1: "10", y1: "9.5", x2: "14", y2: "13.5" }],
      ["line", { x1: "14", y1: "9.5", x2: "10", y2: "13.5" }]],
    "alert": [["circle", { cx: "12", cy: "12", r: "10" }], ["line", { x1: "12", y1: "8", x2: "12", y2: "12" }],
      ["line", { x1: "12", y1: "16", x2: "12.01", y2: "16" }]]
  };

  function svgIcon(name, size) {
    var svg = document.createElementNS(SVG_NS, "svg");
    var attrs = { "class": "icon icon-" + name, width: size, height: size, viewBox: "0 0 24 24", fill: "none",
      stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round",
      "aria-hidden": "true", focusable: "false" };
    Object.keys(attrs).forEach(function (key) { svg.setAttribute(key, String(attrs[key])); });
    ICON_SHAPES[name].forEach(function (shape) {
      var node = document.createElementNS(SVG_NS, shape[0]);
      Object.keys(shape[1]).forEach(function (key) { node.setAttribute(key, shape[1][key]); });
      svg.appendChild(node);
    });
    return svg;
  }

  /* Pretty JSON as text nodes and coloured spans (keys, strings, numbers, literals). */
  var JSON_TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(?:true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

  function prettyJson(value) {
    var pre = el("pre", "omni-json");
    pre.setAttribute("data-testid", "omnichannel-body");
    if (typeof value === "string") {  // a body that was not JSON, shown as sent
      pre.classList.add("is-raw");
      pre.textContent = value || "(empty body)";
      return pre;
    }
    var text = JSON.stringify(value, null, 2), last = 0, match;
    JSON_TOKEN.lastIndex = 0;
    while ((match = JSON_TOKEN.exec(text)) !== null) {
      if (match.index > last) pre.appendChild(document.createTextNode(text.slice(last, match.index)));
      var cls = match[2] ? "j-key" : match[1] ? "j-str" : /^[tfn]/.test(match[0]) ? "j-lit" : "j-num";
      pre.appendChild(el("span", cls, match[1] || match[0]));
      if (match[2]) pre.appendChild(document.createTextNode(match[2]));
      last = JSON_TOKEN.lastIndex;
    }
    if (last < text.length) pre.appendChild(document.createTextNode(text.slice(last)));
    return pre;
  }

  /* The body behind a one-line preview; which entries are open survives re-renders. */
  var openBodies = {};

  function bodyDetails(e) {
    var body = e.body === null || e.body === undefined ? "" : e.body;
    var details = el("details", "omni-body");
    details.open = !!openBodies[e.seq];
    details.addEventListener("toggle", function () { openBodies[e.seq] = details.open; });
    var summary = el("summary", "omni-body-summary");
    summary.setAttribute("data-testid", "omnichannel-body-toggle");
    summary.appendChild(el("span", "omni-body-label", typeof body === "string" ? "Body (not JSON)" : "JSON body"));
    var preview = typeof body === "string" ? body : JSON.stringify(body);
    summary.appendChild(el("span", "omni-body-preview", preview.length > 160 ? preview.slice(0, 160) + "…" : preview));
    details.appendChild(summary);
    details.appendChild(prettyJson(body));
    return details;
  }

  function verifiedBadge(e) {
    var badge = el("span", "verify-badge");
    badge.setAttribute("data-testid", "omnichannel-verified");
    badge.dataset.verified = e.verified ? "true" : "false";
    badge.appendChild(svgIcon(e.verified ? "shield-check" : "shield-x", 12));
    badge.appendChild(document.createTextNode(e.verified ? "Verified" : "Not verified"));
    badge.title = e.verified
      ? "X-Widget-Signature checked: HMAC-SHA256 with this host's secret, timestamp within the tolerance"
      : "X-Widget-Signature refused (" + e.reason + "): answered 401, not counted as a notification";
    return badge;
  }

  function eventItem(e) {
    var accepted = e.verified && e.status < 300;
    var item = el("li", "log-entry omni-entry " + (accepted ? "is-ok" : e.verified ? "is-warn" : "is-error"));
    item.setAttribute("data-testid", "omnichannel-event");
    item.dataset.seq = String(e.seq);
    item.dataset.eventId = e.event_id || "";
    item.dataset.kind = e.kind;
    item.dataset.action = e.action;
    item.dataset.roomId = e.room_id || "";
    item.dataset.recordId = e.record_id || "";
    item.dataset.verified = e.verified ? "true" : "false";
    item.dataset.status = String(e.status);

    var head = el("div", "log-head");
    head.appendChild(el("span", "log-time", localTime(e.received_at)));
    head.appendChild(el("span", "pill pill-" + e.action, e.kind + " " + e.action));
    var title = el("span", "log-title", e.record_id || "—");
    title.title = e.record_id || "";
    head.appendChild(title);
    if (e.deliveries > 1) {
      var dup = head.appendChild(el("span", "pill pill-dup", "×" + e.deliveries));
      dup.title = "Delivered " + e.deliveries + " times with the same X-Widget-Event-Id (deduplicated)";
      dup.setAttribute("data-testid", "omnichannel-deliveries");
    }
    head.appendChild(verifiedBadge(e));
    item.appendChild(head);

    var call = el("div", "omni-call");
    call.setAttribute("data-testid", "omnichannel-call");
    call.appendChild(el("span", "status" + (e.status >= 400 ? " is-error" : ""), String(e.status)));
    call.appendChild(el("span", "omni-method", e.method));
    var path = call.appendChild(el("span", "omni-path", e.path));
    path.title = e.path;
    item.appendChild(call);
    var meta = [];
    if (e.room_id) meta.push("room " + e.room_id);
    meta.push(e.event_id || "no X-Widget-Event-Id");
    var metaLine = item.appendChild(el("div", "omni-meta", meta.join("  ·  ")));
    metaLine.title = meta.join("\n");

    if (e.reason) {
      var reason = el("div", "omni-reason");
      reason.setAttribute("data-testid", "omnichannel-reason");
      reason.appendChild(svgIcon("alert", 12));
      reason.appendChild(el("span", null, (e.verified ? "Rejected: " : "Not verified: ") + e.reason));
      item.appendChild(reason);
    }
    item.appendChild(bodyDetails(e));
    return item;
  }

  var lastEventsKey = "";

  function renderEvents(events) {
    var list = $("omni-events"), count = $("omni-count"), rejected = $("omni-rejected");
    if (!list) return;
    var key = events.map(function (e) { return e.seq + ":" + e.deliveries; }).join("|");
    if (key === lastEventsKey) return;
    lastEventsKey = key;
    count.textContent = String(events.length);
    var refused = events.filter(function (e) { return !e.verified; }).length;
    if (rejected) {
      rejected.hidden = refused === 0;
      rejected.textContent = refused + " not verified";
    }
    list.textContent = "";
    if (!events.length) {
      var empty = el("li", "log-empty", "Signed notifications the CRM sends to ");
      empty.appendChild(el("span", "mono", "/omnichannel/…"));
      empty.appendChild(document.createTextNode(" appear here."));
      list.appendChild(empty);
      return;
    }
    events.slice().reverse().slice(0, 100).forEach(function (e) { list.appendChild(eventItem(e)); });
  }

  function simulatorOpen() {
    var sim = $("simulator");
    return !!sim && sim.dataset.open === "true";
  }

  function pollEvents() {
    if (document.hidden || !simulatorOpen()) return Promise.resolve();
    return api("GET", "/omnichannel/received").then(function (result) {
      if (result.ok && result.body) renderEvents(result.body.events || []);
    }).catch(function () { /* the host is going away; try again later */ });
  }

  function initEvents() {
    var clear = $("omni-clear");
    if (!clear) return;
    clear.addEventListener("click", function () {
      api("DELETE", "/omnichannel/received").then(function () { lastEventsKey = "x"; return pollEvents(); });
    });
    pollEvents();
    setInterval(pollEvents, 2000);
  }

  // ------------------------------------------------------------------ Omnichannel → refresh the component
  //
  // A verified notification for the room on screen asks its component to refresh (RFC
  // section 7's "refresh"), drawer open or not. The page polls the host's own record of
  // them, only this room's and only after a cursor: the server renders the cursor into
  // the page (data-omni-cursor), so whatever arrived before the page loaded is backlog;
  // a duplicate delivery adds no entry, so it never refreshes twice. Polling stops while
  // the document is hidden and resumes (at once) when it is visible again.

  var WATCH_MS = 1500;
  var omniCursor = 0, watchTimer = null, watching = false;

  function describeNotifications(events) {
    var seen = [];
    events.forEach(function (e) {
      var what = e.kind + " " + e.action;
      if (seen.indexOf(what) === -1) seen.push(what);
    });
    return seen.join(", ");
  }

  function onNotifications(events) {
    var m = mount();
    var ready = !!m && m.dataset.ready === "1";
    var refreshed = ready && postToFrame({ type: "refresh" });
    var title = "Omnichannel: " + describeNotifications(events) + (refreshed ? " → refreshed the component" : "");
    var detail = events.map(function (e) {
      return e.method + " " + e.path + (e.record_id && e.path.indexOf(e.record_id) === -1 ? " · " + e.record_id : "");
    }).join("  ·  ");
    if (!refreshed) detail += m ? "  (the component is still loading: it reads the current state anyway)"
      : "  (no Deal & Ticket component on this page)";
    var item = logInfo(title, detail, false, "omnichannel");
    item.classList.add("is-wrapping");
    item.dataset.refreshed = refreshed ? "true" : "false";
    item.dataset.recordIds = events.map(function (e) { return e.record_id || ""; }).join(",");
    item.dataset.eventIds = events.map(function (e) { return e.event_id || ""; }).join(",");
    console.info("[host] Omnichannel notification(s)", events.map(function (e) { return e.event_id; }),
      refreshed ? "refreshed the component" : "nothing to refresh");
    pollEvents();
  }

  function watchNotifications() {
    clearTimeout(watchTimer);
    if (watching || document.hidden) return;
    watching = true;
    var path = "/omnichannel/received?room=" + encodeURIComponent(roomId()) + "&since=" + omniCursor;
    api("GET", path).then(function (result) {
      var body = result.body;
      if (!result.ok || !body || typeof body.cursor !== "number") return;
      omniCursor = body.cursor;  // the host's cursor: its calls up to here are seen
      var fresh = (body.events || []).filter(function (e) { return e.verified && e.status < 300; });
      if (fresh.length) onNotifications(fresh);
    }).catch(function () { /* the host is going away; try again later */ }).then(function () {
      watching = false;
      if (!document.hidden) watchTimer = setTimeout(watchNotifications, WATCH_MS);
    });
  }

  function initNotificationWatch() {
    omniCursor = parseInt(document.body.dataset.omniCursor, 10) || 0;
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) watchNotifications();
    });
    watchNotifications();
  }

  // ------------------------------------------------------------------ conversation

  function appendMessage(message) {
    var box = $("messages");
    var empty = box.querySelector("[data-testid='chat-empty']");
    if (empty) empty.remove();
    var wrap = el("div", "msg msg-out msg-agent is-new");
    wrap.setAttribute("data-testid", "message");
    wrap.dataset.senderType = "agent";
    var meta = el("div", "msg-meta");
    meta.appendChild(el("span", "msg-sender", message.sender_name));
    wrap.appendChild(meta);
    wrap.appendChild(el("div", "bubble", message.text));
    var time = el("time", "msg-time", localTime(message.sent_at));
    time.setAttribute("datetime", message.sent_at);
    wrap.appendChild(time);
    box.appendChild(wrap);
    box.scrollTop = box.scrollHeight;
  }

  function initComposer() {
    var form = $("composer"), input = $("composer-input");
    if (!form) return;
    function grow() {
      input.style.height = "auto";
      input.style.height = Math.min(input.scrollHeight, 140) + "px";
    }
    input.addEventListener("input", grow);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      api("POST", "/api/rooms/" + encodeURIComponent(roomId()) + "/messages", { text: text })
        .then(function (result) {
          if (!result.ok) throw new Error(errorText(result));
          appendMessage(result.body);
          input.value = "";
          grow();
        })
        .catch(function (err) { toast("Message not sent: " + err.message, true); });
    });
    var box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  // ------------------------------------------------------------------ room list

  function initRoomFilters() {
    var search = $("room-search");
    if (!search) return;
    var channel = "all";
    function apply() {
      var q = search.value.trim().toLowerCase();
      document.querySelectorAll("[data-testid='room-list'] > li").forEach(function (li) {
        var text = li.textContent.toLowerCase();
        var show = (channel === "all" || li.dataset.channel === channel) && (!q || text.indexOf(q) !== -1);
        li.hidden = !show;
      });
    }
    search.addEventListener("input", apply);
    document.querySelectorAll("[data-channel-filter]").forEach(function (chip) {
      chip.addEventListener("click", function () {
        channel = chip.dataset.channelFilter;
        document.querySelectorAll("[data-channel-filter]").forEach(function (other) {
          var on = other === chip;
          other.classList.toggle("is-active", on);
          other.setAttribute("aria-pressed", on ? "true" : "false");
        });
        apply();
      });
    });
  }

  function localiseTimes() {
    document.querySelectorAll("time[data-local-time]").forEach(function (node) {
      var text = localTime(node.getAttribute("datetime"));
      if (text) node.textContent = text;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localiseTimes();
    initTabs();
    initFlagToggle();
    initFrameControls();
    initFrame();
    initManualDeal();
    initSimulator();
    initChatPanelMode();
    initEvents();
    initNotificationWatch();
    initComposer();
    initRoomFilters();
  });
})();
