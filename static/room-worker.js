// One stream for every room of this browser (per site), shared by the frames through
// room-feed.js: one POST /embed/streams (widget/room_mux.py), re-opened (debounced) when
// rooms or tokens change, each room resumed from its version; a room's messages go to
// its frames.
"use strict";
const MAX_ROOMS = 50; // per stream (the server's cap); a frame of one more uses its own EventSource
const SILENT_MS = 150000; // a page silent this long is gone (ports never say they closed)
const rooms = new Map(); // room id -> {token, version, data, subs: Map(sub id -> sub)}
const pages = new Map(); // port -> {seen, subs: Map(sub id -> room id)}
let stream = null; // the AbortController of the stream
let timer = 0;

onconnect = (event) => {
  const port = event.ports[0];
  const page = { seen: Date.now(), subs: new Map() };
  pages.set(port, page);
  port.onmessage = ({ data: m }) => {
    page.seen = Date.now();
    if (m.type === "sub") subscribe(port, page, m);
    if (m.type === "unsub") leave(page, m.id);
    if (m.type === "bye") page.subs.forEach((_, id) => leave(page, id));
  };
};

const send = (sub, type, data) => sub.port.postMessage({ id: sub.id, type: type, data: data });

function restart(ms) {
  clearTimeout(timer);
  timer = setTimeout(open, ms || 50);
}

function subscribe(port, page, m) {
  let room = rooms.get(m.room);
  if (!room) {
    if (rooms.size >= MAX_ROOMS) return port.postMessage({ id: m.id, type: "fallback" });
    rooms.set(m.room, (room = { subs: new Map() }));
  }
  const sub = { id: m.id, port: port, page: page, token: m.token, last: m.last };
  room.subs.set(m.id, sub);
  page.subs.set(m.id, m.room);
  if (room.token !== m.token) {
    room.token = m.token; // the newest frame's token lasts longest
    restart();
  }
  if (room.data) deliver(room, sub);
}

function deliver(room, sub) {
  if (!sub.open) {
    sub.open = true;
    send(sub, "open");
    if (sub.last === String(room.version)) return; // it shows this version already
  }
  send(sub, "room", room.data);
}

function leave(page, id) {
  const name = page.subs.get(id);
  const room = rooms.get(name);
  page.subs.delete(id);
  if (room && room.subs.delete(id) && !room.subs.size) {
    rooms.delete(name);
    restart();
  }
}

function drop(sub, type, data) {
  send(sub, type, data);
  leave(sub.page, sub.id);
}

// The frames with a refused (or expired) token hear it and leave; frames of the room
// with another token keep it streaming under theirs.
function refuse(name, token, type, data) {
  const room = rooms.get(name);
  if (!room) return;
  room.subs.forEach((sub) => sub.token === token && drop(sub, type, data));
  if (room.subs.size && room.token === token) {
    room.token = Array.from(room.subs.values()).pop().token;
    restart();
  }
}

function handle(type, data, names, tokens) {
  const body = JSON.parse(data);
  const i = type === "room-error" ? body.index : names.indexOf(body.room_id);
  const room = rooms.get(names[i]);
  if (!room) return;
  if (type !== "room") refuse(names[i], tokens[i], type === "room-error" ? "error" : type, data);
  else if (!room.data || body.version > room.version) {
    room.version = body.version;
    room.data = data;
    room.subs.forEach((sub) => deliver(room, sub));
  }
}

async function read(body, names, tokens, controller) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (let chunk; !(chunk = await reader.read()).done && stream === controller;) {
    const blocks = (buffer += decoder.decode(chunk.value, { stream: true })).split("\r\n\r\n");
    buffer = blocks.pop();
    blocks.forEach((block) => {
      const fields = {}; // (JSON data never holds "\r\n"; a comment lands under "")
      block.split("\r\n").forEach((line) => {
        const colon = line.indexOf(": ");
        fields[line.slice(0, colon)] = line.slice(colon + 2);
      });
      if (fields.data) handle(fields.event, fields.data, names, tokens);
    });
  }
}

function open() {
  if (stream) stream.abort();
  const names = Array.from(rooms.keys());
  const tokens = names.map((name) => rooms.get(name).token);
  const controller = (stream = names.length ? new AbortController() : null);
  if (!controller) return;
  const mine = (then) => () => stream === controller && then(); // (not if replaced meanwhile)
  fetch("/embed/streams", {
    method: "POST", cache: "no-store", signal: controller.signal, headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ rooms: names.map((name, i) => {
      const room = rooms.get(name);
      return { token: tokens[i], last_event_id: room.data ? String(room.version) : null };
    }) }),
  }).then((response) => {
    if (!response.ok) throw Error("stream refused: " + response.status);
    return read(response.body, names, tokens, controller);
  }).then(mine(() => restart(1000)), mine(() => rooms.forEach((room) => room.subs.forEach((sub) => drop(sub, "error")))));
}

setInterval(() => pages.forEach((page, port) => {
  if (Date.now() - page.seen < SILENT_MS) return;
  page.subs.forEach((name, id) => drop(rooms.get(name).subs.get(id), "error")); // a page only frozen reconnects
  pages.delete(port);
}), SILENT_MS / 5);
