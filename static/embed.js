// Host-side loader of the Deal & Ticket component (RFC 7, docs/embedding.md): mounts its
// frame in each [data-crm-deal-ticket] element, keeps the token fresh, says why it can't load.
(() => {
  "use strict";
  if (window.CrmDealTicket) return; // on the page twice

  const SOURCE = "crm-deal-ticket-widget";
  const VARS = ["accent", "accent-text", "surface", "text", "border", "font", "radius"];
  const CAUSES = ["token", "denied", "timeout"]; // crm:error's detail.cause, in TEXTS' order
  const TEXTS = {
    en: ["Deal & Ticket couldn't load", "Try again",
      "This page couldn't get access to the CRM: its server or the CRM is unreachable. Try again in a moment.",
      "This page isn't allowed to open the CRM. Reload the page or sign in again.",
      "The CRM didn't answer in time. Check your connection and try again."],
    id: ["Deal & Ticket tidak dapat dimuat", "Coba lagi",
      "Halaman ini tidak mendapat akses ke CRM: servernya atau CRM tidak dapat dijangkau. Coba lagi sebentar lagi.",
      "Halaman ini tidak diizinkan membuka CRM. Muat ulang halaman atau masuk kembali.",
      "CRM tidak menjawab tepat waktu. Periksa koneksi Anda, lalu coba lagi."],
  };
  const mounts = new Map(); // element → its mount
  const destroyed = new WeakSet(); // not mounted again by themselves

  const node = (tag, css, text) => {
    const el = document.createElement(tag);
    el.style.cssText = css; // CSSOM: allowed by a host's style-src 'self'
    el.textContent = text || "";
    return el;
  };
  const emit = (m, type, detail) => m.el.dispatchEvent(new CustomEvent("crm:" + type, { bubbles: true, detail }));
  const post = (m, type, extra) =>
    m.frame.contentWindow.postMessage({ source: SOURCE, version: 1, type, ...extra }, m.origin);

  function status(m, name) {
    m.status = m.el.dataset.crmStatus = name;
    // The host's own children are the placeholder while loading.
    for (const child of m.el.children) {
      if (child !== m.frame && child !== m.box) child.style.display = name === "loading" ? "" : "none";
    }
  }

  function mount(el) {
    if (mounts.has(el)) return;
    const m = { el, gen: 0 };
    mounts.set(el, m);
    status(m, "loading");
    // The host switches its look (data-theme, --crm-* on the element): handed over again.
    m.look = new MutationObserver(() => m.status === "ready" && ready(m));
    m.look.observe(el, { attributeFilter: ["data-theme", "style", "class"] });
    // Loads once shown (a hidden tab when opened): the ready timer counts from then.
    m.seen = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) m.seen.disconnect(), load(m);
    }, { rootMargin: "200px" });
    m.seen.observe(el);
  }

  function clear(m) {
    m.gen++; // answers on their way are for a frame that is gone
    clearTimeout(m.readyTimer);
    clearTimeout(m.renewTimer);
    m.frame?.remove();
    m.box?.remove();
    m.frame = m.box = null;
  }

  function load(m) {
    clear(m);
    m.tries = 0;
    status(m, "loading");
    m.readyTimer = setTimeout(() => fail(m, m.frame ? 2 : 0), +m.el.dataset.readyTimeout || 10000);
    renew(m);
  }

  // The first token mounts the frame, later ones are handed to it; each is renewed at
  // 75% of its life by the server's clock, at least 1 s early.
  async function renew(m) {
    clearTimeout(m.renewTimer);
    const gen = m.gen;
    let answer;
    try {
      answer = await fetch(m.el.dataset.tokenUrl, { credentials: "include", headers: { Accept: "application/json" } });
      if (!answer.ok) throw answer.status;
      const { token, embed_url: url, expires_at: expires } = await answer.json();
      const src = new URL(url);
      if (!/^https?:$/.test(src.protocol) || typeof token !== "string") throw 0;
      if (gen !== m.gen) return;
      const left = Date.parse(expires) - (Date.parse(answer.headers.get("date")) || Date.now()) - 1000;
      m.tries = 0;
      m.renewTimer = setTimeout(renew, Math.max(1000, Math.min(left * 0.75, left - 1000)), m);
      if (m.frame) post(m, "token", { token });
      else frame(m, src);
    } catch (error) {
      if (gen !== m.gen) return;
      if (!m.frame && error >= 400 && error < 500) return fail(m, 1); // retrying can't help
      m.renewTimer = setTimeout(renew, Math.min(30000, 1000 * 2 ** m.tries++), m);
    }
  }

  function frame(m, src) {
    for (const key of ["lang", "theme"]) if (m.el.dataset[key]) src.searchParams.set(key, m.el.dataset[key]);
    const f = (m.frame = node("iframe", "display:block;width:100%;height:0;border:0"));
    f.title = "Deal & Ticket";
    f.loading = "lazy";
    f.setAttribute("sandbox", "allow-scripts allow-same-origin allow-popups allow-popups-to-escape-sandbox");
    f.dataset.testid = "deal-ticket-frame";
    f.src = src;
    m.origin = src.origin;
    m.el.append(f);
  }

  function ready(m) {
    clearTimeout(m.readyTimer);
    // The host's look: data-theme and the --crm-* properties set on the element.
    const css = getComputedStyle(m.el), vars = {}, theme = m.el.dataset.theme;
    for (const name of VARS) {
      const value = css.getPropertyValue("--crm-" + name).trim();
      if (value) vars["--crm-" + name] = value;
    }
    post(m, "style", { vars, ...(theme && { theme }) });
    if (m.status !== "ready") status(m, "ready"), emit(m, "ready");
  }

  function fail(m, cause) {
    clear(m);
    const lang = m.el.dataset.lang || document.documentElement.lang || navigator.language || "";
    const [title, again, ...why] = TEXTS[lang.slice(0, 2) === "id" ? "id" : "en"];
    // In the host's font and colours, with its --crm-* touches.
    const box = (m.box = node("div", "padding:16px;text-align:center;border:1px solid var(--crm-border,#d0d5dd);" +
      "border-radius:var(--crm-radius,10px)"));
    const detail = node("p", "margin:4px 0 12px", why[cause]);
    const retry = node("button", "font:inherit;font-weight:600;padding:6px 16px;border:0;cursor:pointer;" +
      "border-radius:var(--crm-radius,10px);background:var(--crm-accent,#2563eb);color:var(--crm-accent-text,#fff)", again);
    box.setAttribute("role", "alert");
    box.dataset.testid = "deal-ticket-error";
    detail.dataset.testid = "deal-ticket-error-detail";
    retry.dataset.testid = "deal-ticket-retry";
    retry.type = "button";
    retry.onclick = () => load(m);
    box.append(node("strong", "display:block", title), detail, retry);
    m.el.append(box);
    status(m, "error");
    emit(m, "error", { cause: CAUSES[cause] });
  }

  addEventListener("message", (event) => {
    const data = event.data;
    for (const m of mounts.values()) {
      if (!m.frame || event.source !== m.frame.contentWindow || event.origin !== m.origin) continue;
      // No check of the envelope's version: a `state` message's version is the room's (RFC 7).
      if (!data || data.source !== SOURCE) return;
      const height = Math.ceil(data.height);
      if (data.type === "ready") ready(m);
      if (data.type === "resize" && height >= 0) m.frame.style.height = Math.min(height, 5000) + "px";
      if (data.type === "state") emit(m, "state", { state: String(data.state), version: data.version });
      if (data.type === "token-expired") renew(m);
      if (data.type === "open") emit(m, "open", { kind: String(data.kind), id: String(data.id) });
    }
  });

  function stop(el) {
    const m = mounts.get(el);
    if (!m) return;
    mounts.delete(el);
    m.seen.disconnect();
    m.look.disconnect();
    clear(m);
    status(m, "loading"); // shows the host's children again
    delete el.dataset.crmStatus;
  }

  function refresh(el) {
    const m = mounts.get(el);
    if (m?.status !== "ready") return false;
    post(m, "refresh");
    return true;
  }

  // Elements come and go with the page.
  const scan = () => {
    for (const el of document.querySelectorAll("[data-crm-deal-ticket]")) if (!destroyed.has(el)) mount(el);
    for (const el of mounts.keys()) if (!el.isConnected) stop(el);
  };
  new MutationObserver(scan).observe(document.documentElement, { childList: true, subtree: true });
  scan();
  window.CrmDealTicket = {
    mount(el) { destroyed.delete(el); mount(el); },
    refresh,
    destroy(el) { destroyed.add(el); stop(el); },
  };
})();
