"""Checks the browser tests run on the dashboard page: pixels, screenshots, formatted figures."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
DOC_SCREENSHOT = REPO_ROOT / "docs" / "img" / "dashboard.png"

CHART_CANVASES = ("chart-notional", "chart-share", "chart-trades", "chart-over-time", "chart-trade-size",
                  "chart-ranking")

# Counts the painted (non-transparent) pixels of a 2D canvas (Chart.js draws on transparent canvases).
CANVAS_INK_JS = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
  return {painted, total: canvas.width * canvas.height};
}"""


def screenshot(page, name: str, **kwargs) -> Path:
    """Save a screenshot under artifacts/screenshots/ and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path


def save_doc_screenshot(path: Path, max_bytes: int = 1_000_000, target: Path = DOC_SCREENSHOT) -> Path:
    """Copy a screenshot to target (default docs/img/dashboard.png, committed), palette-reduced to stay
    under max_bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(target, optimize=True)
    size = target.stat().st_size
    if size > max_bytes:
        raise AssertionError(f"{target} is {size} bytes, over {max_bytes}")
    return target


def canvas_ink(page, canvas_id: str) -> float:
    """Fraction of a chart canvas that is painted (0 = blank)."""
    result = page.evaluate(CANVAS_INK_JS, canvas_id)
    return result["painted"] / max(result["total"], 1)


def colour_counts(png: bytes) -> dict[str, int]:
    """Pixels of an element screenshot that are violet (dark venues), amber (lit venues), or anything."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    violet = amber = 0
    colours = set()
    for r, g, b in image.get_flattened_data():
        colours.add((r >> 3, g >> 3, b >> 3))
        if b > 150 and r > 110 and g < 120 and r < b + 40:
            violet += 1
        elif r > 170 and 90 < g < 190 and b < 90:
            amber += 1
    return {"violet": violet, "amber": amber, "distinct": len(colours), "total": image.width * image.height}


def pct(fraction: float) -> str:
    """The dashboard's percentage format (format.js pct)."""
    return f"{fraction * 100:.1f}%"


def money(value: float) -> str:
    """The dashboard's money format (format.js money)."""
    v = abs(value)
    if v >= 1e9:
        return f"${value / 1e9:.2f}B"
    if v >= 1e6:
        return f"${value / 1e6:.2f}M"
    if v >= 1e3:
        return f"${value / 1e3:.1f}K"
    return f"${value:.0f}"
