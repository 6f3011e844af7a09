"""The browser code's size (issue 12): all of ``static/*.js``, each gzipped as a browser
fetches it. The issue's goal is 8 KB together (``BUDGET_BYTES``), which the code does
not meet yet (12.5 KB: ``make bench`` reports it, ``bench/assets.py``); until it does,
this guard holds the line where it is, so nothing grows unnoticed."""

from __future__ import annotations

from bench.assets import gzipped_js_sizes

CEILING_BYTES = 13 * 1024  # today's total, rounded up; lower it as the files shrink


def test_static_js_does_not_grow_past_its_ceiling() -> None:
    sizes = gzipped_js_sizes()
    assert {"component.js", "embed.js", "room-feed.js", "room-worker.js"} <= sizes.keys()  # the measure sees the files
    assert sum(sizes.values()) <= CEILING_BYTES, f"{sum(sizes.values())} bytes gzipped > {CEILING_BYTES}: {sizes}"
