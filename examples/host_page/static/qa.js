/* QA details (the switch in the simulator's header, kept in localStorage): shows the
 * component's state and version beside the Deal & Ticket tab. Agents never see them. */

import { $ } from "./common.js";

const KEY = "host.qa";

/* `note`: the version ("v5") or why the loader gave up. */
function showState(state, note) {
  const chip = document.querySelector("[data-testid='widget-state']");
  if (!chip) return;
  chip.dataset.state = state;
  chip.textContent = note ? state + " · " + note : state;
}

export function initQa() {
  const toggle = $("qa-details");
  if (!toggle) return;
  let stored = null;
  try { stored = window.localStorage.getItem(KEY); } catch { /* storage blocked */ }
  toggle.checked = stored === "1";
  document.body.classList.toggle("qa", toggle.checked);
  toggle.addEventListener("change", () => {
    document.body.classList.toggle("qa", toggle.checked);
    try { window.localStorage.setItem(KEY, toggle.checked ? "1" : "0"); } catch { /* storage blocked */ }
  });
  document.addEventListener("crm:state", (event) => showState(event.detail.state, "v" + event.detail.version));
  document.addEventListener("crm:error", (event) => showState("failed", event.detail.cause));
}
