"""The demo's colours meet WCAG AA (4.5:1 for text) in every theme: the ratios are
computed from the custom properties of style.css, the only place colours are written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import satchel.demo

CSS = (Path(satchel.demo.__file__).parent / "static" / "style.css").read_text()
THEMES = {"light": r":root", "dark": r"body\.theme-dark", "sepia": r"body\.theme-sepia"}
# (text, background) as the stylesheet pairs them
PAIRS = [
    ("fg", "bg"),
    ("fg", "card"),
    ("muted", "card"),
    ("muted", "bg"),
    ("accent", "card"),
    ("accent", "bg"),
    ("on-accent", "accent"),
    ("on-danger", "danger"),
    ("on-bound", "bound"),
    ("on-header", "header"),
    ("error", "error-bg"),
    ("ok", "ok-bg"),
    ("fg", "note-bg"),
    ("fg", "line"),  # the secondary button
]
AA = 4.5


def _block(selector: str) -> dict[str, str]:
    match = re.search(selector + r"\s*\{([^}]*)\}", CSS)
    assert match is not None, selector
    return dict(re.findall(r"--([a-z-]+)\s*:\s*([^;]+);", match.group(1)))


def palette(theme: str) -> dict[str, str]:
    colours = _block(THEMES["light"])
    if theme != "light":
        colours |= _block(THEMES[theme])
    return colours


def luminance(colour: str) -> float:
    hex_digits = colour.strip().lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    assert re.fullmatch(r"[0-9a-fA-F]{6}", hex_digits), colour

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_digits[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def ratio(text: str, background: str) -> float:
    high, low = sorted((luminance(text), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_ratio_matches_known_values() -> None:
    assert ratio("#000", "#fff") == pytest.approx(21.0)
    assert ratio("#777", "#fff") == pytest.approx(4.48, abs=0.01)  # the classic near miss


@pytest.mark.parametrize("theme", list(THEMES))
def test_every_text_pair_meets_aa(theme: str) -> None:
    colours = palette(theme)
    failing = {
        f"{text} on {background}": round(ratio(colours[text], colours[background]), 2)
        for text, background in PAIRS
        if ratio(colours[text], colours[background]) < AA
    }
    assert failing == {}


def test_colours_are_written_only_as_custom_properties() -> None:
    rules = re.sub(r"/\*.*?\*/", "", CSS, flags=re.DOTALL)
    for selector in THEMES.values():
        rules = re.sub(selector + r"\s*\{[^}]*\}", "", rules)
    assert re.findall(r"#[0-9a-fA-F]{3,6}\b|rgba?\(", rules) == []
