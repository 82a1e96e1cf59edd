"""User and data text on the terminal through rich, as plain text.

rich reads ``[...]`` inside a string as markup, so an error saying ``pip install 'recbench[plot]'``
or an item titled ``Toy Story [Special Edition]`` would lose its brackets. Everything that comes from
users or data (messages, paths, ids, titles, table cells, column headers, table titles) reaches rich
as :class:`rich.text.Text` made by :func:`plain`, or is printed with :func:`echo`; only fixed strings
written in the code use markup or styles.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def plain(value: object, style: str = "") -> Text:
    """``value`` as rich text that is never parsed as markup (``""`` for ``None``)."""
    return Text("" if value is None else str(value), style=style)


def echo(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print ``parts`` (plain strings, or ``(text, style)`` pairs) as one line of plain text."""
    console.print(Text.assemble(*parts), highlight=False, soft_wrap=True)
