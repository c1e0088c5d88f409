"""Plain-text tables: aligned columns, numbers to the right, text to the left."""

from __future__ import annotations

from collections.abc import Sequence


def _looks_numeric(cell: str) -> bool:
    stripped = cell.strip().rstrip("x%").replace(",", "").replace(".", "", 1).lstrip("-")
    return stripped.isdigit()


def format_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    text_rows = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            parts.append(cell.rjust(widths[i]) if _looks_numeric(cell) else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [title, rule, line(list(headers)), rule]
    out.extend(line(row) for row in text_rows)
    out.append(rule)
    return "\n".join(out)


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; '-' when a run produced nothing to show."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def short_error(message: str, limit: int = 70) -> str:
    one_line = " ".join(message.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."
