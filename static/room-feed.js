// CrmRoomFeed.connect(url): a room's feed for the component, used as the EventSource it
// stands for. A browser opens 6 HTTP/1.1 connections per site, so an EventSource per
// frame stalls from the 7th frame on: the frames share one stream through a SharedWorker
// (room-worker.js). Without one, or when it fails, each frame has its own EventSource.
(() => {
  "use strict";
  const feeds = new Map(); // id -> feed (of this page)
  let port = null;
  let count = 0;

  function plain(feed) {
    feeds.delete(feed.id);
    feed.source = new EventSource(feed.url);
    feed.listeners.forEach((l) => feed.source.addEventListener(l[0], l[1]));
    feed.source.onerror = (event) => feed.onerror && feed.onerror(event);
  }

  try {
    const worker = new SharedWorker(document.currentScript.src.replace("room-feed", "room-worker"), { name: "crm-room-feed" });
    worker.onerror = () => { // it did not load or run
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
    // Ports never say they closed: the worker forgets a page silent for long.
    setInterval(() => port && port.postMessage({ type: "beat" }), 20000);
    addEventListener("pagehide", (event) => port && !event.persisted && port.postMessage({ type: "bye" }));
  } catch (_) {
    port = null; // no SharedWorker here
  }

  window.CrmRoomFeed = {
    connect(url) {
      if (!port) return new EventSource(url);
      const parsed = new URL(url, location.href);
      const feed = {
        url: url, id: ++count + Math.random().toString(36), listeners: [], onerror: null, source: null,
        addEventListener: (type, listener) => feed.listeners.push([type, listener]),
        close() {
          if (feed.source) feed.source.close();
          else if (port && feeds.delete(feed.id)) port.postMessage({ type: "unsub", id: feed.id });
        },
      };
      feeds.set(feed.id, feed);
      port.postMessage({
        type: "sub", id: feed.id, room: decodeURIComponent(parsed.pathname.split("/")[3]),
        token: parsed.searchParams.get("token"), last: parsed.searchParams.get("last_event_id"),
      });
      return feed;
    },
  };
})();
