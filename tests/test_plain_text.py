"""Text reaching rich is printed as plain text: brackets survive (issue 14)."""

from __future__ import annotations

import pytest
from rich.console import Console

from recbench.cli import _plain, _print_error
from recbench.errors import RecbenchError


def test_error_message_keeps_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    _print_error(RecbenchError("install it: pip install 'recbench[plot]'"))
    assert "pip install 'recbench[plot]'" in capsys.readouterr().err


def test_table_cell_keeps_brackets() -> None:
    console = Console(record=True, width=80)
    console.print(_plain("Toy Story [bold](1995)"))
    assert "Toy Story [bold](1995)" in console.export_text()
