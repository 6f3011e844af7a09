"""Benchmarks (``make bench``): the numbers the RFC and issues ask for, on this machine.

- create → rendered: a bot deal POSTed to the record API until the component in the
  host's iframe (real Chromium) has painted it; 50 creations.
- component page server time: ``Server-Timing: app;dur`` of ``GET /embed/rooms/{room}``.
- component first contentful paint, from the frame document's navigation start.
- bot deal create round trip with the Chat Panel normal, down and slow (5 s): the
  chat history is fetched by the worker, off the request path, so the three match.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Frame, Page, sync_playwright

from e2e.stack import CHROMIUM, CHROMIUM_ARGS, Stack, start_stack

CREATIONS = 50
PAGE_LOADS = 200
PAINTS = 20
CHAT_PANEL_MODES = {"normal": "normal", "down": "down (503)", "slow": "slow (5 s)"}

OBSERVE = """() => {
  const root = document.getElementById("widget");
  window.__painted = {};
  new MutationObserver(() => {
    const version = root.dataset.version;
    if (version in window.__painted) return;
    window.__painted[version] = null;
    requestAnimationFrame(() => { window.__painted[version] = performance.timeOrigin + performance.now(); });
  }).observe(root, { attributes: true, attributeFilter: ["data-version"] });
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {len(values)} | {statistics.median(values):.1f} | "
            f"{percentile(values, 0.95):.1f} | {max(values):.1f} |")


def component_frame(page: Page, stack: Stack, room_id: str) -> Frame:
    page.goto(stack.inbox(room_id))
    if not page.get_by_test_id("flag-deal-ticket-tab").is_checked():
        page.locator('label[for="flag-deal-ticket-tab"]').click()
    page.get_by_test_id("tab-deal-ticket").click()
    page.frame_locator('[data-testid="deal-ticket-frame"]').locator("#widget").wait_for(state="attached")
    return next(f for f in page.frames if "/embed/rooms/" in f.url)


def create_to_rendered(page: Page, stack: Stack) -> list[float]:
    frame = component_frame(page, stack, "bench-live")
    frame.wait_for_function("() => document.getElementById('widget').dataset.state === 'empty'")
    frame.evaluate(OBSERVE)
    samples = []
    for i in range(CREATIONS):
        started = time.time() * 1000
        stack.create("deal", "bench-live", name=f"Bench deal {i}")
        painted = frame.wait_for_function(
            "v => window.__painted[v] || false", arg=str(i + 1), timeout=10_000
        ).json_value()
        samples.append(painted - started)
    return samples


def page_server_time(stack: Stack) -> tuple[list[float], list[float]]:
    stack.create("deal", "bench-page")
    token = stack.api.post("/embed-tokens", json={"room_id": "bench-page", "agent_id": "bench"}).json()
    server, client = [], []
    with httpx.Client(timeout=10) as http:
        for _ in range(PAGE_LOADS):
            started = time.perf_counter()
            response = http.get(token["embed_url"])
            client.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
            server.append(float(response.headers["server-timing"].split("dur=")[1]))
    return server, client


def first_paint(page: Page, stack: Stack) -> list[float]:
    url = stack.api.post("/embed-tokens", json={"room_id": "bench-page", "agent_id": "bench"}).json()["embed_url"]
    samples = []
    for _ in range(PAINTS):
        page.goto(url)
        samples.append(page.evaluate("""() => new Promise(resolve => {
          const seen = performance.getEntriesByName("first-contentful-paint");
          if (seen.length) return resolve(seen[0].startTime);
          new PerformanceObserver(list => resolve(list.getEntries()[0].startTime))
            .observe({ type: "paint", buffered: true });
        })"""))
    return samples


def create_latency(stack: Stack, mode: str) -> list[float]:
    """Sequential bot deals in a room whose Chat Panel plays ``mode``, while the
    embedded worker fetches (and retries) their chat history in the background."""
    room_id = f"bench-chat-{mode}"
    response = httpx.put(f"{stack.host_url}/chat-panel/rooms/{room_id}/mode", json={"mode": mode})
    assert response.status_code == 200, response.text
    samples = []
    for i in range(CREATIONS):
        started = time.perf_counter()
        stack.create("deal", room_id, name=f"Bench deal {i}")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                live = create_to_rendered(page, stack)
                paint = first_paint(page, stack)
                browser.close()
            server, client = page_server_time(stack)
            creates = {mode: create_latency(stack, mode) for mode in CHAT_PANEL_MODES}
        finally:
            stack.close()
    print("| measure (ms) | n | median | p95 | max |")
    print("|---|---|---|---|---|")
    print(row("bot deal: API create → painted in the iframe", live))
    print(row("component page: server time (Server-Timing)", server))
    print(row("component page: client round trip", client))
    print(row("component page: first contentful paint", paint))
    for mode, label in CHAT_PANEL_MODES.items():
        print(row(f"bot deal create round trip, Chat Panel {label}", creates[mode]))


if __name__ == "__main__":
    main()
