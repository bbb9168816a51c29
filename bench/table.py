"""Plain-text and Markdown grids of strings: no knowledge of what the cells mean."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A titled grid; the first column is left-aligned, the rest right-aligned."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str = ""

    def text(self) -> str:
        """Aligned columns for a terminal."""
        grid = [list(self.headers), *(list(r) for r in self.rows)]
        widths = [max(len(r[i]) for r in grid) for i in range(len(self.headers))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        out = [self.title, line(grid[0]), "  ".join("-" * w for w in widths)]
        out.extend(line(r) for r in grid[1:])
        if self.note:
            out.append(self.note)
        return "\n".join(out)

    def markdown(self) -> str:
        """A GitHub Markdown table under a heading."""
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append(
            "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(self.headers))) + "|"
        )
        out.extend("| " + " | ".join(r) + " |" for r in self.rows)
        if self.note:
            out.extend(["", self.note])
        return "\n".join(out)

    def print_both(self) -> None:
        """Print the text table, a blank line, then its Markdown (a bench script's ending)."""
        print(self.text())
        print()
        print(self.markdown())
