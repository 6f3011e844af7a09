// CrmRoomFeed.connect(url) stands in for the component's EventSource: a browser opens 6
// HTTP/1.1 connections per site, so frames share one stream through a SharedWorker
// (room-worker.js); without one, or if it fails, each has its own EventSource.
(() => {
  "use strict";
  const feeds = new Map(); // id -> feed
  let port = null;

  function plain(feed) {
    feeds.delete(feed.id);
    feed.source = new EventSource(feed.url);
    feed.listeners.forEach((l) => feed.source.addEventListener(l[0], l[1]));
    feed.source.onerror = (event) => feed.onerror && feed.onerror(event);
  }

  try {
    const worker = new SharedWorker(document.currentScript.src.replace("room-feed", "room-worker"), { name: "crm-room-feed" });
    worker.onerror = () => {
      port = null;
      feeds.forEach(plain);
    };
    port = worker.port;
    port.onmessage = ({ data: m }) => {
      const feed = feeds.get(m.id);
      if (!feed) return;
      if (m.type === "fallback") return plain(feed);
      if (m.type === "error" || m.type === "token-expired") feeds.delete(m.id); // the worker let go
      if (m.type === "error") return feed.onerror && feed.onerror(m);
      feed.listeners.forEach((l) => l[0] === m.type && l[1]({ type: m.type, data: m.data }));
    };
    setInterval(() => port && port.postMessage({ type: "beat" }), 20000);
    addEventListener("pagehide", (event) => port && !event.persisted && port.postMessage({ type: "bye" }));
  } catch (_) {
    port = null; // no SharedWorker
  }

  window.CrmRoomFeed = {
    connect(url) {
      if (!port) return new EventSource(url);
      const parsed = new URL(url, location.href);
      const feed = {
        url: url, id: Math.random().toString(36).slice(2), listeners: [],
        addEventListener: (type, listener) => feed.listeners.push([type, listener]),
        close() {
          if (feed.source) feed.source.close();
          else if (port && feeds.delete(feed.id)) port.postMessage({ type: "unsub", id: feed.id });
        },
      };
      feeds.set(feed.id, feed);
      port.postMessage({
        type: "sub", id: feed.id, room: decodeURIComponent(parsed.pathname.split("/")[3]),
        token: parsed.searchParams.get("token"),
      });
      return feed;
    },
  };
})();
