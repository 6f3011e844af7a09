// One stream (POST /embed/streams) for every room of this browser and site, shared by
// the frames' room-feed.js: re-opened when rooms or tokens change, each room resumed
// from its version; each message goes to the frames of its room.
"use strict";
const MAX_ROOMS = 50; // the server's cap: past it a frame uses its own EventSource
const SILENT_MS = 150000; // ports never say they closed: a page silent this long is gone
const rooms = new Map(); // room id -> {token, version, data, subs: Map(id -> sub)}
const pages = new Map(); // port -> {seen, subs: Map(id -> room id)}
let stream = null; // AbortController
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
  timer = setTimeout(open, ms || 50); // debounced: a page of frames opens one stream
}

function subscribe(port, page, m) {
  let room = rooms.get(m.room);
  if (!room) {
    if (rooms.size >= MAX_ROOMS) return port.postMessage({ id: m.id, type: "fallback" });
    rooms.set(m.room, (room = { subs: new Map() }));
  }
  const sub = { id: m.id, port: port, page: page, token: m.token };
  room.subs.set(m.id, sub);
  page.subs.set(m.id, m.room);
  if (room.token !== m.token) {
    room.token = m.token; // the newest lasts longest
    restart();
  }
  if (room.data) deliver(room, sub);
}

function deliver(room, sub) {
  if (!sub.open) send(sub, "open");
  sub.open = true;
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

// A token expired or refused: its frames hear it; the room's other frames go on under theirs.
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
    blocks.forEach((block) => { // (JSON data holds no raw "\r"; pings and comments have no event)
      const frame = /event: ([^\r]+)\r\ndata: ([^\r]+)/.exec(block);
      if (frame) handle(frame[1], frame[2], names, tokens);
    });
  }
}

function open() {
  if (stream) stream.abort();
  const names = Array.from(rooms.keys());
  const tokens = names.map((name) => rooms.get(name).token);
  const controller = (stream = names.length ? new AbortController() : null);
  if (!controller) return;
  const mine = (then) => () => stream === controller && then(); // not if replaced meanwhile
  fetch("/embed/streams", {
    method: "POST", signal: controller.signal, headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ rooms: names.map((name, i) => {
      const room = rooms.get(name);
      return { token: tokens[i], last_event_id: room.data ? String(room.version) : null };
    }) }),
  }).then((response) => {
    if (!response.ok) throw Error(response.status);
    return read(response.body, names, tokens, controller);
  }).then(mine(() => restart(1000)), // a clean end (maximum age, restart): resume unseen
    mine(() => rooms.forEach((room) => room.subs.forEach((sub) => drop(sub, "error")))));
}

setInterval(() => pages.forEach((page, port) => {
  if (Date.now() - page.seen < SILENT_MS) return;
  page.subs.forEach((name, id) => drop(rooms.get(name).subs.get(id), "error")); // a frozen page reconnects
  pages.delete(port);
}), SILENT_MS / 5);
