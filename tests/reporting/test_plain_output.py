"""Report output keeps the brackets of user and data text (rich would read them as markup; issue 14)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from recbench.reporting.tables import frame_to_rich


def test_table_title_caption_headers_and_cells_are_plain() -> None:
    frame = pd.DataFrame({"model[plot]": ["ncf[bold]"], "test/ndcg@10": ["0.5"]})
    console = Console(record=True, width=200)
    console.print(frame_to_rich(frame, 1, title="runs [plot]", caption="see [bold]"))
    text = console.export_text()
    for shown in ("model[plot]", "ncf[bold]", "runs [plot]", "see [bold]"):
        assert shown in text, shown


def test_report_plot_without_matplotlib(
    tmp_path: Path, make_run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`recbench report --plot` without matplotlib: the table shows the bracketed model name and the
    error tells the user to run `pip install 'recbench[plot]'`, brackets included."""
    from recbench.cli import main

    make_run(tmp_path / "a", model="ncf[plot]")
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        main(["report", str(tmp_path), "--plot", str(tmp_path / "bars.png")])
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert "ncf[plot]" in captured.out
    assert "pip install 'recbench[plot]'" in captured.err
