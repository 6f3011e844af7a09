/* Helpers the example host's modules share: DOM, the host's own JSON API, toasts and
 * times. Data is only ever written with textContent (never innerHTML). */

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export const roomId = () => document.body.dataset.room;

/* The page's QA options (agent, perms, ttl, …) as a query string, plus `extra`. */
export function viewQuery(extra = {}) {
  const params = new URLSearchParams(document.body.dataset.viewQuery || "");
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  const text = params.toString();
  return text ? "?" + text : "";
}

const pad = (n) => String(n).padStart(2, "0");

export function clock() {
  const d = new Date();
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map(pad).join(":");
}

export function localTime(iso) {
  const d = new Date(iso);
  return isNaN(d.getTime()) ? "" : pad(d.getHours()) + ":" + pad(d.getMinutes());
}

/* JSON from this host: resolves {status, ok, body} and never throws for HTTP errors. */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { raw: text }; }
  return { status: response.status, ok: response.ok, body: data };
}

export function errorText(result) {
  const body = result.body || {};
  return body.message || (body.error && body.error.message) || "HTTP " + result.status;
}

let toastTimer = null;

export function toast(message, isError) {
  const node = $("toast");
  if (!node) return;
  node.textContent = message;
  node.classList.toggle("is-error", !!isError);
  node.dataset.kind = isError ? "error" : "ok";
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, isError ? 8000 : 5000);
}
