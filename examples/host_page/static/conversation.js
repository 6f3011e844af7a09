/* The conversation and the room list: the composer (agent messages, which the fake Chat
 * Panel serves), the room search and channel filters, times in the browser's zone. */

import { $, api, el, errorText, localTime, roomId, toast } from "./common.js";

function appendMessage(message) {
  const box = $("messages");
  box.querySelector("[data-testid='chat-empty']")?.remove();
  const wrap = el("div", "msg msg-out msg-agent is-new");
  wrap.setAttribute("data-testid", "message");
  wrap.dataset.senderType = "agent";
  const meta = el("div", "msg-meta");
  meta.append(el("span", "msg-sender", message.sender_name));
  const time = el("time", "msg-time", localTime(message.sent_at));
  time.setAttribute("datetime", message.sent_at);
  wrap.append(meta, el("div", "bubble", message.text), time);
  box.append(wrap);
  box.scrollTop = box.scrollHeight;
}

function initComposer() {
  const form = $("composer"), input = $("composer-input");
  if (!form) return;
  const grow = () => {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 140) + "px";
  };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    try {
      const result = await api("POST", "/api/rooms/" + encodeURIComponent(roomId()) + "/messages", { text });
      if (!result.ok) throw new Error(errorText(result));
      appendMessage(result.body);
      input.value = "";
      grow();
    } catch (err) {
      toast("Message not sent: " + err.message, true);
    }
  });
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function initRoomFilters() {
  const search = $("room-search");
  if (!search) return;
  let channel = "all";
  const apply = () => {
    const q = search.value.trim().toLowerCase();
    for (const li of document.querySelectorAll("[data-testid='room-list'] > li")) {
      const text = li.textContent.toLowerCase();
      li.hidden = !((channel === "all" || li.dataset.channel === channel) && (!q || text.includes(q)));
    }
  };
  search.addEventListener("input", apply);
  const chips = document.querySelectorAll("[data-channel-filter]");
  for (const chip of chips) {
    chip.addEventListener("click", () => {
      channel = chip.dataset.channelFilter;
      for (const other of chips) {
        other.classList.toggle("is-active", other === chip);
        other.setAttribute("aria-pressed", other === chip ? "true" : "false");
      }
      apply();
    });
  }
}

function localiseTimes() {
  for (const node of document.querySelectorAll("time[data-local-time]")) {
    const text = localTime(node.getAttribute("datetime"));
    if (text) node.textContent = text;
  }
}

export function initConversation() {
  localiseTimes();
  initComposer();
  initRoomFilters();
}
