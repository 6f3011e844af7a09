/* The simulator drawer: plays Chatbot / Agentic AI against the record API through this
 * host's backend (the API key stays there), and sets how the fake Chat Panel API answers
 * for the room. */

import { $, api, el, errorText, roomId, toast } from "./common.js";
import { logInfo, logResult } from "./activity-log.js";
import { pollEvents } from "./omnichannel-events.js";

const OPEN_KEY = "host.simulator.open";

function options() {
  const form = $("sim-options").elements;
  const backdate = parseInt(form.backdate_seconds.value, 10);
  return {
    room_id: roomId(),
    use_room: form.use_room.checked,
    with_contact: form.with_contact.checked,
    source: form.source.value,
    deal_name: form.deal_name.value,
    deal_stage: form.deal_stage.value,
    deal_pipeline: form.deal_pipeline.value,
    ticket_name: form.ticket_name.value,
    ticket_status: form.ticket_status.value,
    backdate_seconds: isNaN(backdate) || backdate < 0 ? 0 : backdate,
  };
}

/* The room's demo contact, once the simulator created it, in the Customer info tab. */
function showContact(calls) {
  const node = document.querySelector("[data-testid='crm-contact-id']");
  for (const call of calls || []) {
    if (node && call.summary && call.summary.kind === "contact") node.textContent = call.summary.id;
  }
}

async function run(button) {
  const action = button.dataset.simAction, label = button.textContent.trim();
  button.setAttribute("aria-busy", "true");
  try {
    const result = await api("POST", "/api/sim/" + action, options());
    const body = result.body && result.body.calls
      ? result.body : { action, label, ok: false, calls: [], message: errorText(result) };
    logResult(body, result.status);
    showContact(body.calls);
  } catch (err) {
    logResult({ action, label, ok: false, calls: [], message: "The host did not answer: " + err.message }, "—");
  }
  button.removeAttribute("aria-busy");
}

function initDrawer() {
  const sim = $("simulator"), toggle = $("sim-toggle");
  const setOpen = (open) => {
    sim.dataset.open = open ? "true" : "false";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    try { window.localStorage.setItem(OPEN_KEY, open ? "1" : "0"); } catch { /* storage blocked */ }
  };
  let stored = null;
  try { stored = window.localStorage.getItem(OPEN_KEY); } catch { /* storage blocked */ }
  if (stored === "0") setOpen(false);
  toggle.addEventListener("click", () => {
    setOpen(sim.dataset.open !== "true");
    pollEvents();
  });
  sim.addEventListener("click", (event) => {
    const button = event.target.closest("[data-sim-action]");
    if (button) run(button);
  });
  $("sim-options").addEventListener("submit", (event) => event.preventDefault());
}

/* The server renders every room's badge; the current room's follows the control. */
function showRoomModeBadge(mode, label) {
  const main = document.querySelector("[data-testid='room-item'][aria-current='page'] .room-main");
  if (!main) return;
  let badge = main.querySelector("[data-testid='room-chat-panel-mode']");
  if (mode === "normal") {
    if (!badge) return;
    const flags = badge.parentNode;
    badge.remove();
    if (!flags.children.length) flags.remove();
    return;
  }
  if (!badge) {
    const box = main.querySelector(".room-flags") || main.appendChild(el("span", "room-flags"));
    badge = box.insertBefore(el("span", "mini-badge mini-badge-warn"), box.firstChild);
    badge.setAttribute("data-testid", "room-chat-panel-mode");
    badge.title = "The fake Chat Panel API's mode for this room";
  }
  badge.textContent = "Chat Panel: " + label;
}

function initChatPanelMode() {
  const select = $("chat-panel-mode");
  select.addEventListener("change", async () => {
    const mode = select.value, option = select.options[select.selectedIndex];
    try {
      const result = await api("PUT", "/chat-panel/rooms/" + encodeURIComponent(roomId()) + "/mode", { mode });
      if (!result.ok) throw new Error(errorText(result));
      select.dataset.mode = mode;
      showRoomModeBadge(mode, option.textContent);
      logInfo("Chat Panel for this room: " + option.textContent, option.title, false, "chat-panel-mode");
    } catch (err) {
      select.value = select.dataset.mode;
      toast("Could not change the Chat Panel mode: " + err.message, true);
    }
  });
}

export function initSimulator() {
  if (!$("simulator")) return;
  initDrawer();
  initChatPanelMode();
}
