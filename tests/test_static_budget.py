"""The browser code's budget (issue 12): all of ``static/*.js``, each gzipped as a browser
fetches it, at most 8 KB together. ``make bench`` reports the same figure
(``bench/assets.py``)."""

from __future__ import annotations

from bench.assets import BUDGET_BYTES, gzipped_js_sizes


def test_static_js_fits_the_gzipped_budget() -> None:
    sizes = gzipped_js_sizes()
    assert {"component.js", "embed.js"} <= sizes.keys()  # the measure sees the files
    assert sum(sizes.values()) <= BUDGET_BYTES, f"{sum(sizes.values())} bytes gzipped > {BUDGET_BYTES}: {sizes}"
