/* The Deal & Ticket tab around embed.js: the widget's loader mounts the component in the
 * [data-crm-deal-ticket] element by itself; the host only refreshes it (its Refresh
 * button, Omnichannel notifications) and logs what the component tells it. */

import { logInfo } from "./activity-log.js";

const element = () => document.querySelector("[data-crm-deal-ticket]");

/* Asks the component to reload its data; false while it has not reported ready (or
 * embed.js, loaded async from the widget, is not there yet). */
export function refreshComponent() {
  const mount = element();
  return !!mount && !!window.CrmDealTicket && window.CrmDealTicket.refresh(mount);
}

export function hasComponent() {
  return !!element();
}

const CAUSES = {
  token: "this host's token endpoint failed",
  denied: "this host's token endpoint refused",
  timeout: "the frame did not report ready in time",
};

export function initDealTicket() {
  document.addEventListener("click", (event) => {
    if (!event.target.closest("[data-testid='widget-refresh']")) return;
    if (refreshComponent()) logInfo("Asked the component to refresh", null);
  });
  // embed.js' events bubble from the element, which the flag toggle may replace.
  document.addEventListener("crm:open", (event) => {
    logInfo("Agent opened " + event.detail.kind + " " + event.detail.id, "from the Deal & Ticket tab");
  });
  document.addEventListener("crm:error", (event) => {
    logInfo("Deal & Ticket couldn't load", CAUSES[event.detail.cause] || event.detail.cause, true);
  });
}
