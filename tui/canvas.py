"""A character canvas with braille sub-cell resolution, for the topology view.

A terminal cell holds a 2×4 grid of braille dots (U+2800 block), so a canvas
of W×H cells is a 2W×4H bitmap whose dots are about square: circles drawn in
dot space look round. Each cell keeps the style of the strongest thing drawn
in it (higher `weight` wins), and text can be stamped over the dots.
"""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text

__all__ = ["BrailleCanvas"]

_BRAILLE_BASE = 0x2800
# Dot bit for (x % 2, y % 4) within a cell, per the Unicode braille layout.
_DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


class BrailleCanvas:
    """Draw dots, lines and circles in dot space; stamp text in cell space; render to Rich text."""

    def __init__(self, width: int, height: int) -> None:
        self.width = max(0, width)
        self.height = max(0, height)
        self._bits = [[0] * self.width for _ in range(self.height)]
        self._styles: list[list[tuple[float, Style]]] = [[(-math.inf, Style())] * self.width for _ in range(self.height)]
        self._text: dict[tuple[int, int], tuple[str, Style]] = {}

    @property
    def dot_width(self) -> int:
        return self.width * 2

    @property
    def dot_height(self) -> int:
        return self.height * 4

    def dot(self, x: int, y: int, style: Style, weight: float = 0.0) -> None:
        if not (0 <= x < self.dot_width and 0 <= y < self.dot_height):
            return
        col, row = x // 2, y // 4
        self._bits[row][col] |= _DOT_BITS[x % 2][y % 4]
        if weight >= self._styles[row][col][0]:
            self._styles[row][col] = (weight, style)

    def line(self, x0: int, y0: int, x1: int, y1: int, style: Style, weight: float = 0.0) -> None:
        """Bresenham's line between two dots, both ends included."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        while True:
            self.dot(x0, y0, style, weight)
            if x0 == x1 and y0 == y1:
                return
            doubled = 2 * error
            if doubled >= dy:
                error += dy
                x0 += sx
            if doubled <= dx:
                error += dx
                y0 += sy

    def circle(self, cx: float, cy: float, radius: float, style: Style, weight: float = 0.0) -> None:
        steps = max(8, int(2 * math.pi * radius))
        for i in range(steps):
            angle = 2 * math.pi * i / steps
            self.dot(round(cx + radius * math.cos(angle)), round(cy + radius * math.sin(angle)), style, weight)

    def text(self, col: int, row: int, value: str, style: Style) -> None:
        """Stamp `value` at a cell, clipped to the canvas; it hides the dots under it."""
        if not 0 <= row < self.height:
            return
        for offset, char in enumerate(value):
            if 0 <= col + offset < self.width:
                self._text[(col + offset, row)] = (char, style)

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="crop", end="")
        for row in range(self.height):
            for col in range(self.width):
                stamped = self._text.get((col, row))
                if stamped is not None:
                    out.append(*stamped)
                elif bits := self._bits[row][col]:
                    out.append(chr(_BRAILLE_BASE + bits), self._styles[row][col][1])
                else:
                    out.append(" ")
            if row < self.height - 1:
                out.append("\n")
        return out
