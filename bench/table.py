"""What the bench scripts share besides tests.deploying's Load: a small table.

    from table import table     (bench/ is on sys.path of a script run from it)
"""

from __future__ import annotations

from typing import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence], first_width: int | None = None) -> str:
    """Rows under a header: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in header]] + [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in r]
                                         for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    if first_width:
        widths[0] = max(widths[0], first_width)
    return "\n".join(" ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
                     for r in cells)
