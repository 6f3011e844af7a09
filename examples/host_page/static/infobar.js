/* The info bar: its tabs, the per-account flag that adds the Deal & Ticket tab (the
 * info bar is swapped in from the server, so embed.js mounts the new element), and the
 * existing manual "Create Deal" (NEG-2). */

import { $, api, errorText, roomId, toast, viewQuery } from "./common.js";
import { logResult } from "./activity-log.js";

function selectTab(tab, focus) {
  for (const other of tab.closest("[role='tablist']").querySelectorAll("[role='tab']")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", selected ? "true" : "false");
    other.tabIndex = selected ? 0 : -1;
    const panel = $(other.getAttribute("aria-controls"));
    if (panel) panel.hidden = !selected;
  }
  if (focus) tab.focus();
}

function initTabs() {
  document.addEventListener("click", (event) => {
    const tab = event.target.closest("[role='tab']");
    if (tab) selectTab(tab, false);
  });
  document.addEventListener("keydown", (event) => {
    const tab = event.target.closest?.("[role='tab']");
    if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
    const tabs = [...tab.closest("[role='tablist']").querySelectorAll("[role='tab']")];
    const index = tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : -1);
    selectTab(tabs[(index + tabs.length) % tabs.length], true);
    event.preventDefault();
  });
}

async function reloadInfobar() {
  const response = await fetch("/inbox/infobar" + viewQuery({ room: roomId() }), { credentials: "same-origin" });
  if (!response.ok) throw new Error("HTTP " + response.status);
  // Rendered (and escaped) by the server; parsed inertly, then swapped in whole.
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = doc.getElementById("infobar");
  if (!fresh) throw new Error("no info bar in the response");
  $("infobar").replaceWith(document.adoptNode(fresh));
}

function initFlagToggle() {
  const toggle = $("flag-deal-ticket-tab");
  if (!toggle) return;
  toggle.addEventListener("change", async () => {
    const enabled = toggle.checked;
    toggle.disabled = true;
    try {
      const result = await api("POST", "/api/flags/" + toggle.dataset.flag, { enabled });
      if (!result.ok) throw new Error(errorText(result));
      await reloadInfobar();
      toast("deal_ticket_tab is " + (enabled ? "ON" : "OFF") + " for this account");
    } catch (err) {
      toggle.checked = !enabled;
      toast("Could not change the flag: " + err.message, true);
    }
    toggle.disabled = false;
  });
}

function initManualDeal() {
  const dialog = $("manual-deal-dialog"), form = $("manual-deal-form");
  if (!dialog || !form) return;
  const errorBox = form.querySelector("[data-testid='manual-deal-error']");
  const showError = (message) => {
    errorBox.textContent = message;
    errorBox.hidden = false;
  };
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-testid='create-deal-button']")) {
      errorBox.hidden = true;
      dialog.showModal();
      form.elements.name.focus();
      form.elements.name.select();
    } else if (event.target.closest("[data-close-dialog]")) {
      dialog.close();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("[type='submit']");
    submit.setAttribute("aria-busy", "true");
    submit.disabled = true;
    const body = { name: form.elements.name.value, stage: form.elements.stage.value,
      pipeline: form.elements.pipeline.value };
    try {
      const result = await api("POST", "/api/rooms/" + encodeURIComponent(roomId()) + "/deals", body);
      if (result.ok) {
        dialog.close();
        const deal = result.body.deal;
        toast("Deal created: " + deal.name + " (" + deal.id + ")");
        logResult({ action: "manual-deal", label: "Create Deal (manual)", ok: true,
          calls: result.body.calls, records: [deal] }, result.status);
      } else {
        showError(errorText(result));
        toast("Create Deal failed: " + errorText(result), true);
      }
    } catch (err) {
      showError(err.message);
    }
    submit.removeAttribute("aria-busy");
    submit.disabled = false;
  });
}

export function initInfobar() {
  initTabs();
  initFlagToggle();
  initManualDeal();
}
