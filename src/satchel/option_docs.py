"""The option reference table of docs/configuration.md, rendered from the schema
(:data:`satchel.option_schema.OPTIONS`): ``make docs`` rewrites it, and
tests/test_option_schema.py fails when the committed table differs."""

from __future__ import annotations

from pathlib import Path

from .option_schema import DOCS, OPTIONS, Option

TABLE_START = "<!-- options table: generated from satchel.option_schema; do not edit -->"
TABLE_END = "<!-- end of options table -->"


def _shown_default(option: Option) -> str:
    if option.shown:
        return option.shown
    value = option.default
    if value is None:
        return "None"
    if isinstance(value, tuple):
        return f"`{list(value)!r}`".replace("'", '"')
    if isinstance(value, int | float) and not isinstance(value, bool):
        hours, minutes = divmod(int(value) // 60, 60)
        human = f"{hours} h" if hours and not minutes else f"{int(value) // 60} min"
        return f"`{int(value)}` ({human})"
    return f'`"{value}"`' if isinstance(value, str) else f"`{value!r}`"


def _where(option: Option) -> str:
    if option.flask_only:
        return f"Flask: `{option.env}`"
    if option.toml is None:
        return "code only"
    section, key = option.toml
    toml = f"`[{section}] {key}`" if section else f"`{key}`"
    return f"`{option.env}`, {toml}"


def reference_table() -> str:
    """The option reference table of docs/configuration.md, between its markers."""
    rows = [
        TABLE_START,
        "| option | default | environment, TOML | meaning |",
        "|---|---|---|---|",
    ]
    for o in OPTIONS:
        rows.append(f"| `{o.name}` | {_shown_default(o)} | {_where(o)} | {o.doc} |")
    rows.append(TABLE_END)
    return "\n".join(rows)


def with_reference_table(document: str) -> str:
    """``document`` (docs/configuration.md) with its table replaced by the current one."""
    head, start, rest = document.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(f"{DOCS} has lost its table markers")
    return head + reference_table() + tail


def write_reference_table(path: str = DOCS) -> None:
    """Rewrite the table in ``path`` (``make docs``)."""
    file = Path(path)
    file.write_text(with_reference_table(file.read_text()))
