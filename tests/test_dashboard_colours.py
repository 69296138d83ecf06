"""Dark vs lit, the dashboard's main contrast, stays distinguishable for colour-blind users: the two colours
(dashboard/src/config.js, and venue-map.jsx's copy for the map) simulated for protanopia, deuteranopia and
tritanopia (Machado, Oliveira & Fernandes 2009, severity 1) remain far apart in CIELAB, and both stand out
from the page's background."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "dashboard" / "src"
BACKGROUND = "#0f172a"  # the panels' slate-900
MACHADO = {
    "normal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}


def colour(file: str, name: str) -> str:
    match = re.search(rf"export const {name} = '(#[0-9a-fA-F]{{6}})'", (SRC / file).read_text())
    assert match, f"{name} in {file}"
    return match.group(1)


def linear(hex_colour: str) -> tuple[float, ...]:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)


def simulate(rgb: tuple[float, ...], matrix) -> tuple[float, ...]:
    return tuple(min(1.0, max(0.0, sum(m * c for m, c in zip(row, rgb, strict=True)))) for row in matrix)


def lab(rgb: tuple[float, ...]) -> tuple[float, float, float]:
    r, g, b = rgb
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           0.0193 * r + 0.1192 * g + 0.9505 * b)
    white = (0.95047, 1.0, 1.08883)

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = (f(v / w) for v, w in zip(xyz, white, strict=True))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def delta_e(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum((x - y) ** 2 for x, y in zip(lab(a), lab(b), strict=True)) ** 0.5


def luminance(rgb: tuple[float, ...]) -> float:
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]


def test_the_map_uses_the_same_dark_and_lit_colours() -> None:
    assert colour("venue-map.jsx", "DARK_COLOR") == colour("config.js", "DARK_COLOR")
    assert colour("venue-map.jsx", "LIT_COLOR") == colour("config.js", "LIT_COLOR")


@pytest.mark.parametrize("vision", list(MACHADO))
def test_dark_and_lit_stay_apart(vision: str) -> None:
    matrix = MACHADO[vision]
    dark = simulate(linear(colour("config.js", "DARK_COLOR")), matrix)
    lit = simulate(linear(colour("config.js", "LIT_COLOR")), matrix)
    background = simulate(linear(BACKGROUND), matrix)
    difference = delta_e(dark, lit)
    print(f"{vision}: dark vs lit delta E {difference:.1f}")
    assert difference > 30  # CIE76: over ~10 is an obvious difference at a glance
    for side in (dark, lit):  # each stands out from the panel: WCAG contrast ratio for graphics >= 3
        assert (luminance(side) + 0.05) / (luminance(background) + 0.05) >= 3
